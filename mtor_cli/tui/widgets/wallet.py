"""The user's balance and spending; "—" until the realm's ledger reports them."""

from __future__ import annotations

from rich.text import Text
from textual.widgets import Static

from .. import format as fmt
from ..state import RealmState


def wallet_text(state: RealmState) -> Text:
    return Text.assemble(
        ("balance ", "dim"),
        (fmt.tokens(state.balance), "bold"),
        ("  spent ", "dim"),
        fmt.tokens(state.spent),
        (" $9000", "dim"),
    )


class WalletPane(Static):
    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._shown = Text()

    def show(self, state: RealmState) -> None:
        text = wallet_text(state)
        if text != self._shown:
            self._shown = text
            self.update(text, layout=False)
