"""``mtor worker earnings`` and ``mtor worker withdraw``: what a worker earned in a realm.

Registered on the ``mtor worker`` group by :func:`register_on`. Both ask the
realm the worker serves (--broker, $MTOR_BROKER, the config file, else the
embedded realm), as the worker's own key (`--key`, as `mtor worker serve`).
"""

from __future__ import annotations

from pathlib import Path

import typer

from mtor_cli import money, options, output
from mtor_cli.commands.ledger import account_from
from mtor_cli.commands.wallet import RPC_HELP, chain_of, realm_chain, signed, transact

KEY_HELP = "Key file of the worker's identity (default: your own key, as `mtor worker serve`)."

AMOUNTS = ("earned", "withdrawable", "awaiting_settlement", "tokens")


def register_on(group: typer.Typer) -> None:
    group.command("earnings")(earnings)
    group.command("withdraw")(withdraw)


def earnings(
    broker: str | None = options.broker_option(),
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    json_out: bool = options.json_option(),
) -> None:
    """What this worker earned in the realm: in its books, settled on chain, withdrawable.

    Example:

      mtor worker earnings --broker ws://realm.example:8765 --json
    """
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
    table.add_row("earned, not withdrawn", money.fmt(int(data["earned"])))
    table.add_row("settled: withdrawable now", money.fmt(int(data["withdrawable"])))
    table.add_row("waiting for the next settlement", money.fmt(int(data["awaiting_settlement"])))
    table.add_row("tokens in the worker's wallet", money.fmt(int(data["tokens"])))
    output.out_console().print(table)


def withdraw(
    amount: str | None = typer.Argument(None, help="$9000 to withdraw (default: all that is settled)."),
    broker: str | None = options.broker_option(),
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    chain_rpc: str | None = typer.Option(None, "--chain-rpc", help=RPC_HELP),
    json_out: bool = options.json_option(),
) -> None:
    """Move settled earnings from the realm's contract to this worker's wallet.

    Example:

      mtor worker withdraw 10 --key worker-key.json
    """
    units = None if amount is None else money.parse(amount, "AMOUNT", allow_zero=False)
    account = account_from(key)
    url, realm, chain = realm_chain(broker)
    settled = int(signed(url, "GET", "/v1/earnings", account)["withdrawable"])
    units = settled if units is None else units
    if units == 0 or units > settled:
        output.fail(
            "insufficient_earnings",
            f"{money.fmt(units)} $9000 is more than the {money.fmt(settled)} settled for {account.address}"
            if units else f"nothing is settled for {account.address} yet",
            "earnings become withdrawable once the realm settles them: see `mtor worker earnings`",
        )
    with chain_of(realm, chain, chain_rpc) as conn:
        from mtor_cli.realmlink import contracts

        _, ledger = contracts(conn, chain)
        receipt = transact(conn, chain, account, ledger.functions.withdraw(units), "the withdrawal", url)
    signed(url, "POST", "/v1/wallet/sync", account)
    tx = receipt["transactionHash"].to_0x_hex()
    if json_out:
        output.print_json({"broker": url, "address": account.address, "tx_hash": tx, **money.fields("amount", units)})
        return
    print(f"withdrew {money.fmt(units)} $9000 to {account.address}; tx {tx}")
