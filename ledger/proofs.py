"""Proofs of a worker's cumulative earnings under the last settled root.

Built from the epoch's published earnings file (``<ledger>/epochs/N.earnings.json``)
and kept for that epoch, so the realm answers many workers' requests with one
tree. Reads files only: the realm's money desk calls it on its own thread.
"""

from __future__ import annotations

import json
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
