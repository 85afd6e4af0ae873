"""``mtor ledger``: the realm's books — history, settlement, audit.

Also the helpers every money command shares: opening the realm's ledger from
the data dir (and ``[ledger]`` in config.toml), or reaching a remote realm's
chain from what its broker publishes (``--broker``, as `mtor ask` resolves
its realm), turning LedgerError into the one error line, and printing amounts.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from datetime import UTC
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from mtor_cli import output

if TYPE_CHECKING:
    from ledger import Ledger, LedgerConfig

T = TypeVar("T")

group = typer.Typer(
    name="ledger",
    help="The realm's $9000 books: history, per-epoch settlement on chain, audit.",
    no_args_is_help=True,
)

RPC_HELP = "JSON-RPC URL of the chain (default: $MTOR_CHAIN_RPC, the deployed one, else the embedded chain)."
JSON_HELP = "Print one JSON object."


def register(app: typer.Typer) -> None:
    app.add_typer(group)


def ledger_settings() -> dict[str, Any]:
    from mtor_cli import paths

    section = paths.load_config().get("ledger", {})
    return section if isinstance(section, dict) else {}


def ledger_config(chain_rpc: str | None = None) -> LedgerConfig:
    """The realm's ledger settings: the data dir, then ``[ledger]`` in config.toml."""
    from ledger import LedgerConfig
    from mtor_cli import paths

    cfg = ledger_settings()
    pricing = Path(cfg["pricing"]) if "pricing" in cfg else paths.config_dir() / "pricing.toml"
    defaults = LedgerConfig(paths.data_dir())
    try:
        return LedgerConfig(
            paths.data_dir(),
            chain_rpc=chain_rpc or cfg.get("chain_rpc"),
            confirmations=int(cfg.get("confirmations", 0)),
            epoch_seconds=float(cfg.get("epoch_seconds", 60.0)),
            epoch_queries=int(cfg.get("epoch_queries", defaults.epoch_queries)),
            pricing_file=pricing,
            gas_cap=int(cfg.get("gas_cap", defaults.gas_cap)),
            exit_window_s=int(cfg["exit_window_s"]) if "exit_window_s" in cfg else None,
            hold_ttl_s=float(cfg.get("hold_ttl_s", defaults.hold_ttl_s)),
            stale_epochs=int(cfg.get("stale_epochs", defaults.stale_epochs)),
        )
    except (TypeError, ValueError) as exc:
        output.fail("bad_config", f"[ledger] in {paths.config_file()}: {exc}", "see docs/ledger.md for the settings")


def open_ledger(chain_rpc: str | None = None) -> Ledger:
    from ledger import Ledger

    return Ledger(ledger_config(chain_rpc))


def remote_realm(broker: str | None) -> str | None:
    """The broker of a remote realm: ``--broker``/$MTOR_BROKER, else the config file's;
    None means this machine's realm, whose ledger is in the data dir."""
    from mtor_cli.paths import config_file, configured_broker

    if broker:
        return broker
    try:
        return configured_broker()
    except ValueError as exc:  # tomllib.TOMLDecodeError
        output.fail("usage", f"cannot read {config_file()}: {exc}", "fix or remove the file")


def realm_get(broker: str, path: str) -> Any:
    """GET a JSON endpoint of a remote realm's broker; one error line on failure."""
    from mtor_cli.client import RealmError, http_get_json

    try:
        return http_get_json(broker, path, timeout=10.0)
    except RealmError as exc:
        output.fail(exc.code, exc.message, exc.hint)


@contextmanager
def remote_session(broker: str, chain_rpc: str | None) -> Iterator[Any]:
    """The chain and contracts of the realm at ``broker`` (from ``/v1/ledger/terms``), for what a
    user or worker does on chain by itself: no realm journal, no realm key."""
    from types import SimpleNamespace

    from ledger.chain import Chain

    terms = realm_get(broker, "/v1/ledger/terms")
    if not isinstance(terms, dict) or "ledger" not in terms:
        output.fail("free_realm", f"the realm at {broker} does not charge: it has no ledger", "")
    rpc = chain_rpc or terms.get("rpc")
    if not rpc:
        output.fail(
            "embedded_chain",
            f"the realm at {broker} keeps its chain embedded on its own machine",
            "run this command on that machine, or pass --chain-rpc of a node that serves the realm's chain",
        )
    with guarded():
        with Chain.connect(rpc) as chain:
            if chain.chain_id != int(terms["chain_id"]):
                output.fail(
                    "wrong_chain",
                    f"{rpc} is chain {chain.chain_id}; the realm's contracts are on chain {terms['chain_id']}",
                    "pass the --chain-rpc of the realm's chain",
                )
            yield SimpleNamespace(
                chain=chain,
                token=chain.contract("NineThousand", terms["token"]),
                ledger=chain.contract("RealmLedger", terms["ledger"]),
                terms=terms,
            )


@contextmanager
def guarded() -> Iterator[None]:
    """Any LedgerError becomes one error line and a non-zero exit (6 for insufficient funds)."""
    from ledger import LedgerError

    try:
        yield
    except LedgerError as exc:
        output.fail(exc.code, exc.message, exc.hint)


def run(chain_rpc: str | None, fn: Callable[[Ledger], T]) -> T:
    with guarded():
        with open_ledger(chain_rpc) as led:
            return fn(led)
    raise AssertionError("unreachable")  # guarded() exits on error


