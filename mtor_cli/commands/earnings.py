"""``mtor worker earnings`` and ``mtor worker earnings claim``: a worker's $9000.

Workers pull their earnings: each settled epoch puts one root of every
worker's cumulative earnings on chain, and a worker claims, whenever it
chooses, the difference between its total and what it already claimed, with a
proof the realm hands out (``GET /v1/ledger/proof/<address>``). Registered on
the ``mtor worker`` group by :func:`register_on`.
"""

from __future__ import annotations

from pathlib import Path

import typer

from mtor_cli import options, output
from mtor_cli.commands.ledger import (
    JSON_HELP,
    RPC_HELP,
    account_from,
    fmt,
    guarded,
    realm_get,
    remote_realm,
    remote_session,
    run,
)

KEY_HELP = "Key file of the worker's identity (default: your own key, as `mtor worker serve`)."

group = typer.Typer(
    name="earnings",
    help="What this worker earned, and claiming it (settled earnings go to the worker's wallet).",
    invoke_without_command=True,
)


def register_on(worker: typer.Typer) -> None:
    worker.add_typer(group)


@group.callback()
def earnings(
    ctx: typer.Context,
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    chain_rpc: str | None = typer.Option(None, "--chain-rpc", help=RPC_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """What this worker earned: not claimed yet, settled and claimable now, waiting for the
    next settlement, and already claimed.

    Example: mtor worker earnings --key worker-key.json
    """
    if ctx.invoked_subcommand is not None:
        return
    account = account_from(key)
    data = run(chain_rpc, lambda led: led.earnings(account.address))
    if json_out:
        output.print_json(data)
        return
    from rich.table import Table

    table = Table(title=f"earnings of {account.address}", show_header=False)
    table.add_column("what")
    table.add_column("$9000", justify="right")
    table.add_row("earned, not claimed", fmt(data["unclaimed"]))
    table.add_row("settled: claim now (`mtor worker earnings claim`)", fmt(data["claimable"]))
    table.add_row("waiting for the next settlement", fmt(data["awaiting_settlement"]))
    table.add_row("claimed in all", fmt(data["claimed"]))
    table.add_row("tokens in the worker's wallet", fmt(data["tokens"]))
    output.out_console().print(table)


@group.command("claim")
def claim(
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    broker: str | None = options.broker_option(),
    chain_rpc: str | None = typer.Option(None, "--chain-rpc", help=RPC_HELP),
    json_out: bool = typer.Option(False, "--json", help=JSON_HELP),
) -> None:
    """Claim everything settled for this worker and not claimed yet, into its wallet: one
    transaction with the Merkle proof of its cumulative earnings, paid by the worker.

    Example: mtor worker earnings claim --key worker-key.json
    """
    account = account_from(key)
    remote = remote_realm(broker)
    if remote is None:
        res = run(chain_rpc, lambda led: led.claim(account))
    else:
        from ledger import wallet as W

        for attempt in range(2):
            info = realm_get(remote, f"/v1/ledger/proof/{account.address}")
            with remote_session(remote, chain_rpc) as s, guarded():
                if bytes.fromhex(str(info["root"])[2:]) != W.earnings_root(s) and attempt == 0:
                    continue  # the realm settled an epoch meanwhile: a fresh proof
                proof = [bytes.fromhex(p[2:]) for p in info["proof"]]
                res = W.claim(s, account, account.address, int(info["cumulative"]), proof)
                res["epoch"] = info["epoch"]
                break
    if json_out:
        output.print_json(res)
        return
    output.out_console().print(
        f"claimed {fmt(res['amount'])} $9000 to {account.address} (epoch {res['epoch']}, "
        f"{fmt(res['cumulative'])} $9000 claimed in all); tx {res['tx_hash']}"
    )
