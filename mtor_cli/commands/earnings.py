"""``mtor worker earnings`` and ``mtor worker earnings claim``: a worker's $9000 in a realm.

Workers pull their earnings: each settled epoch puts one root of every
worker's cumulative earnings on chain, and a worker claims, whenever it
chooses, the difference between its total and what it already claimed, with a
proof the realm hands out (``GET /v1/ledger/proof/<address>``). Both commands
ask the realm the worker serves (--broker, $MTOR_BROKER, the config file, else
the embedded realm), as the worker's own key (`--key`, as `mtor worker serve`).
Registered on the ``mtor worker`` group by :func:`register_on`.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import typer

from mtor_cli import money, options, output
from mtor_cli.commands.ledger import account_from
from mtor_cli.commands.wallet import RPC_HELP, on_chain, realm_chain, signed, try_sync, with_gas

KEY_HELP = "Key file of the worker's identity (default: your own key, as `mtor worker serve`)."

AMOUNTS = ("unclaimed", "claimable", "awaiting_settlement", "claimed", "settled_total", "tokens")

group = typer.Typer(
    name="earnings",
    help="""What this worker earned in a realm, and claiming it into the worker's wallet.

Examples:

  mtor worker earnings --broker ws://realm.example:8765

  mtor worker earnings claim --key worker-key.json
""",
    invoke_without_command=True,
)


def register_on(worker: typer.Typer) -> None:
    worker.add_typer(group)


@group.callback()
def earnings(
    ctx: typer.Context,
    broker: str | None = options.broker_option(),
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    json_out: bool = options.json_option(),
) -> None:
    """What this worker earned in the realm: not claimed yet, settled and claimable now,
    waiting for the next settlement, and already claimed.

    Example:

      mtor worker earnings --broker ws://realm.example:8765 --json
    """
    if ctx.invoked_subcommand is not None:
        return
    url = options.resolve_broker(broker)
    data = signed(url, "GET", "/v1/earnings", account_from(key))
    if json_out:
        fields = {k: v for name in AMOUNTS for k, v in money.fields(name, int(data[name])).items()}
        output.print_json({"broker": url, "address": data["address"], **fields})
        return
    from rich.table import Table

    table = Table(title=f"earnings of {data['address']}\nin the realm at {url}", show_header=False)
    table.add_column("what")
    table.add_column("$9000", justify="right", no_wrap=True)
    table.add_row("earned, not claimed", money.fmt(int(data["unclaimed"])))
    table.add_row("settled: claim now", money.fmt(int(data["claimable"])))
    table.add_row("waiting for the next settlement", money.fmt(int(data["awaiting_settlement"])))
    table.add_row("claimed in all", money.fmt(int(data["claimed"])))
    table.add_row("tokens in the worker's wallet", money.fmt(int(data["tokens"])))
    output.out_console().print(table)
    if int(data["claimable"]):
        output.note("`mtor worker earnings claim` moves what is settled into the worker's wallet")


@group.command("claim")
def claim(
    broker: str | None = options.broker_option(),
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    chain_rpc: str | None = typer.Option(None, "--chain-rpc", help=RPC_HELP),
    json_out: bool = options.json_option(),
) -> None:
    """Claim everything settled for this worker and not claimed yet, into its wallet: one
    transaction with the Merkle proof of its cumulative earnings, paid by the worker
    (on a dev chain the realm pays the gas).

    Example:

      mtor worker earnings claim --key worker-key.json
    """
    account = account_from(key)
    url, _, chain = realm_chain(broker)
    res = _claim(url, chain, account, chain_rpc, fresh=True)
    try_sync(url, account, res["tx_hash"])
    if json_out:
        amounts = {k: v for name in ("amount", "cumulative") for k, v in money.fields(name, res[name]).items()}
        output.print_json({"broker": url, **res, **amounts})
        return
    print(
        f"claimed {money.fmt(res['amount'])} $9000 to {account.address} (epoch {res['epoch']}, "
        f"{money.fmt(res['cumulative'])} $9000 claimed in all); tx {res['tx_hash']}"
    )


def _claim(url: str, chain: Any, account: Any, chain_rpc: str | None, *, fresh: bool) -> dict[str, Any]:
    """Claim with the realm's proof; once more with a fresh proof (``fresh``) if the realm
    settled an epoch between the proof and the claim."""
    from ledger import wallet as W
    from mtor_cli.client import RealmError
    from mtor_cli.signed import call

    try:
        info = call(url, "GET", f"/v1/ledger/proof/{account.address}", signed=False, timeout=120)
    except RealmError as exc:
        output.fail(exc.code, exc.message, exc.hint)
    cumulative = int(info["cumulative"])
    proof = [bytes.fromhex(p[2:]) for p in info["proof"]]
    with on_chain(chain, chain_rpc) as s:
        stale = bytes.fromhex(str(info["root"])[2:]) != W.earnings_root(s)
        if not (stale and fresh):
            res = with_gas(url, chain, account, lambda: W.claim(s, account, account.address, cumulative, proof))
            return {**res, "epoch": info["epoch"]}
    return _claim(url, chain, account, chain_rpc, fresh=False)
