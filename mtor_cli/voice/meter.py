"""The live level meter and transcript line drawn on stderr while listening."""

from __future__ import annotations

import sys
from typing import Any

from .vad import SILENCE_DB

_FLOOR_DB = -60.0
_WIDTH = 30


def meter_bar(db: float, voiced: bool) -> str:
    """``[#########.....]  -23 dB speech`` for a level in dBFS."""
    filled = round(_WIDTH * min(1.0, max(0.0, (db - _FLOOR_DB) / -_FLOOR_DB)))
    shown = "  -inf" if db <= SILENCE_DB else f"{db:6.1f}"
    return f"[{'#' * filled}{'.' * (_WIDTH - filled)}] {shown} dB {'speech' if voiced else 'quiet'}"


class LevelMeter:
    """A one-line live display; draws nothing unless stderr is a terminal.

    Stop it before printing other lines and start it again after, so the
    meter always stays the last line.
    """

    def __init__(self, label: str = "listening", *, enabled: bool = True) -> None:
        self.label = label
        self.enabled = enabled and sys.stderr.isatty()
        self._live: Any = None

    def start(self) -> None:
        if self.enabled and self._live is None:
            from rich.live import Live

            from mtor_cli.output import err_console

            self._live = Live("", console=err_console(), refresh_per_second=15, transient=True)
            self._live.start()

    def stop(self) -> None:
        if self._live is not None:
            self._live.stop()
            self._live = None

    def level(self, db: float, voiced: bool) -> None:
        if self._live is not None:
            self._live.update(f"{self.label} {meter_bar(db, voiced)}")
