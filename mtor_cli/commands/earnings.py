"""``mtor worker earnings`` and ``mtor worker withdraw``: a worker's $9000.

Registered on the ``mtor worker`` group by :func:`register_on`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from mtor_cli import output
from mtor_cli.commands.ledger import JSON_HELP, RPC_HELP, account_from, amount_arg, fmt, run

KEY_HELP = "Key file of the worker's identity (default: your own key, as `mtor worker serve`)."


def register_on(group: typer.Typer) -> None:
    group.command("earnings")(earnings)
    group.command("withdraw")(withdraw)


def earnings(
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    chain_rpc: str | None = typer.Option(None, "--chain-rpc", help=RPC_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """What this worker earned: in the journal, settled on chain, withdrawable.

    Example:

      mtor worker earnings --json
    """
    account = account_from(key)
    info = run(chain_rpc, lambda led: led.wallet(account.address))
    chain = info["chain"]
    data = {
        "address": account.address,
        "earned": info["earned"],
        "withdrawable": chain["earned"],
        "awaiting_settlement": info["earned"] - chain["earned"],
        "withdrawn_tokens": chain["tokens"],
    }
    if json_out:
        output.print_json(data)
        return
    from rich.table import Table

    table = Table(title=f"earnings of {account.address}", show_header=False)
    table.add_column("what")
    table.add_column("$9000", justify="right")
    table.add_row("earned, not withdrawn", fmt(data["earned"]))
    table.add_row("settled: withdrawable now", fmt(data["withdrawable"]))
    table.add_row("waiting for the next settlement", fmt(data["awaiting_settlement"]))
    table.add_row("tokens in the worker's wallet", fmt(data["withdrawn_tokens"]))
    output.out_console().print(table)


def withdraw(
    amount: str | None = typer.Argument(None, help="$9000 to withdraw (default: all that is settled)."),
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    chain_rpc: str | None = typer.Option(None, "--chain-rpc", help=RPC_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Move settled earnings from the realm's contract to this worker's wallet.

    Example:

      mtor worker withdraw 10
    """
    units = None if amount is None else amount_arg(amount)
    account = account_from(key)
    res = run(chain_rpc, lambda led: led.withdraw(account, units))
    if json_out:
        output.print_json({"address": account.address, **res})
        return
    output.out_console().print(f"withdrew {fmt(res['amount'])} $9000 to {account.address}; tx {res['tx_hash']}")
