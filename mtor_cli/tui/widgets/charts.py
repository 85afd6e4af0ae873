"""Throughput and latency over the last three minutes, as sparklines."""

from __future__ import annotations

from collections.abc import Sequence

from textual.app import ComposeResult
from textual.containers import Vertical
from textual.widgets import Label, Sparkline

from .. import format as fmt
from ..state import RealmState


def _mean(values: Sequence[float]) -> float:
    return sum(values) / len(values)


class ChartsPane(Vertical):
    def compose(self) -> ComposeResult:
        yield Label("", id="totals")
        yield Label("throughput —", id="throughput-label")
        yield Sparkline([], summary_function=_mean, id="throughput")
        yield Label("latency —", id="latency-label")
        yield Sparkline([], summary_function=_mean, id="latency")

    def on_mount(self) -> None:
        # Held by reference: a repaint may still run while the app tears its screen down.
        self._labels = {name: self.query_one(f"#{name}", Label) for name in ("totals", "throughput-label", "latency-label")}
        self._throughput = self.query_one("#throughput", Sparkline)
        self._latency = self.query_one("#latency", Sparkline)
        self._shown: dict[str, str] = {}
        self._second: int | None = None

    def _label(self, name: str, text: str) -> None:
        if self._shown.get(name) != text:
            self._shown[name] = text
            self._labels[name].update(text, layout=False)  # one line each, always

    def show(self, state: RealmState) -> None:
        # The charts have one-second resolution: redraw them once a second at most
        # (the app's 1 s tick brings the rest of a busy second's pushes in).
        now = int(state.clock())
        if now == self._second:
            return
        self._second = now
        t = state.totals
        # Short enough for the 28 columns the pane has in an 80-column terminal.
        self._label(
            "totals",
            f"slots {t.get('slots_busy', 0)}/{t.get('slots_total', 0)} · queue {t.get('queued', 0)}"
            f" · fail {t.get('failed', 0)}",
        )
        self._label("throughput-label", f"throughput {fmt.rate(state.throughput.recent(now))} · 3 min")
        self._label("latency-label", f"latency {fmt.millis(state.latency.recent(now))} · 3 min")
        self._throughput.data = state.throughput.values(now)
        self._latency.data = state.latency.values(now)
