"""Settling with a peer realm on chain: what `mtor federation fund` and `settle` do.

As the **payee**, this realm claims on the peer's RealmLedger with the peer's
latest signed acknowledgement (``RealmSpend(peer, this realm, total)``); the
contract pays the difference to what it paid before, so settling again is
harmless. As the **payer**, it reads from its own RealmLedger what the peer
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
    return out
