"""``mtor wallet``: your address, your $9000 off chain and on chain, deposits."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mtor_cli import options, output
from mtor_cli.commands.ledger import (
    JSON_HELP,
    RPC_HELP,
    account_from,
    amount_arg,
    fmt,
    guarded,
    remote_realm,
    remote_session,
    run,
)

group = typer.Typer(
    name="wallet",
    help="Your $9000: address, balances, deposits into the realm's escrow, refunds, leaving.",
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
    """Your address and balances: spendable, held for running queries, on chain."""
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
        table.add_row("earned as a worker, not claimed", fmt(info["earned"]))
    table.add_row("spent in all (journal)", fmt(info["charged"]))
    chain = info.get("chain")
    if chain:
        table.add_row(f"deposit on chain ({chain['name']})", fmt(chain["deposit"]))
        table.add_row("spent in all, redeemed on chain", fmt(chain["spent"]))
        table.add_row("tokens in wallet on chain", fmt(chain["tokens"]))
        if chain["exit"] != "none":
            table.add_row("exit", f"{chain['exit']} (finishes after {chain['finish_after']})")
    output.out_console().print(table)


@group.command("deposit")
def deposit(
    amount: str = typer.Argument(..., help="$9000 to escrow, a decimal such as 1.5."),
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    chain_rpc: str | None = typer.Option(None, "--chain-rpc", help=RPC_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Escrow AMOUNT of your tokens in the realm (approve + deposit); spendable once confirmed."""
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
    """Dev chains only: get free test $9000 into your wallet (then `mtor wallet deposit`)."""
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
    """Take unspent deposit back to your wallet (a voucher the realm signs, redeemed on chain)."""
    units = None if amount is None else amount_arg(amount)
    account = account_from(key)
    res = run(chain_rpc, lambda led: led.refund(account, units))
    if json_out:
        output.print_json(res)
        return
    output.out_console().print(f"refunded {fmt(res['amount'])} $9000; tx {res['tx_hash']}")


@group.command("exit")
def exit_(
    finish: bool = typer.Option(False, "--finish", help="Take the rest of your deposit back (after the window)."),
    cancel: bool = typer.Option(False, "--cancel", help="Stay: cancel the exit you started."),
    status: bool = typer.Option(False, "--status", help="Only show where your exit stands."),
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    broker: str | None = options.broker_option(),
    chain_rpc: str | None = typer.Option(None, "--chain-rpc", help=RPC_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Leave the realm without its operator: start an exit on chain; after the realm's
    challenge window (its last chance to collect what you signed for) take the rest
    of your deposit back with --finish. Only your key is needed, never the realm's.

    Example: mtor wallet exit, then later: mtor wallet exit --finish
    """
    if finish + cancel + status > 1:
        output.fail("usage", "--finish, --cancel and --status go alone", "pick one")
    action = "finish" if finish else "cancel" if cancel else "status" if status else "start"
    account = account_from(key)
    remote = remote_realm(broker)
    if remote is None:
        res = run(chain_rpc, lambda led: led.exit(account, action))
    else:
        from ledger import wallet as W

        acts = {"start": W.start_exit, "finish": W.finish_exit, "cancel": W.cancel_exit}
        with remote_session(remote, chain_rpc) as s, guarded():
            res = W.exit_status(s, account.address) if action == "status" else acts[action](s, account)
    if json_out:
        output.print_json({**res, "action": action})
        return
    con = output.out_console()
    if action == "finish":
        con.print(f"exit finished: {fmt(res['amount'])} $9000 back in {account.address}; tx {res['tx_hash']}")
    elif res["exit"] == "waiting":
        con.print(
            f"exit of {account.address} started: {fmt(res['deposit'])} $9000 deposited; "
            f"finish with `mtor wallet exit --finish` in {res['seconds_left']} s"
            + (f" (tx {res['tx_hash']})" if "tx_hash" in res else "")
        )
    elif res["exit"] == "ready":
        con.print(f"the window has passed: `mtor wallet exit --finish` takes {fmt(res['deposit'])} $9000 back")
    else:
        con.print(f"no exit running for {account.address}; {fmt(res['deposit'])} $9000 deposited")
