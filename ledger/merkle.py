"""Receipts of paid queries and the Merkle tree settlement commits to.

A receipt leaf is OpenZeppelin's double-hashed standard leaf of
``abi.encode(keccak(guid), payer, worker, amount, time)``; internal nodes hash
the sorted pair, so ``MerkleProof.verify`` in RealmLedger checks our proofs.
An odd node at the end of a level is carried up unchanged.
"""

from __future__ import annotations

from collections.abc import Sequence

ZERO_ROOT = b"\x00" * 32


def receipt_leaf(guid: str, payer: str, worker: str, amount: int, time: int) -> bytes:
    from eth_abi import encode
    from eth_utils import keccak

    inner = keccak(
        encode(
            ["bytes32", "address", "address", "uint256", "uint256"],
            [keccak(text=guid), payer, worker, amount, time],
        )
    )
    return keccak(inner)


def _pair(a: bytes, b: bytes) -> bytes:
    from eth_utils import keccak

    return keccak(a + b) if a < b else keccak(b + a)


def _levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    levels = [list(leaves)]
    while len(levels[-1]) > 1:
        cur = levels[-1]
        levels.append(
            [_pair(cur[i], cur[i + 1]) if i + 1 < len(cur) else cur[i] for i in range(0, len(cur), 2)]
        )
    return levels


def root(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return ZERO_ROOT
    return _levels(leaves)[-1][0]


def proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    out: list[bytes] = []
    for level in _levels(leaves)[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            out.append(level[sibling])
        index >>= 1
    return out


def verify(leaf: bytes, path: Sequence[bytes], expected_root: bytes) -> bool:
    node = leaf
    for sibling in path:
        node = _pair(node, sibling)
    return node == expected_root
