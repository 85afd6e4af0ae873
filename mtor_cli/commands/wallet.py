"""``mtor wallet``: your $9000 in the realm you use: balances, deposits, refunds, leaving.

Every subcommand talks to the realm (--broker, $MTOR_BROKER, the config file,
else the embedded realm): balances are what that realm's books hold for you,
read over a signed request; the faucet, deposits, refunds and exits are your
own transactions on the realm's chain (ledger.wallet), checked to be that
chain and those contracts before anything is signed.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, NoReturn, TypeVar

import typer

from mtor_cli import money, options, output
from mtor_cli.commands.ledger import account_from

if TYPE_CHECKING:
    from mtor_cli.realmlink import ChainSession, Realm, RealmChain

T = TypeVar("T")

group = typer.Typer(
    name="wallet",
    help="""Your $9000 in a realm: balances, deposits, refunds, leaving.

Without a subcommand: what the realm's books hold for you (spendable, held
for running queries, spent) and what its contracts hold (your deposit, what
was redeemed from it, your tokens, an exit). Amounts are decimal $9000;
--json adds base units as strings.

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
    for name in ("available", "held", "refund_pending", "earned", "charged"):
        out.update(money.fields(name, int(data[name])))
    out["exiting"] = bool(data.get("exiting"))
    chain = data.get("chain")
    if chain:
        out["chain"] = {
            **{k: chain[k] for k in ("chain_id", "name", "token", "ledger", "dev", "exit", "finish_after")},
            **{k: v for name in ("deposit", "spent", "tokens", "claimed") for k, v in money.fields(name, int(chain[name])).items()},
        }  # fmt: skip
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
        table.add_row("earned as a worker, not claimed", money.fmt(int(data["earned"])))
    table.add_row("spent in all", money.fmt(int(data["charged"])))
    chain = data.get("chain")
    if chain:
        table.add_row(f"your deposit on chain {chain['chain_id']}", money.fmt(int(chain["deposit"])))
        table.add_row("spent, redeemed on chain", money.fmt(int(chain["spent"])))
        table.add_row("tokens in your wallet, not deposited", money.fmt(int(chain["tokens"])))
        if chain["exit"] != "none":
            table.add_row("exit", f"{chain['exit']} (finishes after {chain['finish_after']})")
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
    from ledger import wallet as W

    units = money.parse(amount, "AMOUNT", allow_zero=False)
    account = account_from(key)
    url, _, chain = realm_chain(broker)
    with on_chain(chain, chain_rpc) as s:
        tx = with_gas(url, chain, account, lambda: W.deposit(s, account, units))
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
    chain_rpc: str | None = typer.Option(None, "--chain-rpc", help=RPC_HELP),
    json_out: bool = options.json_option(),
) -> None:
    """Test $9000 from the realm's token, where the realm offers a faucet (dev chains).

    Your key calls the token's faucet on the realm's chain; on a dev chain the
    realm pays the gas.

    Example:

      mtor wallet faucet && mtor wallet deposit 5
    """
    from ledger import wallet as W

    account = account_from(key)
    url, _, chain = realm_chain(broker)
    if not chain.faucet:
        output.fail(
            "no_faucet",
            f"the realm at {url} offers no faucet (it settles on chain {chain.chain_id})",
            "get $9000 from someone who has it, then `mtor wallet deposit`",
        )
    with on_chain(chain, chain_rpc) as s:
        before = W.tokens(s, account.address)
        tokens = with_gas(url, chain, account, lambda: W.faucet(s, account))
    if json_out:
        output.print_json({"broker": url, "address": account.address, **money.fields("minted", tokens - before),
                           **money.fields("tokens", tokens)})  # fmt: skip
        return
    print(f"{account.address} now holds {money.fmt(tokens)} $9000 on chain {chain.chain_id}")
    output.note("not deposited yet: `mtor wallet deposit AMOUNT` makes them spendable in the realm")


