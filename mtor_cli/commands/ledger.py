"""``mtor ledger``: the realm's books — history, settlement, audit.

Also the helpers every money command shares: opening the realm's ledger from
the data dir (and ``[ledger]`` in config.toml), turning LedgerError into the
one error line, and printing amounts. These are the operator's commands, on
this machine's realm; a user's and a worker's money commands (`mtor wallet`,
`mtor worker earnings`) talk to the realm they use over HTTP.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, TypeVar

import typer

from mtor_cli import output

if TYPE_CHECKING:
    from ledger import Ledger, LedgerConfig

T = TypeVar("T")

group = typer.Typer(
    name="ledger",
    help="The realm's $9000 books: history, settlement on chain, audit.",
    no_args_is_help=True,
)

RPC_HELP = "JSON-RPC URL of the chain (default: $MTOR_CHAIN_RPC, the deployed one, else the embedded chain)."
DB_HELP = (
    "The realm's $9000 journal: postgresql://USER@HOST/DB for a realm of paid brokers (as their --db), "
    "else [ledger] journal in config.toml, else ledger/journal.db in the data dir."
)
JSON_HELP = "Print one JSON object."


def register(app: typer.Typer) -> None:
    app.add_typer(group)


def ledger_settings() -> dict[str, Any]:
    from mtor_cli import paths

    section = paths.load_config().get("ledger", {})
    return section if isinstance(section, dict) else {}


def ledger_config(chain_rpc: str | None = None, journal: str | None = None) -> LedgerConfig:
    """The realm's ledger settings: the data dir, then ``[ledger]`` in config.toml;
    ``journal`` (a postgresql:// URL) overrides ``[ledger] journal``."""
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
            token=cfg.get("token"),
            journal=journal or cfg.get("journal"),
        )
    except (TypeError, ValueError) as exc:
        output.fail("bad_config", f"[ledger] in {paths.config_file()}: {exc}", "see docs/ledger.md for the settings")


def open_ledger(chain_rpc: str | None = None, journal: str | None = None) -> Ledger:
    from ledger import Ledger

    return Ledger(ledger_config(chain_rpc, journal))


@contextmanager
def guarded() -> Iterator[None]:
    """Any LedgerError becomes one error line and a non-zero exit (6 for insufficient funds)."""
    from ledger import LedgerError

    try:
        yield
    except LedgerError as exc:
        output.fail(exc.code, exc.message, exc.hint)


def run(chain_rpc: str | None, fn: Callable[[Ledger], T], journal: str | None = None) -> T:
    with guarded():
        with open_ledger(chain_rpc, journal) as led:
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
    db: str | None = typer.Option(None, "--db", help=DB_HELP, show_default=False),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Journal transactions: deposits, holds, payments, releases, claims, refunds, exits.

    Example:

      mtor ledger history --all --limit 20
    """
    who = None if all_ else (address or account_from(None).address)
    txns = run(None, lambda led: led.journal.history(who, limit), db)
    if json_out:
        output.print_json({"address": who, "transactions": [t.as_dict() for t in txns]})
        return
    from datetime import datetime

    from rich.text import Text

    # A block per transaction, one journal entry a line: an entry names an
    # address, which a table column 80 characters wide would have to split.
    console = output.out_console()
    console.print(Text(f"ledger history — {who or 'whole realm'} ($9000, local time)", style="bold"))
    for t in txns:
        when = datetime.fromtimestamp(t.time).strftime("%Y-%m-%d %H:%M:%S")
        console.print(Text(f"#{t.id}  {when}  {t.kind}  {t.ref}", style="bold"), overflow="fold")
        for account, value in t.entries:
            console.print(f"    {account}  {'+' if value > 0 else ''}{fmt(value)}", markup=False, no_wrap=True)
    if not txns:
        console.print("no transactions yet", style="dim")


@group.command("settle")
def settle(
    chain_rpc: str | None = typer.Option(None, "--chain-rpc", help=RPC_HELP),
    db: str | None = typer.Option(None, "--db", help=DB_HELP, show_default=False),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Settle now (usually automatic): redeem each payer's charges under its signed
    authorisation, then post each epoch's receipts and earnings roots.

    Example:

      mtor ledger settle --json
    """
    epochs = run(chain_rpc, lambda led: led.settle(), db)
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
    db: str | None = typer.Option(None, "--db", help=DB_HELP, show_default=False),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Check the books: the journal's hash chain, every capture against its hold, every
    payer's charges against its signed authorisation, settlement keeping up, and every
    balance, root and anchor against the chain. Exit 1 on any difference.

    Example:

      mtor ledger audit --receipt 4f1c2b9e0d7a4c3e8b6a5d4c3b2a1f0e --json

      mtor ledger audit --db postgresql://mtor@db.example/mtor
    """
    report = run(chain_rpc, lambda led: led.audit(receipt), db)
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


def start_realm_ledger(stop: Any, journal: str | None = None) -> tuple[Any, Any]:
    """A paid realm's money: ``(billing, make_desk)`` for ``BrokerServer(config, billing,
    make_desk)``, and its upkeep process.

    On a dev chain (the embedded one included) a user the journal never saw gets
    a welcome grant on its first query, credited at once and escrowed on chain by
    the upkeep. The upkeep process (deposits, grants, settlement, expiry) runs
    until ``stop`` (an asyncio.Event) is set. ``make_desk`` builds the money desk
    that answers the realm's users (their wallets, the chain, proofs, refund
    vouchers, gas on dev chains) on a thread of its own. Called on the realm's
    running event loop; nothing here touches the chain.

    ``journal``: the realm's PostgreSQL database when several paid brokers share
    one journal (their ``--db``); each broker's upkeep stands by while another
    leads. Raises LedgerError when this broker's deployment is not the journal's.
    """
    import asyncio

    from broker.billing import InsufficientFunds, PaymentRefused
    from broker.protocol import Unavailable
    from ledger import Ledger
    from ledger.desk import MoneyDesk
    from ledger.upkeep import UpkeepProcess

    config = ledger_config(journal=journal)
    led = Ledger(config, commit="loop")
    led.check_journal()
    dep = led.deployment()
    dev = dep.dev if dep is not None else led.rpc_url() is None
    upkeep = UpkeepProcess(config)
    billing = led.billing(
        insufficient_funds=InsufficientFunds,
        refused=PaymentRefused,
        unavailable=lambda message, hint: Unavailable("unavailable", message, hint, retry_after=1.0),
        welcome_grant=config.welcome_grant if dev else 0,
        on_activity=upkeep.poke,
        process_status=upkeep.status,
    )
    asyncio.get_running_loop().create_task(upkeep.run(stop), name="ledger-upkeep")
    public_rpc = ledger_settings().get("public_rpc")

    def make_desk() -> MoneyDesk:
        return MoneyDesk(config, public_rpc=str(public_rpc) if public_rpc else None)

    return billing, make_desk
