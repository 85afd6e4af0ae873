"""``mtor chain``: the realm's contracts on a chain."""

from __future__ import annotations

import typer

from mtor_cli import output
from mtor_cli.commands.ledger import JSON_HELP, RPC_HELP, run

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
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Deploy NineThousand + RealmLedger with the realm's operator key and record their addresses.

    Example:

      mtor chain deploy --chain-rpc http://127.0.0.1:8545
    """
    from dataclasses import asdict

    dep = run(chain_rpc, lambda led: led.deploy(force=force))
    data = asdict(dep)
    if json_out:
        output.print_json(data)
        return
    where = dep.rpc or "the embedded chain"
    output.out_console().print(
        f"deployed on {where} (chain {dep.chain_id}): token {dep.token}, ledger {dep.ledger}, operator {dep.operator}"
    )