@group.command("refund")
def refund(
    amount: str | None = typer.Argument(None, help="$9000 to take back (default: all unspent)."),
    broker: str | None = options.broker_option(),
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    chain_rpc: str | None = typer.Option(None, "--chain-rpc", help=RPC_HELP),
    json_out: bool = options.json_option(),
) -> None:
    """Take unspent deposit back to your wallet, the fast way: the realm signs a voucher,
    you redeem it on chain. (Without the realm: `mtor wallet exit`.)

    A voucher you could not redeem (a lost transaction) is handed out again
    when you ask again without an amount, until it expires.

    Example:

      mtor wallet refund 2.5
    """
    from ledger import wallet as W

    units = None if amount is None else money.parse(amount, "AMOUNT", allow_zero=False)
    account = account_from(key)
    url, _, chain = realm_chain(broker)
    payload = None if units is None else {"amount": str(units)}
    with on_chain(chain, chain_rpc) as s:  # checked before the realm reserves anything
        voucher = signed(url, "POST", "/v1/wallet/refund", account, payload)
        tx = with_gas(url, chain, account, lambda: W.refund(s, account, voucher))
    synced = signed(url, "POST", "/v1/wallet/sync", account, {"tx": tx})
    refunded = int(voucher["amount"])
    if json_out:
        output.print_json({"broker": url, "tx_hash": tx, **money.fields("amount", refunded),
                           "wallet": wallet_json(synced["wallet"])})  # fmt: skip
        return
    print(f"refunded {money.fmt(refunded)} $9000 to {account.address}; tx {tx}")


@group.command("exit")
def exit_(
    finish: bool = typer.Option(False, "--finish", help="Take the rest of your deposit back (after the window)."),
    cancel: bool = typer.Option(False, "--cancel", help="Stay: cancel the exit you started."),
    status: bool = typer.Option(False, "--status", help="Only show where your exit stands."),
    broker: str | None = options.broker_option(),
    key: Path | None = typer.Option(None, "--key", help=KEY_HELP),
    chain_rpc: str | None = typer.Option(None, "--chain-rpc", help=RPC_HELP),
    json_out: bool = options.json_option(),
) -> None:
    """Leave the realm without its operator: start an exit on chain; after the realm's
    challenge window (its last chance to collect what you signed for) take the rest of
    your deposit back with --finish. Only your key is needed, never the realm's: when
    the realm is gone, pass --chain-rpc of a node of its chain (the chain and contracts
    it named the last time it answered you are kept).

    Example:

      mtor wallet exit --broker ws://realm.example:8765

      mtor wallet exit --finish --chain-rpc https://rpc.example
    """
    from ledger import wallet as W

    if finish + cancel + status > 1:
        output.fail("usage", "--finish, --cancel and --status go alone", "pick one")
    action = "finish" if finish else "cancel" if cancel else "status" if status else "start"
    account = account_from(key)
    url, realm, chain = realm_chain(broker, remembered=True)
    if realm.remembered and chain_rpc is None and chain.public_rpc is None:
        output.fail(
            "unreachable",
            f"the realm at {url} does not answer, and it relayed its chain {chain.chain_id} itself",
            f"leave without it: pass --chain-rpc with a JSON-RPC URL of chain {chain.chain_id}",
        )
    acts: dict[str, Callable[[Any, Any], dict[str, Any]]] = {
        "start": W.start_exit, "finish": W.finish_exit, "cancel": W.cancel_exit,
    }  # fmt: skip
    with on_chain(chain, chain_rpc) as s:
        if action == "status":
            res = guarded(lambda: W.exit_status(s, account.address))
        else:
            res = with_gas(url, chain, account, lambda: acts[action](s, account))
    if "tx_hash" in res and not realm.remembered:
        try_sync(url, account, res["tx_hash"])
    if json_out:
        amounts = {
            k: v
            for name in ("deposit", "spent", "amount")
            if name in res
            for k, v in money.fields(name, res[name]).items()
        }
        output.print_json({"broker": url, **res, **amounts, "action": action})
        return
    if action == "finish":
        print(f"exit finished: {money.fmt(res['amount'])} $9000 back in {account.address}; tx {res['tx_hash']}")
    elif res["exit"] == "waiting":
        print(
            f"exit of {account.address} started: {money.fmt(res['deposit'])} $9000 deposited; "
            f"finish with `mtor wallet exit --finish` in {res['seconds_left']} s"
            + (f" (tx {res['tx_hash']})" if "tx_hash" in res else "")
        )
    elif res["exit"] == "ready":
        print(f"the window has passed: `mtor wallet exit --finish` takes {money.fmt(res['deposit'])} $9000 back")
    else:
        print(f"no exit running for {account.address}; {money.fmt(res['deposit'])} $9000 deposited")


