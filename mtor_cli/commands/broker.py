"""``mtor broker``: run a realm broker, or look at one."""

from __future__ import annotations

import asyncio
import signal
from pathlib import Path
from typing import Any

import typer

from mtor_cli import options, output

group = typer.Typer(
    name="broker",
    help="Run a realm broker (`serve`) or inspect a running one (`status`).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(group)


@group.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: all)."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="TCP port (0: pick a free one)."),
    db: Path | None = typer.Option(
        None, "--db", help="Journal (SQLite) path. Default: broker.db in the data dir."
    ),
    realm: str = typer.Option("mtor", "--realm", help="Realm name shown to peers."),
    queue_limit: int = typer.Option(1000, "--queue-limit", min=1, help="Queued intents per intent."),
    user_queue_limit: int = typer.Option(
        100, "--user-queue-limit", min=1, help="Queued intents per intent of one user (no one fills a queue alone)."
    ),
    job_timeout: float = typer.Option(
        120.0, "--job-timeout", min=0.1, help="Seconds a worker may take on one job before it is retried."
    ),
    max_attempts: int = typer.Option(3, "--max-attempts", min=1, help="Dispatches per intent before it fails."),
    heartbeat: float = typer.Option(5.0, "--heartbeat", min=0.05, help="Seconds between worker pings."),
    operator: str | None = typer.Option(
        None, "--operator", help="Address with the sysop role by right (default: this machine's key)."
    ),
    tls_cert: Path | None = typer.Option(None, "--tls-cert", exists=True, help="PEM certificate: serve wss://."),
    tls_key: Path | None = typer.Option(None, "--tls-key", exists=True, help="PEM private key of --tls-cert."),
    rate_limit: int = typer.Option(0, "--rate-limit", min=0, help="Requests per user per minute (0: unlimited)."),
    max_concurrent: int = typer.Option(0, "--max-concurrent", min=0, help="Live intents per user (0: unlimited)."),
    untrusted_slots: int = typer.Option(
        0, "--untrusted-slots", min=0, help="A new worker's concurrency until it has done 20 jobs (0: no limit)."
    ),
    spot_check_rate: float = typer.Option(
        0.0, "--spot-check-rate", min=0.0, max=1.0, help="Share of greedy chat answers re-run on a trusted worker."
    ),
    paid: bool = typer.Option(
        False,
        "--paid/--free",
        help="Charge every intent in $9000 through the ledger (holds, worker earnings, "
        "settlement on the configured chain; see `mtor chain`), or run a free realm.",
    ),
) -> None:
    """Run a broker until Ctrl-C: a realm that others join.

    It serves /ws/client, /ws/worker, /healthz, /v1/workers, /v1/stats, the
    realm's money for its users (/v1/realm, /v1/wallet, ...; docs/ledger.md)
    and /metrics (Prometheus).

    Examples:

      mtor broker serve --host 0.0.0.0 --port 8765 --paid

      mtor broker serve --port 8443 --tls-cert cert.pem --tls-key key.pem
    """
    from broker import BrokerConfig

    config = BrokerConfig(
        host=host,
        port=port,
        db_path=db,
        realm=realm,
        queue_limit=queue_limit,
        user_queue_limit=user_queue_limit,
        default_job_timeout_s=job_timeout,
        max_attempts=max_attempts,
        heartbeat_s=heartbeat,
        operator=operator or _operator_address(),
        tls_cert=tls_cert,
        tls_key=tls_key,
        rate_per_minute=rate_limit,
        max_concurrent=max_concurrent,
        untrusted_slots=untrusted_slots,
        spot_check_rate=spot_check_rate,
    )
    output.log_to_stderr()
    try:
        asyncio.run(_serve(config, paid))
    except OSError as exc:
        output.fail(
            "listen_failed",
            f"cannot listen on {host}:{port}: {exc.strerror or exc}",
            "pick another --port, or stop the process using it",
        )


def _operator_address() -> str:
    from mtor_cli.identity import address

    return address()


async def _serve(config: Any, paid: bool) -> None:
    from broker import BrokerServer

    stop = asyncio.Event()
    billing = make_desk = None
    if paid:
        from mtor_cli.commands.ledger import start_realm_ledger

        billing, make_desk = start_realm_ledger(stop)
    from mtor_cli.intent import installed_recogniser

    recogniser = installed_recogniser()
    if recogniser is None:
        output.note("intent recognition: rules only (install `mtor[voice]` for the embedding recogniser)")
    server = BrokerServer(config, billing, make_desk, recogniser)
    await server.start()
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, stop.set)
    output.note(
        f"{'paid' if paid else 'free'} broker listening on {server.url} (journal {config.resolved_db_path()}); "
        f"{server.restored} unfinished intent(s) restored; Ctrl-C stops"
    )
    try:
        await stop.wait()
    finally:
        await server.stop()
        output.note("broker stopped")


