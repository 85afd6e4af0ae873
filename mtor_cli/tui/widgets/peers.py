"""Peer realms (the `federation` topic): each one's link, health, traffic and what is owed.

Hidden while the realm federates with nobody.
"""

from __future__ import annotations

from typing import Any

from rich.text import Text
from textual.widgets import Static

from .. import format as fmt
from ..state import RealmState

LINK_STYLES = {"connected": "green", "connecting": "yellow", "refused": "bold red", "unreachable": "red"}
HEALTH_STYLES = {"quarantined": "bold red", "probing": "yellow"}


def _int(value: Any) -> int:
    try:
        return int(value)
    except (TypeError, ValueError):
        return 0


def peers_text(peers: list[dict[str, Any]]) -> Text:
    """Two lines a peer (the realm column is narrow): its name and state, then
    what went to it and what each side owes unsettled."""
    lines = []
    for peer in peers:
        link = peer.get("link") or {}
        health = str((link.get("health") or {}).get("state", ""))
        state = health if health in HEALTH_STYLES else str(link.get("state", "-"))
        traffic = link.get("traffic") or {}
        credit = peer.get("credit") or {}
        owe = _int((credit.get("we_owe") or {}).get("unsettled"))
        owed = _int((credit.get("owed_to_us") or {}).get("used"))
        lines.append(
            Text.assemble(
                (str(peer.get("name", "?")), "bold"), " ",
                (state, HEALTH_STYLES.get(health, LINK_STYLES.get(state, ""))),
                "\n  ", f"{_int(traffic.get('forwarded'))} fwd", ("  owe ", "dim"), fmt.tokens(owe),
                ("  owed ", "dim"), fmt.tokens(owed),
            )
        )
    return Text("\n").join(lines)


class PeersPane(Static):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._shown: list[dict[str, Any]] | None = None

    def show(self, state: RealmState) -> None:
        if state.peers == self._shown:
            return
        relayout = self._shown is None or len(state.peers) != len(self._shown)
        self._shown = list(state.peers)
        self.set_class(bool(state.peers), "-shown")
        self.update(peers_text(state.peers), layout=relayout)
