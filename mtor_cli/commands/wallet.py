"""``mtor wallet``: your $9000 in the realm you use: balances, deposits, refunds.

Every subcommand talks to the realm (--broker, $MTOR_BROKER, the config file,
else the embedded realm): balances are what that realm's books hold for you,
read over a signed request; deposits and refunds are your own transactions on
the realm's chain, checked to be that chain before anything is signed.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn

import typer

from mtor_cli import money, options, output
from mtor_cli.commands.ledger import account_from

if TYPE_CHECKING:
    from ledger.chain import Chain
    from mtor_cli.realmlink import Realm, RealmChain

group = typer.Typer(
    name="wallet",
    help="""Your $9000 in a realm: balances, deposits, refunds.

Without a subcommand: what the realm's books hold for you (spendable, held
for running queries, earned) and what its contracts hold (your deposit, your
tokens). Amounts are decimal $9000; --json adds base units as strings.

Examples:

  mtor wallet --broker ws://realm.example:8765

  mtor wallet deposit 5
""",
    invoke_without_command=True,
)

KEY_HELP = "Key file of the identity to use (default: your own key)."
RPC_HELP = "Send transactions through this JSON-RPC URL of the realm's chain (default: the realm's own)."


def register(app: typer.Typer) -> None:
    app.add_typer(group)


@group.callback()
def show(
    ctx: typer.Context,
    broker: str | None = options.broker_option(),
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    json_out: bool = options.json_option(),
) -> None:
    if ctx.invoked_subcommand is not None:
        return
    url = options.resolve_broker(broker)
    data = signed(url, "GET", "/v1/wallet", account_from(key))
    if json_out:
        output.print_json({"broker": url, **wallet_json(data)})
        return
    output.out_console().print(wallet_table(url, data))


def wallet_json(data: dict[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {"address": data["address"]}
    for name in ("available", "held", "refund_pending", "earned"):
        out.update(money.fields(name, int(data[name])))
    chain = data.get("chain")
    if chain:
        out["chain"] = {
            **{k: chain[k] for k in ("chain_id", "name", "token", "ledger", "dev")},
            **money.fields("deposit", int(chain["deposit"])),
            **money.fields("tokens", int(chain["tokens"])),
            **money.fields("earned", int(chain["earned"])),
        }
    return out


def wallet_table(url: str, data: dict[str, Any]) -> Any:
    from rich.table import Table

    table = Table(title=f"{data['address']}\nin the realm at {url}", show_header=False)
    table.add_column("what")
    table.add_column("$9000", justify="right", no_wrap=True)
    table.add_row("spendable", money.fmt(int(data["available"])))
    table.add_row("held for running queries", money.fmt(int(data["held"])))
    if int(data["refund_pending"]):
        table.add_row("reserved for a refund", money.fmt(int(data["refund_pending"])))
    if int(data["earned"]):
        table.add_row("earned as a worker", money.fmt(int(data["earned"])))
    chain = data.get("chain")
    if chain:
        table.add_row(f"your deposit on chain {chain['chain_id']}", money.fmt(int(chain["deposit"])))
        table.add_row("tokens in your wallet, not deposited", money.fmt(int(chain["tokens"])))
        if int(chain["earned"]):
            table.add_row("settled earnings, withdrawable", money.fmt(int(chain["earned"])))
    return table


@group.command("deposit")
def deposit(
    amount: str = typer.Argument(..., help="$9000 to deposit, a decimal such as 1.5."),
    broker: str | None = options.broker_option(),
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    chain_rpc: str | None = typer.Option(None, "--chain-rpc", help=RPC_HELP),
    json_out: bool = options.json_option(),
) -> None:
    """Deposit AMOUNT of your tokens into the realm's escrow; spendable once the realm sees it.

    Your key signs an approve and a deposit on the realm's chain, after the
    chain id and the realm's contracts there are checked.

    Example:

      mtor wallet deposit 5 --broker ws://realm.example:8765
    """
    units = money.parse(amount, "AMOUNT", allow_zero=False)
    account = account_from(key)
    url, realm, chain = realm_chain(broker)
    with chain_of(realm, chain, chain_rpc) as conn:
        from mtor_cli.realmlink import contracts

        token, ledger = contracts(conn, chain)
        have = int(conn._call(lambda: token.functions.balanceOf(account.address).call()))
        if have < units:
            hint = "get test $9000 with `mtor wallet faucet`" if chain.faucet else "get $9000 from someone who has it"
            output.fail(
                "insufficient_tokens",
                f"{account.address} holds {money.fmt(have)} $9000 on chain {chain.chain_id}, less than {amount}",
                hint,
            )
        allowance = int(conn._call(lambda: token.functions.allowance(account.address, chain.ledger).call()))
        if allowance < units:
            transact(conn, chain, account, token.functions.approve(chain.ledger, units), "the approval", url)
        receipt = transact(conn, chain, account, ledger.functions.deposit(units), "the deposit", url)
    tx = receipt["transactionHash"].to_0x_hex()
    synced = signed(url, "POST", "/v1/wallet/sync", account, {"tx": tx})
    credited = bool(synced["tx_credited"])
    if json_out:
        output.print_json(
            {"broker": url, "tx_hash": tx, "credited": credited, **money.fields("amount", units),
             "wallet": wallet_json(synced["wallet"])}
        )  # fmt: skip
        return
    state = "spendable now" if credited else "the realm credits it once the chain confirms it"
    print(f"deposited {money.fmt(units)} $9000 ({state}); spendable: {money.fmt(int(synced['wallet']['available']))}")
    print(f"tx {tx}")


@group.command("faucet")
def faucet(
    broker: str | None = options.broker_option(),
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    json_out: bool = options.json_option(),
) -> None:
    """Test $9000 (and gas) from the realm, where it offers a faucet (dev chains).

    Example:

      mtor wallet faucet && mtor wallet deposit 5
    """
    account = account_from(key)
    url, _, chain = realm_chain(broker)
    if not chain.faucet:
        output.fail(
            "no_faucet",
            f"the realm at {url} offers no faucet (it settles on chain {chain.chain_id})",
            "get $9000 from someone who has it, then `mtor wallet deposit`",
        )
    data = signed(url, "POST", "/v1/wallet/faucet", account)
    if json_out:
        output.print_json({"broker": url, "address": data["address"], **money.fields("minted", int(data["minted"])),
                           **money.fields("tokens", int(data["tokens"]))})  # fmt: skip
        return
    print(f"{account.address} now holds {money.fmt(int(data['tokens']))} $9000 on chain {chain.chain_id}")
    output.note("not deposited yet: `mtor wallet deposit AMOUNT` makes them spendable in the realm")


@group.command("refund")
def refund(
    amount: str | None = typer.Argument(None, help="$9000 to take back (default: all unspent)."),
    broker: str | None = options.broker_option(),
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    chain_rpc: str | None = typer.Option(None, "--chain-rpc", help=RPC_HELP),
    json_out: bool = options.json_option(),
) -> None:
    """Take unspent deposit back to your wallet: the realm signs a voucher, you redeem it on chain.

    Example:

      mtor wallet refund 2.5
    """
    units = None if amount is None else money.parse(amount, "AMOUNT", allow_zero=False)
    account = account_from(key)
    url, realm, chain = realm_chain(broker)
    payload = None if units is None else {"amount": str(units)}
    with chain_of(realm, chain, chain_rpc) as conn:  # checked before the realm reserves anything
        voucher = signed(url, "POST", "/v1/wallet/refund", account, payload)
        from mtor_cli.realmlink import contracts

        _, ledger = contracts(conn, chain)
        sig = bytes.fromhex(str(voucher["signature"]).removeprefix("0x"))
        redeem = ledger.functions.refund(int(voucher["amount"]), int(voucher["deadline"]), sig)
        receipt = transact(conn, chain, account, redeem, "the refund", url)
    synced = signed(url, "POST", "/v1/wallet/sync", account)
    refunded = int(voucher["amount"])
    tx = receipt["transactionHash"].to_0x_hex()
    if json_out:
        output.print_json({"broker": url, "tx_hash": tx, **money.fields("amount", refunded),
                           "wallet": wallet_json(synced["wallet"])})  # fmt: skip
        return
    print(f"refunded {money.fmt(refunded)} $9000 to {account.address}; tx {tx}")


# --- shared by the money commands (also `mtor worker earnings / withdraw`) ------------------


def realm_chain(broker: str | None) -> tuple[str, Realm, RealmChain]:
    """The realm to act on and the chain it settles on (a free realm is an error)."""
    from mtor_cli.client import RealmError
    from mtor_cli.realmlink import discover

    url = options.resolve_broker(broker)
    try:
        realm = discover(url)
        return url, realm, realm.require_chain()
    except RealmError as exc:
        _fail(exc)


def chain_of(realm: Realm, chain: RealmChain, rpc: str | None) -> Chain:
    from mtor_cli.client import RealmError
    from mtor_cli.realmlink import open_chain

    try:
        if rpc is not None:
            from mtor_cli.client import check_url

            check_url(rpc)
            if not rpc.startswith(("http://", "https://")):
                raise RealmError("usage", f"--chain-rpc {rpc!r} is not an http(s) JSON-RPC URL", "e.g. https://rpc.example")
        return open_chain(chain, rpc)
    except RealmError as exc:
        _fail(exc)


def signed(url: str, method: str, path: str, account: Any, payload: dict[str, Any] | None = None) -> Any:
    from mtor_cli.client import RealmError
    from mtor_cli.signed import call

    try:
        return call(url, method, path, payload, account, timeout=120)
    except RealmError as exc:
        _fail(exc)


def transact(conn: Chain, chain: RealmChain, account: Any, fn: Any, what: str, url: str) -> Any:
    """Sign and send ``fn`` with ``account`` on the realm's chain; the receipt.

    On a dev chain the realm pays the gas: asked once when the account has none.
    """
    from ledger.errors import LedgerError

    try:
        try:
            return conn.transact(account, fn, what=what)
        except LedgerError as exc:
            if exc.code != "no_gas" or not chain.dev:
                raise
        signed(url, "POST", "/v1/chain/gas", account)
        return conn.transact(account, fn, what=what)
    except LedgerError as exc:
        output.fail(exc.code, exc.message, exc.hint)


def _fail(exc: Any) -> NoReturn:
    output.fail(exc.code, exc.message, exc.hint)
