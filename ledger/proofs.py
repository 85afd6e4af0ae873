"""Proofs of a worker's cumulative earnings under the last settled root.

Built from the epoch's published earnings file (``<ledger>/epochs/N.earnings.json``)
and kept for that epoch, so the realm answers many workers' requests with one
tree. Reads files only: the broker calls it in a worker thread.
"""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

from ledger import merkle
from ledger.errors import LedgerError


class EarningsProofs:
    def __init__(self, folder: Path) -> None:
        self.folder = folder
        # (epoch, accounts in leaf order, earnings, tree levels, index by lower-case address)
        self._tree: tuple[int, list[str], dict[str, int], list[list[bytes]], dict[str, int]] | None = None

    def proof(self, epoch: int, root: bytes, address: str, earned: dict[str, int] | None = None) -> dict[str, Any]:
        """``address``'s leaf and proof in epoch ``epoch``'s earnings tree, whose root must be
        ``root`` (``earned`` replaces the published file, when the caller has it)."""
        tree = self._tree
        if tree is None or tree[0] != epoch:
            if earned is None:
                data = json.loads((self.folder / f"{epoch}.earnings.json").read_text())
                earned = {a: int(v) for a, v in data["earnings"].items()}
            accounts, levels = merkle.earnings_tree(earned)
            tree = self._tree = (epoch, accounts, earned, levels, {a.lower(): i for i, a in enumerate(accounts)})
        _, accounts, earned, levels, index = tree
        built = levels[-1][0] if levels[0] else merkle.ZERO_ROOT
        if built != root:
            raise LedgerError(
                "bad_earnings_file",
                f"the published earnings of epoch {epoch} do not hash to its root",
                "run `mtor ledger audit`",
            )
        i = index.get(address.lower())
        out = {"address": address, "epoch": epoch, "root": "0x" + root.hex(), "cumulative": 0, "proof": []}
        if i is not None:
            out["cumulative"] = earned[accounts[i]]
            out["proof"] = ["0x" + p.hex() for p in merkle.proof_in(levels, i)]
        return out


def last_settled(journal_path: Path) -> tuple[int, bytes] | None:
    """The last settled epoch and its earnings root, read on a connection of its own
    (safe from any thread; the journal's own connection belongs to the event loop)."""
    conn = sqlite3.connect(f"file:{journal_path}?mode=ro", uri=True, timeout=5)
    try:
        row = conn.execute(
            "SELECT number, earnings_root FROM epochs WHERE state = 'settled' ORDER BY number DESC LIMIT 1"
        ).fetchone()
    finally:
        conn.close()
    return None if row is None else (int(row[0]), bytes.fromhex(row[1]))