@group.command("status")
def status(
    broker: str | None = options.broker_option(),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Health, queue figures and connected workers of a broker.

    Example:

      mtor broker status --broker ws://realm.example:8765
    """
    from mtor_cli.client import RealmError, http_get_json

    url = broker or _default_url()
    try:
        health = http_get_json(url, "/healthz")
        stats = http_get_json(url, "/v1/stats")
        workers = http_get_json(url, "/v1/workers")
    except RealmError as exc:
        output.fail(exc.code, exc.message, exc.hint)
    worker_list = workers.get("workers", workers) if isinstance(workers, dict) else workers
    if json_out:
        output.print_json({"url": url, "health": health, "stats": stats, "workers": worker_list})
        return
    console = output.out_console()
    counters = stats.get("intents", {})
    console.print(
        f"[bold]{url}[/bold]  {health.get('status', '?')}  realm {health.get('realm', '?')}  "
        f"up {float(health.get('uptime_s', 0)):.0f} s  clients {stats.get('clients', 0)}"
    )
    console.print(
        f"slots busy {stats.get('slots_busy', 0)}/{stats.get('slots_total', 0)}  "
        f"queued {stats.get('queued', 0)}  "
        + "  ".join(f"{k} {v}" for k, v in counters.items() if isinstance(v, int))
    )
    ledger = stats.get("ledger")
    if isinstance(ledger, dict):
        console.print(_ledger_line(ledger))
    console.print(_workers_table(worker_list))


def _ledger_line(ledger: dict[str, Any]) -> str:
    """A paid realm's settlement upkeep in one line; red when it fails (it retries by itself)."""
    state = str(ledger.get("state", "?"))
    process = ledger.get("process")
    line = (
        f"ledger upkeep {state}" + (f" ({process}, {ledger.get('restarts', 0)} restarts)" if process else "")
        + f"  settled epochs {ledger.get('settled_epochs', 0)}"
        + f"  unsettled receipts {ledger.get('unsettled_receipts', 0)}"
        + f" (oldest {float(ledger.get('oldest_unsettled_s') or 0):.0f} s)"
        + f"  failures {ledger.get('failures', 0)}"
    )
    if state != "ok" and ledger.get("last_error"):
        line += f"\n[red]ledger upkeep failing, retrying: {ledger['last_error']}[/red]"
    elif state != "ok" or process == "stopped":
        line = f"[yellow]{line}[/yellow]"
    return line


def _default_url() -> str:
    from mtor_cli.options import configured_broker
    from mtor_cli.realm import running_url

    url = configured_broker() or running_url()
    if url is None:
        output.fail(
            "unreachable",
            "no broker is configured and the embedded realm is not running",
            "pass --broker ws://HOST:PORT, or start one with `mtor realm start`",
        )
    return url


def _workers_table(workers: Any) -> Any:
    from rich.table import Table

    table = Table(title="workers")
    rows = [w for w in workers if isinstance(w, dict)] if isinstance(workers, list) else []
    if not rows:
        table.add_column("")
        table.add_row("no workers connected")
        return table
    for column in ("id", "name", "intents", "models", "busy", "state", "latency ms", "ok/failed"):
        table.add_column(column)
    for w in rows:
        caps = [c for c in w.get("capabilities", []) if isinstance(c, dict)]
        health = w.get("health") or {}
        table.add_row(
            _cell(w.get("id")),
            _cell(w.get("name")),
            _cell([c.get("intent") for c in caps]),
            _cell(sorted({m for c in caps for m in c.get("models", [])})),
            f"{w.get('running', 0)}/{w.get('slots', 0)}",
            _cell(health.get("state")),
            _cell(health.get("latency_ms")),
            f"{health.get('jobs_ok', 0)}/{health.get('jobs_failed', 0)}",
        )
    return table


def _cell(value: Any) -> str:
    if isinstance(value, list):
        return ", ".join(str(v) for v in value)
    if isinstance(value, float):
        return f"{value:.3g}"
    return "" if value is None else str(value)
