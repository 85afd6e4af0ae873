"""The Merkle trees settlement commits to: receipts of paid queries, cumulative earnings.

Both use OpenZeppelin's standard leaf, the double keccak of an ABI-encoded
tuple, and sorted-pair internal nodes, so ``MerkleProof.verify`` in
RealmLedger checks our proofs; an odd node at the end of a level is carried
up unchanged.

- receipt: ``abi.encode(keccak(guid), payer, worker, amount, fee, time)``:
  who paid whom how much for which query, the realm's fee included;
- earnings: ``abi.encode(account, cumulative)``: everything a worker earned
  up to an epoch, which it claims the unclaimed part of.

The tuples are static, so they are encoded here as packed 32-byte words
rather than through eth_abi (several times faster for 100k receipts).
"""

from __future__ import annotations

from collections.abc import Sequence

from ledger.keccak import keccak

ZERO_ROOT = b"\x00" * 32


def _word(value: int) -> bytes:
    return value.to_bytes(32, "big")


def _address(address: str) -> bytes:
    return b"\x00" * 12 + bytes.fromhex(address[2:])


def receipt_leaf(guid: str, payer: str, worker: str, amount: int, fee: int, time: int) -> bytes:
    inner = keccak(
        keccak(guid.encode()) + _address(payer) + _address(worker) + _word(amount) + _word(fee) + _word(time)
    )
    return keccak(inner)


def earnings_leaf(account: str, cumulative: int) -> bytes:
    return keccak(keccak(_address(account) + _word(cumulative)))


def _pair(a: bytes, b: bytes) -> bytes:
    return keccak(a + b) if a < b else keccak(b + a)


def levels(leaves: Sequence[bytes]) -> list[list[bytes]]:
    """Every level of the tree, leaves first (keep it to prove many leaves of one tree)."""
    out = [list(leaves)]
    while len(out[-1]) > 1:
        cur = out[-1]
        out.append([_pair(cur[i], cur[i + 1]) if i + 1 < len(cur) else cur[i] for i in range(0, len(cur), 2)])
    return out


def root(leaves: Sequence[bytes]) -> bytes:
    if not leaves:
        return ZERO_ROOT
    return levels(leaves)[-1][0]


def proof_in(tree: list[list[bytes]], index: int) -> list[bytes]:
    out: list[bytes] = []
    for level in tree[:-1]:
        sibling = index ^ 1
        if sibling < len(level):
            out.append(level[sibling])
        index >>= 1
    return out


def proof(leaves: Sequence[bytes], index: int) -> list[bytes]:
    return proof_in(levels(leaves), index)


def verify(leaf: bytes, path: Sequence[bytes], expected_root: bytes) -> bool:
    node = leaf
    for sibling in path:
        node = _pair(node, sibling)
    return node == expected_root


def earnings_tree(earnings: dict[str, int]) -> tuple[list[str], list[list[bytes]]]:
    """The accounts in leaf order (sorted, zero earnings left out) and the tree's levels."""
    accounts = sorted((a for a, v in earnings.items() if v > 0), key=str.lower)
    return accounts, levels([earnings_leaf(a, earnings[a]) for a in accounts])
