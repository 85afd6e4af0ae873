"""Snapshots of the dashboard's main screens over a realm of known state.

Regenerate after an intended change with
``python -m pytest tests/mtor_cli/tui/test_snapshots.py --snapshot-update``
and look at the SVGs under __snapshots__ before committing them.
"""

from __future__ import annotations

import base64
import io
from collections.abc import Awaitable, Callable

import pytest
from textual.pilot import Pilot
from textual.widgets import Input

from broker.protocol import Accepted, Attachment, Progress, Result
from mtor_cli.tui import AnswerEvent, ConnectionStatus
from mtor_cli.tui.app import MtorApp

from .fixed_feed import FixedClock, FixedFeed, hello_answer, known_realm


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("MTOR_HOME", str(tmp_path))


def gradient_png() -> str:
    from PIL import Image

    image = Image.new("RGB", (64, 32))
    image.putdata([(x * 4, y * 8, 255 - x * 4) for y in range(32) for x in range(64)])
    buffer = io.BytesIO()
    image.save(buffer, "PNG")
    return base64.b64encode(buffer.getvalue()).decode()


def imagine_answer() -> list[AnswerEvent]:
    return [
        Accepted(guid="", intent="imagine", position=0),
        Progress(guid="", step=2, total=4, message="denoising"),
        Result(guid="", intent="imagine", worker="w-charlie", timings={"run_s": 2.4},
               attachments=[Attachment(kind="image", data=gradient_png(), mime="image/png")]),
    ]


def realm_app(extra: list[ConnectionStatus] | None = None) -> tuple[MtorApp, Callable[[Pilot], Awaitable[None]]]:
    clock = FixedClock()
    feed = FixedFeed(
        [*known_realm(clock), *(extra or [])],
        {"hello": hello_answer(), "imagine a gradient": imagine_answer()},
    )
    app = MtorApp(feed, clock=clock)

    async def settled(pilot: Pilot) -> None:
        app.query_one(Input).cursor_blink = False  # a blinking cursor is half the time invisible
        await feed.drained.wait()
        app.repaint(now=True)
        await pilot.pause()

    return app, settled


@pytest.mark.parametrize("size", [(100, 30), (80, 24)], ids=["100x30", "80x24"])
def test_dashboard(snap_compare, size):
    app, settled = realm_app()
    assert snap_compare(app, terminal_size=size, run_before=settled)


def test_streamed_answer(snap_compare):
    app, settled = realm_app()
    assert snap_compare(app, terminal_size=(80, 24), run_before=settled, press=[*"hello", "enter"])


def test_imagine_preview(snap_compare):
    app, settled = realm_app()
    keys = [*"imagine a gradient", "enter"]
    assert snap_compare(app, terminal_size=(100, 30), run_before=settled, press=keys)


def test_failed_answer(snap_compare):
    app, settled = realm_app()
    assert snap_compare(app, terminal_size=(80, 24), run_before=settled, press=[*"draw me", "enter"])


def test_help_screen(snap_compare):
    app, settled = realm_app()
    assert snap_compare(app, terminal_size=(80, 24), run_before=settled, press=["f1"])


def test_light_theme(snap_compare):
    app, settled = realm_app()
    assert snap_compare(app, terminal_size=(100, 30), run_before=settled, press=["ctrl+t"])


def test_connection_lost(snap_compare):
    lost = ConnectionStatus("offline", "the connection to the broker was lost", retry_in=4.0)
    app, settled = realm_app([lost])
    assert snap_compare(app, terminal_size=(80, 24), run_before=settled)
