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
    help="Run a realm broker (`serve`) or check a running one (`status`).",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(group)


@group.command("serve")
def serve(
    host: str = typer.Option("127.0.0.1", "--host", help="Interface to listen on (0.0.0.0: all)."),
    port: int = typer.Option(8765, "--port", min=0, max=65535, help="TCP port (0: pick a free one)."),
    db: str | None = typer.Option(
        None,
        "--db",
        help="Where the journal lives: a SQLite file (default: broker.db in the data dir), or a "
        "postgresql://USER@HOST/DB database that every broker of the realm shares (see `mtor broker migrate`).",
        show_default=False,
    ),
    engine: str | None = typer.Option(
        None,
        "--engine",
        help="redis://HOST:PORT/DB shared by every broker of the realm: the queue, the workers and the routes "
        "between brokers. Needs a postgresql:// --db. Default: this process alone.",
        show_default=False,
    ),
    engine_beat: float = typer.Option(
        1.0, "--engine-beat", min=0.05, help="With --engine: seconds between this broker's beats in Redis."
    ),
    engine_dead: float = typer.Option(
        5.0,
        "--engine-dead",
        min=0.1,
        help="With --engine: a broker silent this long is presumed dead and its running intents go to "
        "the other brokers (at least twice --engine-beat).",
    ),
    synchronous_commit: str = typer.Option(
        "off",
        "--synchronous-commit",
        help="PostgreSQL's synchronous_commit for the broker: off (a crash of the database server may lose "
        "its last ~0.6 s of commits) or on (every commit waits for the disk). See docs/scale.md.",
    ),
    stop_grace: float = typer.Option(
        5.0,
        "--stop-grace",
        min=0.0,
        help="Seconds a stopping broker waits for writes still on their way to its database and engine; "
        "what is left after that is logged and runs again elsewhere (docs/scale.md).",
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

    It serves /ws/client, /ws/worker, /healthz, /v1/workers, /v1/stats,
    /v1/brokers, the realm's money for its users (/v1/realm, /v1/wallet, ...;
    docs/ledger.md) and /metrics (Prometheus).

    One broker keeps everything in this process and a SQLite file. A realm of
    several brokers (any number, on any machines, behind any WebSocket load
    balancer) shares a Redis and a PostgreSQL (docs/scale.md).

    Examples:

      mtor broker serve --host 0.0.0.0 --port 8765 --paid

      mtor broker serve --port 8443 --tls-cert cert.pem --tls-key key.pem

      mtor broker migrate --db postgresql://mtor@db.example/mtor

      mtor broker serve --host 0.0.0.0 --engine redis://cache.example:6379/0 --db postgresql://mtor@db.example/mtor

      mtor broker serve --engine redis://cache.example:6379/0 --db postgresql://mtor@db.example/mtor --paid
    """
    from broker import BrokerConfig
    from broker.protocol import MtorError
    from broker.stores import is_postgres
    from ledger.errors import LedgerError

    if engine is not None and not is_postgres(db):
        output.fail(
            "usage",
            "--engine needs a database every broker shares",
            "add --db postgresql://USER@HOST/DB (run `mtor broker migrate --db ...` once first)",
        )
    if engine is not None and not engine.startswith(("redis://", "rediss://", "unix://")):
        output.fail("usage", f"--engine {engine!r} is not a redis:// URL", "e.g. --engine redis://127.0.0.1:6379/0")
    if synchronous_commit not in ("off", "on", "local"):
        output.fail("usage", f"--synchronous-commit {synchronous_commit!r}", "off, local or on")
    if engine_dead < 2 * engine_beat:
        output.fail("usage", f"--engine-dead {engine_dead:g} is less than twice --engine-beat {engine_beat:g}",
                    "a broker must miss at least two beats before it is presumed dead")  # fmt: skip
    config = BrokerConfig(
        host=host,
        port=port,
        db_path=None if db is None or is_postgres(db) else Path(db),
        db_url=db if is_postgres(db) else None,
        synchronous_commit=synchronous_commit,
        engine=engine,
        engine_beat_s=engine_beat,
        engine_dead_s=engine_dead,
        stop_grace_s=stop_grace,
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
    except (MtorError, LedgerError) as exc:  # the realm's database, engine or ledger cannot be used
        output.fail(exc.code, exc.message, exc.hint)
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

        # With a PostgreSQL --db the $9000 journal lives there too: every paid
        # broker of the realm bills, settles and audits one journal.
        billing, make_desk = start_realm_ledger(stop, config.db_url)
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
        f"{'paid' if paid else 'free'} broker listening on {server.url} (journal {_journal_name(config)}); "
        f"{server.restored} unfinished intent(s) restored; Ctrl-C stops"
    )
    try:
        await stop.wait()
        output.note(f"stopping (at most {config.stop_grace_s:g} s for what is on its way to the stores)")
    finally:
        await server.stop()
        # The warning above says what and why; this is the last line either way.
        output.note("broker stopped" + (" with writes undelivered (see above)" if server.undelivered else ""))


def _journal_name(config: Any) -> str:
    from broker.migrations import redact

    return redact(config.db_url) if config.db_url else str(config.resolved_db_path())


@group.command("migrate")
def migrate(
    db: str = typer.Option(
        ..., "--db", help="The realm's database, postgresql://USER@HOST/DB.", show_default=False
    ),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Create or upgrade the schema of a realm's PostgreSQL database (versioned
    SQL, each version applied once, under a lock). Run it once before the
    brokers start, and again after upgrading them; a broker refuses a database
    whose schema is not its own. A SQLite journal migrates itself.

    Example:

      mtor broker migrate --db postgresql://mtor@db.example/mtor
    """
    from broker.migrations import migrate_postgres, redact
    from broker.stores import is_postgres

    if not is_postgres(db):
        output.fail("usage", f"--db {db!r} is not a postgresql:// URL", "a SQLite journal migrates itself when it opens")
    try:
        before, applied = asyncio.run(migrate_postgres(db))
    except Exception as exc:  # psycopg's errors: the server, the user, the database
        output.fail("unreachable", f"cannot migrate {redact(db)}: {str(exc).strip().splitlines()[0]}",
                    "check the URL and that the user may create tables")  # fmt: skip
    version = applied[-1].version if applied else before
    if json_out:
        output.print_json(
            {"database": redact(db), "from": before, "to": version, "applied": [f"{m.version:03d}_{m.name}" for m in applied]}
        )
        return
    if applied:
        for m in applied:
            output.note(f"applied {m.version:03d}_{m.name}")
        print(f"{redact(db)}: schema version {before} -> {version}")
    else:
        print(f"{redact(db)}: schema version {version}, up to date")


@group.command("status")
def status(
    broker: str | None = options.broker_option(),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object."),
) -> None:
    """Health, queue figures, every broker of the realm and every worker.

    Any broker of a realm answers for all of them: its brokers (each with its
    clients, workers and load), the realm's counters and queue, and every
    worker wherever it is connected.

    Examples:

      mtor broker status --broker ws://realm.example:8765

      mtor broker status --broker ws://a.example:8765,ws://b.example:8765 --json
    """
    from mtor_cli.client import RealmError, http_get_json

    url = broker or _default_url()
    try:
        health = http_get_json(url, "/healthz")
        stats = http_get_json(url, "/v1/stats")
        workers = http_get_json(url, "/v1/workers")
        brokers = http_get_json(url, "/v1/brokers")
    except RealmError as exc:
        output.fail(exc.code, exc.message, exc.hint)
    worker_list = workers.get("workers", workers) if isinstance(workers, dict) else workers
    broker_list = brokers.get("brokers", []) if isinstance(brokers, dict) else []
    if json_out:
        output.print_json({"url": url, "health": health, "stats": stats, "brokers": broker_list, "workers": worker_list})
        return
    console = output.out_console()
    counters = stats.get("intents", {})
    console.print(
        f"[bold]{url}[/bold]  {health.get('status', '?')}  realm {health.get('realm', '?')}  "
        f"brokers {stats.get('brokers', 1)}  clients {stats.get('clients', 0)}"
    )
    console.print(
        f"slots busy {stats.get('slots_busy', 0)}/{stats.get('slots_total', 0)}  "
        f"queued {stats.get('queued', 0)}  "
        + "  ".join(f"{k} {v}" for k, v in counters.items() if isinstance(v, int))
    )
    ledger = stats.get("ledger")
    if isinstance(ledger, dict):
        console.print(_ledger_line(ledger))
    console.print(_brokers_table(broker_list))
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


def _brokers_table(brokers: list[Any]) -> Any:
    from rich.table import Table

    table = Table(title="brokers")
    table.add_column("broker", no_wrap=True)
    for column in ("id", "up s", "clients", "workers", "busy", "cpu", "done"):
        table.add_column(column)
    for b in brokers:
        if not isinstance(b, dict):
            continue
        counters = b.get("intents") or {}
        table.add_row(
            _cell(b.get("url")) + ("*" if b.get("this") and len(brokers) > 1 else ""),
            _cell(b.get("id")),
            f"{float(b.get('uptime_s', 0)):.0f}",
            _cell(b.get("clients")),
            _cell(b.get("workers")),
            f"{b.get('slots_busy', 0)}/{b.get('slots_total', 0)}",
            f"{float(b.get('cpu', 0)) * 100:.0f}%",
            _cell(counters.get("completed")),
        )
    if len(brokers) > 1:
        table.caption = "* the broker that answered"
    return table


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
