"""``mtor wallet``: your address, your $9000 off chain and on chain, deposits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mtor_cli import output
from mtor_cli.commands.ledger import JSON_HELP, RPC_HELP, account_from, amount_arg, fmt, run

group = typer.Typer(
    name="wallet",
    help="""Your $9000 in a realm: balances, deposits, refunds.

Without a subcommand: your address and balances.

Examples:

  mtor wallet

  mtor wallet deposit 5
""",
    invoke_without_command=True,
)

KEY_HELP = "Key file of the identity to use (default: your own key)."


def register(app: typer.Typer) -> None:
    app.add_typer(group)


@group.callback()
def show(
    ctx: typer.Context,
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    chain_rpc: str | None = typer.Option(None, "--chain-rpc", help=RPC_HELP),
    offline: bool = typer.Option(False, "--offline", help="Journal only; do not open the chain."),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Your address and balances: spendable, held for running queries, on chain.

    Example:

      mtor wallet --json
    """
    if ctx.invoked_subcommand is not None:
        return
    account = account_from(key)
    info = run(chain_rpc, lambda led: led.wallet(account.address, chain=not offline))
    if json_out:
        output.print_json(info)
        return
    _table(info)


def _table(info: dict[str, Any]) -> None:
    from rich.table import Table

    table = Table(title=f"wallet {info['address']}", show_header=False)
    table.add_column("what")
    table.add_column("$9000", justify="right")
    table.add_row("spendable (journal)", fmt(info["available"]))
    table.add_row("held for running queries", fmt(info["held"]))
    if info["refund_pending"]:
        table.add_row("reserved for a refund", fmt(info["refund_pending"]))
    if info["earned"]:
        table.add_row("earned as a worker", fmt(info["earned"]))
    chain = info.get("chain")
    if chain:
        table.add_row(f"deposit on chain ({chain['name']})", fmt(chain["deposit"]))
        table.add_row("tokens in wallet on chain", fmt(chain["tokens"]))
        if chain["earned"]:
            table.add_row("withdrawable earnings on chain", fmt(chain["earned"]))
    output.out_console().print(table)


@group.command("deposit")
def deposit(
    amount: str = typer.Argument(..., help="$9000 to escrow, a decimal such as 1.5."),
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    chain_rpc: str | None = typer.Option(None, "--chain-rpc", help=RPC_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Escrow AMOUNT of your tokens in the realm (approve + deposit); spendable once confirmed.

    Example:

      mtor wallet deposit 5
    """
    units = amount_arg(amount)
    account = account_from(key)
    res = run(chain_rpc, lambda led: led.deposit(account, units))
    res["amount"] = units
    res["address"] = account.address
    if json_out:
        output.print_json(res)
        return
    state = "credited" if res["credited"] else f"credited after {res['confirmations']} confirmations"
    output.out_console().print(f"deposited {fmt(units)} $9000 ({state}); tx {res['tx_hash']}")


@group.command("faucet")
def faucet(
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    chain_rpc: str | None = typer.Option(None, "--chain-rpc", help=RPC_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Dev chains only: get free test $9000 into your wallet (then `mtor wallet deposit`).

    Example:

      mtor wallet faucet
    """
    account = account_from(key)
    tokens = run(chain_rpc, lambda led: led.faucet(account))
    if json_out:
        output.print_json({"address": account.address, "tokens": tokens})
        return
    output.out_console().print(f"{account.address} now holds {fmt(tokens)} $9000 (not deposited yet)")


@group.command("refund")
def refund(
    amount: str | None = typer.Argument(None, help="$9000 to take back (default: all unspent)."),
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    chain_rpc: str | None = typer.Option(None, "--chain-rpc", help=RPC_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Take unspent deposit back to your wallet (a voucher the realm signs, redeemed on chain).

    Example:

      mtor wallet refund 2.5
    """
    units = None if amount is None else amount_arg(amount)
    account = account_from(key)
    res = run(chain_rpc, lambda led: led.refund(account, units))
    if json_out:
        output.print_json(res)
        return
    output.out_console().print(f"refunded {fmt(res['amount'])} $9000; tx {res['tx_hash']}")
