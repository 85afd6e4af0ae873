"""Settling with a peer realm on chain: what `mtor federation fund` and `settle` do.

As the **payee**, this realm claims on the peer's RealmLedger with the peer's
latest signed acknowledgement (``RealmSpend(peer, this realm, total)``); the
contract pays the difference to what it paid before, so settling again is
harmless. What it was paid it then credits to its own RealmLedger as the
peer's payment (``creditFromRealm``: it backs the earnings of the workers who
served the peer, and the journal books it to the peer's account); a crash
between the claim and the credit is mended by the next settle, which credits
what was paid and not credited yet. As the **payer**, it reads from its own RealmLedger what the peer
has claimed from this realm's escrow. Both are recorded in the federation
store, where a running broker takes them up within a second (the peer's
credit is freed). The chain is the one ``--chain-rpc`` names, else the
realm's ledger's.
"""

from __future__ import annotations

from typing import Any

from ledger import Ledger
from ledger import realms as R
from ledger.errors import ChainError


def _account(realm_key: Any) -> Any:
    from eth_account import Account

    return Account.from_key(realm_key.secret)


def fund(led: Ledger, realm_key: Any, amount: int) -> dict[str, Any]:
    """Escrow ``amount`` for this realm's peers on its own RealmLedger, from the realm key's
    tokens (a dev chain's faucet tops them up)."""
    from ledger import wallet as W

    account = _account(realm_key)
    with led.session() as s:
        if s.deployment.dev and W.tokens(s, account.address) < amount:
            W.faucet(s, account)
        tx = R.fund(s, account, amount)
        ledger = s.deployment.ledger
        left = R.escrow(s.chain, ledger, account.address)
    return {"realm": account.address, "ledger": ledger, "tx": tx, "funded": amount, "escrow": left}


def settle(led: Ledger, store: Any, record: Any, realm_key: Any) -> dict[str, Any]:
    """Claim what ``record`` (the peer) signed it owes us, and take up what it claimed from us."""
    from broker.federation.store import PAYEE, PAYER

    me, peer = realm_key.address, record.address
    out: dict[str, Any] = {"peer": record.name, "address": peer}
    chain = led.open_chain()
    chain_id = chain.chain_id
    try:
        ack = store.signed_ack(peer)
        if ack is None or ack.signature is None or ack.contract is None:
            out["as_payee"] = {
                "acknowledged": None if ack is None else ack.total,
                "skipped": "the peer has signed no on-chain total yet (no ack, or it has no ledger)",
            }
        else:
            if chain.chain_id != ack.chain_id:
                raise ChainError(
                    "wrong_chain",
                    f"{chain.name} is chain {chain.chain_id}; {record.name}'s escrow is on chain {ack.chain_id}",
                    f"pass --chain-rpc with a node of chain {ack.chain_id}",
                )
            claimed = R.claim(chain, ack.contract, _account(realm_key), peer, me, ack.total, ack.signature)
            if claimed["paid"] > store.settled(peer, PAYEE):
                store.add_settlement(peer, PAYEE, claimed["paid"], claimed["tx"] or "chain")
            out["as_payee"] = {"acknowledged": ack.total, "ledger": ack.contract, **claimed,
                               "escrow_left": R.escrow(chain, ack.contract, peer)}
        dep = led.deployment()
        if dep is None or dep.chain_id != chain.chain_id:
            out["as_payer"] = {"skipped": "this realm has no ledger on this chain: it owes nothing on chain"}
        else:
            paid = R.paid(chain, dep.ledger, me, peer)
            if paid > store.settled(peer, PAYER):
                store.add_settlement(peer, PAYER, paid, "chain")
            out["as_payer"] = {"ledger": dep.ledger, "paid": paid, "escrow_left": R.escrow(chain, dep.ledger, me)}
    finally:
        chain.close()
    payee = out["as_payee"]
    if "paid" in payee:
        payee["credited"] = _credit_own_ledger(led, realm_key, payee["ledger"], chain_id, peer, int(payee["paid"]))
    return out


def _credit_own_ledger(
    led: Ledger, realm_key: Any, payer_ledger: str, chain_id: int, peer: str, paid: int
) -> dict[str, Any]:
    """Bring what ``peer`` paid us (``paid`` in all, from its escrow) into our own RealmLedger."""
    from ledger import wallet as W

    dep = led.deployment()
    if dep is None:
        return {"skipped": "this realm has no ledger: the tokens stay with the realm key"}
    elsewhere = {"skipped": "this realm's ledger is on another chain or token: the tokens stay with the realm key"}
    if dep.chain_id != chain_id:
        return elsewhere
    with led.session() as s:
        if R.token_of(s.chain, payer_ledger) != dep.token:
            return elsewhere
        account = _account(realm_key)
        before = R.credited(s.chain, dep.ledger, peer, dep.block)
        amount = min(paid - before, W.tokens(s, account.address))
        tx = R.credit(s, account, peer, amount) if amount > 0 else None
        led.sync(s)
        return {"tx": tx, "amount": max(amount, 0), "total": before + max(amount, 0), "ledger": dep.ledger}
