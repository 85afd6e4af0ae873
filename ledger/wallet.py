"""What a user or a worker does on chain by itself: no realm journal, no realm key.

Deposits, the faucet, redeeming a refund voucher, leaving (``startExit`` /
``finishExit``) and claiming earnings with a proof need only the chain, the two
contracts and the person's own key, which is the point: they work when the
realm is far away, or gone. The realm's own ledger calls them for its tests and
tools, `mtor` for a user of any realm (through ``mtor_cli.realmlink``). Each
function takes an open session (``chain``, ``token``, ``ledger``).
"""

from __future__ import annotations

from typing import Any

from ledger.errors import ChainError, LedgerError
from ledger.units import format_amount


def tokens(session: Any, address: str) -> int:
    return int(session.chain._call(lambda: session.token.functions.balanceOf(address).call()))


def faucet(session: Any, account: Any) -> int:
    """Mint the token's faucet amount to ``account`` (deployed on dev chains only; the
    contract itself refuses where the amount is 0); returns its token balance."""
    amount = int(session.chain._call(lambda: session.token.functions.faucetAmount().call()))
    if amount == 0:
        raise ChainError(
            "no_faucet",
            f"chain {session.chain.chain_id} has no faucet",
            "the faucet exists on dev chains only; get $9000 from someone who has it",
        )
    session.chain.transact(account, session.token.functions.faucet(), what="the faucet")
    return tokens(session, account.address)


def deposit(session: Any, account: Any, amount: int) -> str:
    """Escrow ``amount`` of the account's tokens (approve + deposit); returns the tx hash."""
    have = tokens(session, account.address)
    if have < amount:
        raise LedgerError(
            "insufficient_tokens",
            f"{account.address} holds {format_amount(have)} $9000 in its wallet, less than {format_amount(amount)}",
            "get tokens first (`mtor wallet faucet` on a dev chain)",
        )
    spender = session.ledger.address
    allowance = int(session.chain._call(lambda: session.token.functions.allowance(account.address, spender).call()))
    if allowance < amount:
        session.chain.transact(account, session.token.functions.approve(spender, amount), what="approve")
    rc = session.chain.transact(account, session.ledger.functions.deposit(amount), what="the deposit")
    return str(rc["transactionHash"].to_0x_hex())


def refund(session: Any, account: Any, voucher: dict[str, Any]) -> str:
    """Redeem a refund voucher the realm signed (``amount``, ``deadline``, ``signature``);
    returns the tx hash."""
    signature = bytes.fromhex(str(voucher["signature"]).removeprefix("0x"))
    fn = session.ledger.functions.refund(int(voucher["amount"]), int(voucher["deadline"]), signature)
    rc = session.chain.transact(account, fn, what="the refund")
    return str(rc["transactionHash"].to_0x_hex())


def exit_status(session: Any, address: str) -> dict[str, Any]:
    """The address's deposit on chain and its exit: none, waiting (``finish_after``) or ready."""
    call = session.chain._call
    deposit_, spent = call(lambda: session.ledger.functions.accountOf(address).call())
    finish_after = int(call(lambda: session.ledger.functions.exitAt(address).call()))
    now = session.chain.timestamp()
    state = "none" if finish_after == 0 else ("ready" if now >= finish_after else "waiting")
    return {
        "address": address,
        "deposit": int(deposit_),
        "spent": int(spent),
        "exit": state,
        "finish_after": finish_after or None,
        "seconds_left": max(0, finish_after - now) if finish_after else None,
        "window_s": int(call(lambda: session.ledger.functions.exitWindow().call())),
    }


def start_exit(session: Any, account: Any) -> dict[str, Any]:
    rc = session.chain.transact(account, session.ledger.functions.startExit(), what="starting the exit")
    return {**exit_status(session, account.address), "tx_hash": rc["transactionHash"].to_0x_hex()}


def cancel_exit(session: Any, account: Any) -> dict[str, Any]:
    rc = session.chain.transact(account, session.ledger.functions.cancelExit(), what="cancelling the exit")
    return {**exit_status(session, account.address), "tx_hash": rc["transactionHash"].to_0x_hex()}


def finish_exit(session: Any, account: Any) -> dict[str, Any]:
    """Take the whole remaining deposit back once the window has passed."""
    from web3.logs import DISCARD

    rc = session.chain.transact(account, session.ledger.functions.finishExit(), what="finishing the exit")
    events = session.ledger.events.Exited().process_receipt(rc, errors=DISCARD)
    amount = int(events[0]["args"]["amount"]) if events else 0
    return {**exit_status(session, account.address), "tx_hash": rc["transactionHash"].to_0x_hex(), "amount": amount}


def claimed(session: Any, address: str) -> int:
    return int(session.chain._call(lambda: session.ledger.functions.claimed(address).call()))


def earnings_root(session: Any) -> bytes:
    return bytes(session.chain._call(lambda: session.ledger.functions.earningsRoot().call()))


def claim(session: Any, account: Any, address: str, cumulative: int, proof: list[bytes]) -> dict[str, Any]:
    """Claim ``address``'s earnings up to ``cumulative`` (its leaf in the current root);
    ``account`` pays the gas, the tokens go to ``address``."""
    from web3.logs import DISCARD

    done = claimed(session, address)
    if cumulative <= done:
        raise LedgerError(
            "nothing_to_claim",
            f"{address} has claimed {format_amount(done)} $9000 of the {format_amount(cumulative)} settled for it",
            "earnings become claimable once the realm settles them; see `mtor worker earnings`",
        )
    fn = session.ledger.functions.claim(address, cumulative, proof)
    rc = session.chain.transact(account, fn, what="the claim")
    events = session.ledger.events.Claimed().process_receipt(rc, errors=DISCARD)
    amount = int(events[0]["args"]["amount"]) if events else cumulative - done
    return {
        "address": address,
        "amount": amount,
        "cumulative": cumulative,
        "tx_hash": rc["transactionHash"].to_0x_hex(),
        "gas": int(rc["gasUsed"]),
    }
