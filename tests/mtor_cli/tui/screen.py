"""Read a running Textual app's screen as text, the way a person would see it."""

from __future__ import annotations

import asyncio
import io
import time
from collections.abc import Callable

from rich.console import Console
from textual.app import App
from textual.pilot import Pilot


def screen_text(app: App[object]) -> str:
    width, height = app.size
    console = Console(width=width, height=height, file=io.StringIO(), record=True, force_terminal=True)
    console.print(app.screen._compositor.render_update(full=True, screen_stack=app._background_screens))
    return console.export_text()


async def wait_for_screen(
    pilot: Pilot[object], seen: Callable[[str], bool], what: str, timeout: float = 20.0
) -> str:
    """Let the app run until ``seen(screen text)``; AssertionError naming ``what`` after ``timeout``."""
    deadline = time.monotonic() + timeout
    while True:
        text = screen_text(pilot.app)
        if seen(text):
            return text
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {timeout:g}s waiting for {what}; the screen shows:\n{text}")
        await pilot.pause(0.05)
        await asyncio.sleep(0)
