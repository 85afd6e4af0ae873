"""The top line: which realm, whether the link is up, and what the realm holds."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from .. import format as fmt
from ..feed import ConnectionStatus
from ..state import RealmState

LINK_STYLES = {"online": "bold green", "connecting": "bold yellow", "offline": "bold red"}


def link_text(status: ConnectionStatus) -> Text:
    text = Text("● " + status.state, style=LINK_STYLES[status.state])
    if status.state == "offline" and status.retry_in is not None:
        text.append(f" · retry in {status.retry_in:.0f}s", style="red")
    if status.detail:
        text.append(f" · {status.detail}", style="dim")
    return text


class StatusBar(Static):
    def __init__(self, realm: str, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._realm = realm
        self._shown = Text()

    def show(self, state: RealmState) -> None:
        text = Text()
        text.append(" MTOR ", style="bold reverse")
        text.append(f" {self._realm}  ")
        text.append_text(link_text(state.connection))
        if state.me:
            text.append(f"  as {fmt.short_address(state.me)}", style="dim")
        if state.broadcast:
            text.append(f"  » {state.broadcast}", style="italic")
        if text != self._shown:
            self._shown = text
            self.update(text, layout=False)
