"""Spending authorisations: the hand-built EIP-712 hash is the contract's and eth_account's,
signatures verify only for their payer, realm and total."""

from __future__ import annotations

from typing import Any

from ledger import Ledger
from ledger import authorisation as auth
from tests.ledger.conftest import new_account


def test_the_digest_is_the_contracts_and_a_standard_eip712_one(led: Ledger) -> None:
    from eth_account.messages import encode_typed_data

    led.deploy()
    terms = led.terms()
    assert terms is not None
    payer = new_account()
    with led.session() as s:
        assert s.ledger.functions.spendDigest(payer.address, 12345).call() == terms.digest(payer.address, 12345)
        assert s.ledger.functions.domainSeparator().call() == terms.domain_separator
    message = encode_typed_data(
        full_message={
            "types": {
                "EIP712Domain": [
                    {"name": "name", "type": "string"},
                    {"name": "version", "type": "string"},
                    {"name": "chainId", "type": "uint256"},
                    {"name": "verifyingContract", "type": "address"},
                ],
                "Spend": [{"name": "payer", "type": "address"}, {"name": "total", "type": "uint256"}],
            },
            "primaryType": "Spend",
            "domain": {
                "name": "MTOR RealmLedger",
                "version": "2",
                "chainId": terms.chain_id,
                "verifyingContract": terms.contract,
            },
            "message": {"payer": payer.address, "total": 12345},
        }
    )
    standard = payer.sign_message(message).signature.hex().removeprefix("0x")
    assert auth.sign(payer.key, terms, payer.address, 12345) == "0x" + standard


def test_a_signature_verifies_only_for_its_payer_realm_and_total() -> None:
    terms = auth.Terms(31337, "0x" + "5f" * 20)
    payer: Any = new_account()
    signature = auth.sign(payer.key, terms, payer.address, 10**20)
    assert auth.verify(terms, payer.address, 10**20, signature)
    assert not auth.verify(terms, payer.address, 10**20 + 1, signature)
    assert not auth.verify(terms, new_account().address, 10**20, signature)
    assert not auth.verify(auth.Terms(31337, "0x" + "60" * 20), payer.address, 10**20, signature)
    assert not auth.verify(auth.Terms(1, terms.contract), payer.address, 10**20, signature)
    for garbage in ("", "0x", "0xzz", "0x" + "00" * 65, signature[:-2] + "1d"):
        assert not auth.verify(terms, payer.address, 10**20, garbage)
    assert not auth.verify(terms, payer.address, -1, signature)
    r, vs = auth.compact(signature)
    assert len(r) == len(vs) == 32
