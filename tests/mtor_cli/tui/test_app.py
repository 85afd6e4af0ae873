"""Keyboard, help, palette, themes, cancel and coalescing, over a realm of known state."""

from __future__ import annotations

import re
from pathlib import Path

import pytest
from textual.command import CommandPalette
from textual.widgets import Input

from broker.protocol import Stats
from mtor_cli.tui.app import MtorApp
from mtor_cli.tui.widgets import HelpScreen, WorkersPane

from .fixed_feed import FixedClock, FixedFeed, hello_answer, known_realm, workers_snapshot
from .screen import screen_text, wait_for_screen

DOCS = Path(__file__).resolve().parents[3] / "docs" / "tui.md"


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("MTOR_HOME", str(tmp_path))


def known_app() -> tuple[MtorApp, FixedFeed]:
    clock = FixedClock()
    feed = FixedFeed(known_realm(clock), {"hello": hello_answer()})
    return MtorApp(feed, clock=clock), feed


async def test_keys_move_between_panes():
    app, feed = known_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await feed.drained.wait()
        assert isinstance(app.focused, Input)
        await pilot.press("escape")
        assert app.focused is app.query_one("#workers")
        await pilot.press("i")
        assert app.focused is app.query_one("#intents")
        await pilot.press("r")
        assert app.focused is app.query_one("#answer-body")
        await pilot.press("w")
        assert app.focused is app.query_one("#workers")
        # Table repaints are coalesced, so the pushed workers show a beat after the feed drains.
        workers = app.query_one("#workers", WorkersPane)
        for _ in range(100):
            if workers.row_count == len(workers_snapshot()):
                break
            await pilot.pause(0.05)
        await pilot.press("down")
        assert app.query_one("#workers", WorkersPane).cursor_row == 1
        await pilot.press("slash")
        assert isinstance(app.focused, Input)
        await pilot.press("w")  # typed, not a binding, while in the prompt
        assert app.query_one(Input).value == "w"


async def test_help_lists_the_keys_and_closes():
    app, _feed = known_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("f1")
        assert isinstance(app.screen, HelpScreen)
        text = screen_text(app)
        for expected in ("Speak", "Cancel", "Theme", "Command palette", "Quit"):
            assert expected in text
        await pilot.press("w")  # pane keys do nothing while help is on top
        assert isinstance(app.screen, HelpScreen)
        await pilot.press("escape")
        assert not isinstance(app.screen, HelpScreen)


def test_docs_list_every_key_binding():
    docs = DOCS.read_text()
    app, _ = known_app()
    for binding in app.BINDINGS:
        for key in binding.key.split(","):  # type: ignore[union-attr]
            shown = {"question_mark": "?", "slash": "/", "escape": "Esc"}.get(key, key)
            shown = re.sub(r"ctrl\+(\w)", lambda m: f"Ctrl+{m.group(1).upper()}", shown)
            assert f"`{shown.replace('f1', 'F1')}`" in docs, f"docs/tui.md does not list {key!r}"


async def test_theme_switches_between_dark_and_light():
    app, _ = known_app()
    async with app.run_test(size=(80, 24)) as pilot:
        assert app.current_theme.dark
        await pilot.press("ctrl+t")
        assert not app.current_theme.dark
        await pilot.press("ctrl+t")
        assert app.current_theme.dark


async def test_command_palette_offers_the_app_commands():
    app, _feed = known_app()
    async with app.run_test(size=(80, 24)) as pilot:
        await pilot.press("ctrl+p")
        assert isinstance(app.screen, CommandPalette)
        for key in "light":
            await pilot.press(key)
        await wait_for_screen(pilot, lambda t: "Light/dark theme" in t, "the theme command")
        await pilot.press("enter")
        await wait_for_screen(pilot, lambda _: not app.current_theme.dark, "the light theme")


async def test_cancel_asks_the_realm_to_stop_the_current_answer():
    app, feed = known_app()
    async with app.run_test(size=(80, 24)) as pilot:
        for key in "hello":
            await pilot.press(key)
        await pilot.press("enter")
        await wait_for_screen(pilot, lambda t: "Hello from the realm." in t, "the answer")
        await pilot.press("ctrl+g")
        assert feed.cancelled == [app.query_one("#result").guid]


async def test_a_burst_of_pushes_becomes_a_few_repaints():
    clock = FixedClock()
    burst = [Stats(topic="workers", data={"workers": workers_snapshot()[: 1 + n % 4]}) for n in range(2000)]
    feed = FixedFeed(burst)
    app = MtorApp(feed, clock=clock)
    async with app.run_test(size=(80, 24)) as pilot:
        await feed.drained.wait()
        # The last snapshot is the one shown.
        text = await wait_for_screen(pilot, lambda t: "4 online" in t, "the last worker snapshot", 5)
        assert "w-delta" in text
        assert app.state.updates_applied == 2000
        assert app.repaints <= 10
