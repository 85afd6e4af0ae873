"""Recent intents: newest at the bottom, followed like a log tail."""

from __future__ import annotations

from rich.text import Text

from .. import format as fmt
from ..state import IntentRow, RealmState
from .table import Cell, RowTable

COLUMNS = (
    ("intent", "intent", 7),
    ("status", "status", 9),
    ("time", "time", 6),
    ("cost", "cost", 6),
    ("worker", "worker", 10),
    ("guid", "guid", 8),
)

STATUS_STYLES = {
    "done": "green",
    "failed": "bold red",
    "cancelled": "dim",
    "running": "yellow",
    "requeued": "yellow",
    "queued": "cyan",
}


def intent_cells(row: IntentRow) -> tuple[Cell, ...]:
    return (
        row.intent or fmt.DASH,
        Text(row.status or fmt.DASH, style=STATUS_STYLES.get(row.status, "")),
        fmt.seconds(row.elapsed_s),
        fmt.tokens(row.cost),
        row.worker or fmt.DASH,
        row.guid[:8],
    )


class IntentsPane(RowTable):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(COLUMNS, **kwargs)

    def show(self, state: RealmState) -> None:
        changed, evicted = state.take_intent_changes()
        following = not self.has_focus or self.cursor_row >= self.row_count - 1
        self.remove_rows(evicted)
        for guid, row in state.intents.items():  # oldest first, so new rows land in order
            if guid in changed:
                self.put(guid, intent_cells(row))
        self.settle()
        if following:
            self.follow_end()
