"""The help screen: every key binding, read from the app so it cannot drift."""

from __future__ import annotations

from rich.table import Table
from rich.text import Text
from textual.app import ComposeResult
from textual.binding import Binding
from textual.containers import VerticalScroll
from textual.screen import ModalScreen
from textual.widgets import Static


def bindings_table(bindings: list[tuple[str, str]]) -> Table:
    table = Table(box=None, padding=(0, 2), show_header=False)
    table.add_column(style="bold", no_wrap=True)
    table.add_column()
    for keys, description in bindings:
        table.add_row(keys, description)
    return table


class HelpScreen(ModalScreen[None]):
    BINDINGS = [Binding("escape,q,f1,question_mark", "dismiss", "Close help")]

    def __init__(self, bindings: list[tuple[str, str]]) -> None:
        super().__init__()
        self._rows = bindings

    def compose(self) -> ComposeResult:
        with VerticalScroll(id="help"):
            yield Static(Text("MTOR keys", style="bold"))
            yield Static(bindings_table(self._rows))
            yield Static(
                Text(
                    "Type in the prompt bar and press Enter: the realm picks the intent "
                    "(start with “imagine” for a picture). Ctrl+P opens the command palette. "
                    "Esc closes this screen.",
                    style="dim",
                )
            )
