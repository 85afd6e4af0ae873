"""``mtor chain``: the realm's contracts on a chain."""

from __future__ import annotations

import typer

from mtor_cli import output
from mtor_cli.commands.ledger import DB_HELP, JSON_HELP, RPC_HELP, run

group = typer.Typer(
    name="chain",
    help="The realm's contracts: the $9000 token and RealmLedger.",
    no_args_is_help=True,
)


def register(app: typer.Typer) -> None:
    app.add_typer(group)


@group.command("deploy")
def deploy(
    chain_rpc: str | None = typer.Option(None, "--chain-rpc", help=RPC_HELP),
    force: bool = typer.Option(False, "--force", help="Replace a recorded deployment (empty journal only)."),
    db: str | None = typer.Option(None, "--db", help=DB_HELP, show_default=False),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Deploy NineThousand + RealmLedger and record them, with the realm's three keys:
    the owner (mints within the supply cap, rotates the other keys, takes the fee),
    the settler (posts redemptions and epochs) and the voucher signer (refunds).

    Example:

      mtor chain deploy --chain-rpc http://127.0.0.1:8545
    """
    from dataclasses import asdict

    from ledger.units import format_amount
    from mtor_cli.commands.ledger import ledger_config

    dep = run(chain_rpc, lambda led: led.deploy(force=force), db)
    data = asdict(dep)
    if json_out:
        output.print_json(data)
        return
    from rich.table import Table

    where = dep.rpc or "the embedded chain"
    table = Table(title=f"deployed on {where} (chain {dep.chain_id})", show_header=False)
    table.add_column("what")
    table.add_column("address")
    table.add_column("can")
    table.add_row("token $9000", dep.token, f"supply capped at {format_amount(dep.supply_cap)} $9000")
    cap = ledger_config(chain_rpc).gas_cap
    table.add_row("RealmLedger", dep.ledger, f"exit window {dep.exit_window} s; no transaction over {cap:,} gas")
    table.add_row("owner key", dep.owner, "mint (within the cap), rotate the keys below (two steps), take the fee")
    table.add_row("settler key", dep.settler, "redeem what payers signed for, post epochs")
    table.add_row("voucher signer", dep.voucher_signer, "sign refund vouchers")
    output.out_console().print(table)
    output.note("keys: owner.key, settler.key, voucher.key in the realm's data dir (mode 0600); back them up")