# --- shared by the money commands (also `mtor worker earnings`) ------------------------------


def realm_chain(broker: str | None, *, remembered: bool = False) -> tuple[str, Realm, RealmChain]:
    """The realm to act on and the chain it settles on (a free realm is an error)."""
    from mtor_cli.client import RealmError
    from mtor_cli.realmlink import discover

    url = options.resolve_broker(broker)
    try:
        realm = discover(url, remembered=remembered)
        return url, realm, realm.require_chain()
    except RealmError as exc:
        _fail(exc)


@contextmanager
def on_chain(chain: RealmChain, rpc: str | None) -> Iterator[ChainSession]:
    """The realm's chain and contracts through ``rpc`` (default: the realm's own), checked;
    a refusal (another chain, no contracts, unreachable) is the one error line."""
    from mtor_cli.client import RealmError, check_url
    from mtor_cli.realmlink import session

    try:
        if rpc is not None:
            check_url(rpc)
            if not rpc.startswith(("http://", "https://")):
                raise RealmError(
                    "usage", f"--chain-rpc {rpc!r} is not an http(s) JSON-RPC URL", "e.g. https://rpc.example"
                )
        with session(chain, rpc) as s:
            yield s
    except RealmError as exc:
        _fail(exc)


def signed(url: str, method: str, path: str, account: Any, payload: dict[str, Any] | None = None) -> Any:
    """A signed request to the realm, as ``account``; one error line on failure."""
    from mtor_cli.client import RealmError
    from mtor_cli.signed import call

    try:
        return call(url, method, path, payload, account, timeout=120)
    except RealmError as exc:
        _fail(exc)


def try_sync(url: str, account: Any, tx: str) -> None:
    """Ask the realm to book ``tx`` now (it would at its next look anyway)."""
    from mtor_cli.client import RealmError
    from mtor_cli.signed import call

    try:
        call(url, "POST", "/v1/wallet/sync", {"tx": tx}, account, timeout=120)
    except RealmError as exc:
        output.note(f"the realm has not booked it yet ({exc.code}); it does at its next look at the chain")


def guarded(act: Callable[[], T]) -> T:
    """``act()``; a LedgerError becomes the one error line."""
    from ledger.errors import LedgerError

    try:
        return act()
    except LedgerError as exc:
        _fail(exc)


def with_gas(url: str, chain: RealmChain, account: Any, act: Callable[[], T]) -> T:
    """``act()``, the account's own transactions on the realm's chain. On a dev chain the
    realm pays the gas: asked once when the account has none, then ``act()`` again (it
    checks what is done already, so nothing is sent twice)."""
    from ledger.errors import LedgerError

    try:
        return act()
    except LedgerError as exc:
        if exc.code != "no_gas" or not chain.dev:
            _fail(exc)
    signed(url, "POST", "/v1/chain/gas", account)
    return guarded(act)


def _fail(exc: Any) -> NoReturn:
    output.fail(exc.code, exc.message, exc.hint)