def amount_arg(text: str) -> int:
    from ledger import parse_amount

    with guarded():
        return parse_amount(text)
    raise AssertionError("unreachable")


def fmt(units: int | None) -> str:
    from ledger import format_amount

    return "-" if units is None else format_amount(units)


def account_from(key: Path | None) -> Any:
    from mtor_cli.identity import IdentityError, load_or_create_account

    try:
        return load_or_create_account(key)
    except IdentityError as exc:
        output.fail(exc.code, exc.message, f"{exc.hint}, or pass --key with a valid key file")


@group.command("history")
def history(
    address: str | None = typer.Option(None, "--address", help="Only this address (default: yours)."),
    all_: bool = typer.Option(False, "--all", help="Every transaction of the realm."),
    limit: int = typer.Option(50, "--limit", min=1, max=10000, help="How many, newest first."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Journal transactions: deposits, holds, payments, releases, claims, refunds, exits."""
    who = None if all_ else (address or account_from(None).address)
    txns = run(None, lambda led: led.journal.history(who, limit))
    if json_out:
        output.print_json({"address": who, "transactions": [t.as_dict() for t in txns]})
        return
    from datetime import datetime

    from rich.table import Table

    table = Table(title=f"ledger history — {who or 'whole realm'}")
    for col in ("#", "time (UTC)", "kind", "ref", "entries ($9000)"):
        table.add_column(col)
    for t in txns:
        when = datetime.fromtimestamp(t.time, UTC).strftime("%Y-%m-%d %H:%M:%S")
        entries = ", ".join(f"{a} {'+' if v > 0 else ''}{fmt(v)}" for a, v in t.entries)
        table.add_row(str(t.id), when, t.kind, t.ref[:24], entries)
    output.out_console().print(table)


@group.command("settle")
def settle(
    chain_rpc: str | None = typer.Option(None, "--chain-rpc", help=RPC_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Settle now (usually automatic): redeem each payer's charges under its signed
    authorisation, then post each epoch's receipts and earnings roots.

    Example: mtor ledger settle --json
    """
    epochs = run(chain_rpc, lambda led: led.settle())
    data = [e.as_dict() for e in epochs]
    if json_out:
        output.print_json({"settled": data})
        return
    if not data:
        output.note("nothing to settle: no paid queries since the last epoch")
        return
    from rich.table import Table

    table = Table(title="settled")
    for col in ("epoch", "receipts", "earnings (cumulative)", "journal head", "tx"):
        table.add_column(col)
    for e in data:
        table.add_row(
            str(e["epoch"]), str(e["receipts"]), fmt(e["earnings_total"]), e["journal_head"][:18] + "…",
            str(e["tx_hash"]),
        )
    output.out_console().print(table)


@group.command("audit")
def audit(
    receipt: str | None = typer.Option(None, "--receipt", help="Also prove this query's receipt (its guid)."),
    chain_rpc: str | None = typer.Option(None, "--chain-rpc", help=RPC_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Check the books: the journal's hash chain, every capture against its hold, every
    payer's charges against its signed authorisation, settlement keeping up, and every
    balance, root and anchor against the chain. Exit 1 on any difference.

    Example: mtor ledger audit --receipt 3f2a... --json
    """
    report = run(chain_rpc, lambda led: led.audit(receipt))
    if json_out:
        output.print_json(report.as_dict())
    else:
        con = output.out_console()
        checked = ", ".join(f"{v} {k.replace('_', ' ')}" for k, v in report.checked.items())
        if report.findings:
            from rich.table import Table

            table = Table(title="audit: differences")
            for col in ("check", "subject", "journal", "chain", "detail"):
                table.add_column(col)
            for f in report.findings:
                table.add_row(f.check, f.subject, str(f.journal), str(f.chain), f.detail)
            con.print(table)
        else:
            con.print(f"audit clean: the journal and the chain agree ({checked})")
        if report.proof is not None:
            p = report.proof
            verdict = "valid" if p["valid"] else "INVALID"
            con.print(
                f"receipt {p['guid']}: {verdict} in epoch {p['epoch']} (root {p['root']}, "
                f"{len(p['proof'])} proof steps, checked locally and on chain)"
            )
    if not report.clean:
        raise SystemExit(output.EXIT_FAILED)


def start_realm_ledger(stop: Any) -> Any:
    """The realm's billing (``BrokerServer(..., billing=...)``) and its upkeep process.

    On a dev chain (the embedded one included) a user the journal never saw gets
    a welcome grant on its first query, credited at once and escrowed on chain by
    the upkeep. The upkeep process (deposits, grants, settlement, expiry) runs
    until ``stop`` (an asyncio.Event) is set. Called on the realm's running event
    loop; nothing here touches the chain.
    """
    import asyncio

    from broker.billing import InsufficientFunds, PaymentRefused
    from ledger import Ledger
    from ledger.upkeep import UpkeepProcess

    config = ledger_config()
    led = Ledger(config, commit="loop")
    dep = led.deployment()
    dev = dep.dev if dep is not None else led.rpc_url() is None
    upkeep = UpkeepProcess(config)
    billing = led.billing(
        insufficient_funds=InsufficientFunds,
        refused=PaymentRefused,
        welcome_grant=config.welcome_grant if dev else 0,
        on_activity=upkeep.poke,
        process_status=upkeep.status,
    )
    asyncio.get_running_loop().create_task(upkeep.run(stop), name="ledger-upkeep")
    return billing
