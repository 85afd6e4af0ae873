"""Queue depth per intent, with a bar scaled to the deepest queue."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.widgets import Static

from ..state import RealmState

BAR_WIDTH = 12


def queue_table(depths: dict[str, int]) -> Table | Text:
    if not depths:
        return Text("no queued intents", style="dim")
    table = Table.grid(padding=(0, 1))
    table.add_column(no_wrap=True)
    table.add_column(justify="right", no_wrap=True)
    table.add_column(no_wrap=True)
    deepest = max(max(depths.values()), 1)
    for intent, depth in sorted(depths.items()):
        filled = round(BAR_WIDTH * depth / deepest)
        table.add_row(intent, str(depth), Text("█" * filled, style="cyan"))
    return table


class QueuePane(Static):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._shown: dict[str, int] | None = None

    def show(self, state: RealmState) -> None:
        if state.queue != self._shown:
            # The pane's height follows the number of queues: relayout only when that changes.
            relayout = self._shown is None or len(state.queue) != len(self._shown)
            self._shown = dict(state.queue)
            self.update(queue_table(state.queue), layout=relayout)
