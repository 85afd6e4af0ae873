"""The signed cumulative totals realms settle with on chain.

An origin realm's ``ack`` carries, besides its total, its EIP-712 signature of
``RealmSpend(address payer, address payee, uint256 total)`` under the domain of
the RealmLedger that holds its realm escrow (``"MTOR RealmLedger"``, version
``"2"``, its chain id and address). The payee realm claims with the latest
one, whenever it chooses (``RealmLedger.claimFromRealm``): the contract pays
the difference to what it paid before, so an old or repeated total pays
nothing twice. The struct is fixed, so it is hashed here by hand, as the
ledger hashes ``Spend`` (ledger/authorisation.py), with no import of the ledger.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import msgspec

from broker.federation.keys import RealmKey, address_of, keccak, recover
from broker.protocol import Ack

_DOMAIN_TYPEHASH = keccak(b"EIP712Domain(string name,string version,uint256 chainId,address verifyingContract)")
_REALM_SPEND_TYPEHASH = keccak(b"RealmSpend(address payer,address payee,uint256 total)")
_NAME_HASH = keccak(b"MTOR RealmLedger")
_VERSION_HASH = keccak(b"2")


def _address_word(address: str) -> bytes:
    raw = bytes.fromhex(address.removeprefix("0x"))
    if len(raw) != 20:
        raise ValueError(f"not an address: {address!r}")
    return b"\x00" * 12 + raw


@dataclass(frozen=True)
class Escrow:
    """Where a payer realm's escrow is: a chain and its RealmLedger."""

    chain_id: int
    contract: str

    @classmethod
    def of(cls, terms: dict[str, Any] | None) -> Escrow | None:
        """From a Billing's ``terms`` (None: the realm has no deployed ledger)."""
        if not terms or not isinstance(terms.get("chain_id"), int) or not isinstance(terms.get("contract"), str):
            return None
        return cls(terms["chain_id"], terms["contract"])

    def digest(self, payer: str, payee: str, total: int) -> bytes:
        """RealmLedger.realmSpendDigest(payer, payee, total)."""
        if total < 0 or total >= 1 << 256:
            raise ValueError(f"total out of range: {total}")
        domain = keccak(
            _DOMAIN_TYPEHASH + _NAME_HASH + _VERSION_HASH + self.chain_id.to_bytes(32, "big")
            + _address_word(self.contract)
        )
        struct = keccak(_REALM_SPEND_TYPEHASH + _address_word(payer) + _address_word(payee) + total.to_bytes(32, "big"))
        return keccak(b"\x19\x01" + domain + struct)


def sign_ack(ack: Ack, key: RealmKey, payee: str, escrow: Escrow | None) -> Ack:
    """``ack`` with this realm's on-chain word for its total (unchanged without an escrow)."""
    if escrow is None:
        return ack
    rsv = key.sign(escrow.digest(key.address, payee, ack.total))
    signature = "0x" + (rsv[:64] + bytes([rsv[64] + 27])).hex()
    return msgspec.structs.replace(ack, chain_id=escrow.chain_id, contract=escrow.contract, signature=signature)


def ack_signed_by(ack: Ack, payer: str, payee: str) -> bool:
    """Whether ``ack``'s signature is ``payer``'s RealmSpend of its total to ``payee``."""
    if ack.signature is None or ack.chain_id is None or ack.contract is None:
        return False
    try:
        raw = bytes.fromhex(ack.signature.removeprefix("0x"))
        if len(raw) != 65 or raw[64] not in (27, 28):
            return False
        digest = Escrow(ack.chain_id, ack.contract).digest(payer, payee, ack.total)
    except ValueError:
        return False
    public = recover(digest, raw[:64] + bytes([raw[64] - 27]))
    return public is not None and address_of(public).lower() == payer.lower()
