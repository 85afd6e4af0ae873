"""Realms paying each other on chain: a payer realm's escrow for its peers, and the payee's claim.

A realm that forwards intents to peers escrows $9000 on its own RealmLedger
(``fundRealm``, apart from any user's deposit: the realm's journal never books
it, and its audit leaves ``realmEscrowTotal`` out of the tokens it compares).
With each acknowledgement it signs ``RealmSpend(payer, payee, total)``, an
ever-increasing cumulative total, under that ledger's EIP-712 domain; the
payee claims the difference to what it was paid (``claimFromRealm``) when it
chooses, with the latest total, and the tokens go to the payee's realm key.
Each function takes an open :class:`~ledger.chain.Chain` and the RealmLedger's
address: a payee claims on its payer's ledger, which need not be its own.

The payee then brings what it claimed into its own RealmLedger as the payer's
payment (``creditFromRealm``, :func:`credit`): counted as collected there, it
backs the earnings of the payee's workers who served the payer's intents, and
the payee's journal books it to the payer's account. Both ledgers must use the
same token (realms that federate deploy on one $9000 token: ``[ledger] token``).
"""

from __future__ import annotations

from typing import Any

from ledger import authorisation as auth
from ledger.errors import ChainError, LedgerError
from ledger.units import format_amount


def _ledger(chain: Any, address: str) -> Any:
    return chain.contract("RealmLedger", address)


def escrow(chain: Any, ledger: str, realm: str) -> int:
    """What ``realm`` has escrowed for its peers on ``ledger``, now."""
    return int(chain._call(lambda: _ledger(chain, ledger).functions.realmEscrow(realm).call()))


def paid(chain: Any, ledger: str, payer: str, payee: str) -> int:
    """The cumulative amount ``ledger`` has paid ``payee`` from ``payer``'s escrow."""
    return int(chain._call(lambda: _ledger(chain, ledger).functions.realmPaid(payer, payee).call()))


def fund(session: Any, account: Any, amount: int) -> str:
    """Escrow ``amount`` of ``account``'s tokens for the realm ``account`` is (its realm key)
    on the session's RealmLedger (approve + fundRealm); returns the tx hash."""
    if amount <= 0:
        raise LedgerError("bad_amount", "the amount must be positive", "e.g. 5 for 5 $9000")
    chain, token, ledger = session.chain, session.token, session.ledger
    have = int(chain._call(lambda: token.functions.balanceOf(account.address).call()))
    if have < amount:
        raise LedgerError(
            "insufficient_tokens",
            f"the realm key {account.address} holds {format_amount(have)} $9000, less than {format_amount(amount)}",
            f"send $9000 to {account.address} first (on a dev chain `mtor federation fund` takes the faucet's)",
        )
    allowance = int(chain._call(lambda: token.functions.allowance(account.address, ledger.address).call()))
    if allowance < amount:
        chain.transact(account, token.functions.approve(ledger.address, amount), what="approve")
    rc = chain.transact(account, ledger.functions.fundRealm(account.address, amount), what="funding the realm escrow")
    return str(rc["transactionHash"].to_0x_hex())


def claim(chain: Any, ledger: str, sender: Any, payer: str, payee: str, total: int, signature: str) -> dict[str, Any]:
    """Claim what ``payer`` signed it owes ``payee`` (``total`` in all) on ``ledger``, sent by
    ``sender``: the tx, the amount paid now, the cumulative paid after, and the gas."""
    before = paid(chain, ledger, payer, payee)
    if total <= before:
        return {"tx": None, "amount": 0, "paid": before, "gas": 0}
    available = escrow(chain, ledger, payer)
    if available == 0:
        raise ChainError(
            "escrow_empty",
            f"realm {payer} has nothing escrowed for its peers on {ledger}; it owes {format_amount(total - before)} $9000",
            "ask its operator to run `mtor federation fund AMOUNT`; the signed total stays claimable",
        )
    r, vs = auth.compact(signature)
    fn = _ledger(chain, ledger).functions.claimFromRealm(payer, payee, total, r, vs)
    rc = chain.transact(sender, fn, what="the claim from the peer realm's escrow")
    after = paid(chain, ledger, payer, payee)
    return {
        "tx": rc["transactionHash"].to_0x_hex(),
        "amount": after - before,
        "paid": after,
        "gas": int(rc["gasUsed"]),
    }


def token_of(chain: Any, ledger: str) -> str:
    """The token ``ledger`` holds."""
    return str(chain._call(lambda: _ledger(chain, ledger).functions.token().call()))


def credited(chain: Any, ledger: str, payer: str, from_block: int) -> int:
    """What ``ledger`` was credited in all as peer realm ``payer``'s payments."""
    event = _ledger(chain, ledger).events.RealmCredited
    logs = chain._call(lambda: event.get_logs(from_block=from_block, argument_filters={"payer": payer}))
    return sum(int(lg["args"]["amount"]) for lg in logs)


def credit(session: Any, account: Any, payer: str, amount: int) -> str:
    """Credit ``amount`` of ``account``'s tokens (claimed from ``payer``'s escrow) to the
    session's RealmLedger as ``payer``'s payment (approve + creditFromRealm); the tx hash."""
    chain, token, ledger = session.chain, session.token, session.ledger
    allowance = int(chain._call(lambda: token.functions.allowance(account.address, ledger.address).call()))
    if allowance < amount:
        chain.transact(account, token.functions.approve(ledger.address, amount), what="approve")
    rc = chain.transact(account, ledger.functions.creditFromRealm(payer, amount), what="crediting a peer's payment")
    return str(rc["transactionHash"].to_0x_hex())
