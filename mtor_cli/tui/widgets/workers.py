"""The workers pane: one row per connected worker, repainted only where it changed."""

from __future__ import annotations

from rich.text import Text

from .. import format as fmt
from ..state import RealmState, WorkerRow
from .table import Cell, RowTable

# Most telling first, so that an 80-column terminal still shows state and load.
COLUMNS = (
    ("id", "worker", 10),
    ("state", "state", 11),
    ("load", "load", 4),
    ("health", "health", 6),
    ("ping", "ping", 6),
    ("earnings", "earned", 7),
    ("intents", "intents", 12),
    ("models", "models", 16),
    ("address", "address", 13),
)

STATE_STYLES = {
    "quarantined": "bold red",
    "probing": "yellow",
    "busy": "yellow",
    "working": "cyan",
    "ready": "green",
}


def worker_cells(row: WorkerRow) -> tuple[Cell, ...]:
    load = f"{row.load}/{row.slots}" if row.slots else str(row.load)
    return (
        row.name or row.id,
        Text(row.state or fmt.DASH, style=STATE_STYLES.get(row.state, "")),
        load,
        fmt.percent(row.health),
        fmt.millis(row.ping_ms),
        fmt.tokens(row.earnings),
        ",".join(row.intents) or fmt.DASH,
        ",".join(row.models) or fmt.DASH,
        fmt.short_address(row.address),
    )


class WorkersPane(RowTable):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(COLUMNS, **kwargs)
        self._shown: dict[str, WorkerRow] = {}

    def show(self, state: RealmState) -> None:
        workers = state.take_workers()
        self.remove_rows([key for key in self.row_keys if key not in workers])
        for worker_id, row in workers.items():
            # Unchanged workers keep their WorkerRow object: nothing to format.
            if self._shown.get(worker_id) is not row:
                self.put(worker_id, worker_cells(row))
        self._shown = dict(workers)
        self.settle()
        self.border_subtitle = f"{self.row_count} online"
