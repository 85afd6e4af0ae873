"""The dashboard against a real broker and a real echo worker, driven by Pilot.

The realm (broker.BrokerServer + worker.Worker) runs on its own event loop in a
thread (tests/support/realm.py); the app connects to it over a real WebSocket
through BrokerFeed, exactly as `mtor tui --broker URL` does.
"""

from __future__ import annotations

import re

import pytest
from eth_account import Account
from textual import events
from textual.widgets import Static

from mtor_cli.tui.app import MtorApp
from mtor_cli.tui.broker_feed import BrokerFeed
from tests.support.realm import ThreadRealm, free_port
from worker.backends.base import Device
from worker.backends.echo import EchoBackend

from .screen import screen_text, wait_for_screen

pytestmark = pytest.mark.timeout(120)

SIZE = (100, 30)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("MTOR_HOME", str(tmp_path))


@pytest.fixture
def realm(tmp_path):
    with ThreadRealm(tmp_path / "journal.db", stats_interval_s=0.05) as realm:
        yield realm


def dashboard(url: str, **options: object) -> MtorApp:
    feed = BrokerFeed(url, Account.create(), first_retry_s=0.2, max_retry_s=0.5)
    return MtorApp(feed, intent="echo", repaint_interval=0.05, **options)  # type: ignore[arg-type]


def answer(text: str, question: str) -> str:
    """What the screen shows below the answer pane's question line."""
    return text.split(question, 1)[-1]


def worker_row(text: str, name: str) -> str | None:
    return next((line for line in text.splitlines() if f"│ {name} " in line), None)


async def test_prompt_streams_the_answer(realm):
    realm.add_worker([EchoBackend(None, Device.parse(None))], name="echo-one")
    realm.wait_workers(1)
    app = dashboard(realm.url, params={"delay_s": 0.15})
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_screen(pilot, lambda t: "● online" in t and "echo-one" in t, "the worker row")
        for key in "neon mountains under a purple sky":
            await pilot.press("space" if key == " " else key)
        await pilot.press("enter")
        question = "» neon mountains under a purple sky"
        # The pane shows the question on its first line; the answer streams below it.
        partial = await wait_for_screen(
            pilot,
            lambda t: question in t and "neon mountains" in answer(t, question) and "purple sky" not in answer(t, question),
            "the first streamed words",
        )
        assert "done" not in partial
        final = await wait_for_screen(pilot, lambda t: "echo · done" in t, "the finished answer")
        assert "neon mountains under a purple sky" in answer(final, question)
        # The answer names the worker that served it (read from the pane's
        # meta line itself: on screen it wraps where the timings make it long).
        worker_id = realm.wait_workers(1)[0]["id"]
        meta = str(app.query_one("#answer-meta", Static).render())
        assert f"worker {worker_id}" in meta, meta


async def test_worker_load_and_queue_change(realm):
    realm.add_worker([EchoBackend(None, Device.parse(None))], name="echo-busy", slots=1)
    realm.wait_workers(1)
    app = dashboard(realm.url, params={"delay_s": 0.4})
    async with app.run_test(size=SIZE) as pilot:
        idle = await wait_for_screen(pilot, lambda t: worker_row(t, "echo-busy") is not None, "the worker row")
        assert re.search(r"ready\s+0/1", worker_row(idle, "echo-busy") or "")
        # Three prompts pasted in quick succession; each answer takes 2 s, so
        # while the first runs the other two wait in the queue.
        for n in range(3):
            app.query_one("#prompt").post_message(events.Paste(f"j{n} a b c d"))
            await pilot.press("enter")
        await wait_for_screen(
            pilot,
            lambda t: re.search(r"busy\s+1/1", worker_row(t, "echo-busy") or "") is not None
            and re.search(r"echo\s+2 ", t) is not None
            and "slots 1/1" in t,
            "the worker at full load and two intents queued",
        )
        await wait_for_screen(
            pilot,
            lambda t: re.search(r"ready\s+0/1", worker_row(t, "echo-busy") or "") is not None
            and "no queued intents" in t
            and len(re.findall(r"echo\s+done", t)) == 3,
            "the worker idle, the queue empty and three intents done",
            timeout=30,
        )


async def test_worker_appears_and_vanishes(realm):
    app = dashboard(realm.url)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_screen(pilot, lambda t: "● online" in t and "0 online" in t, "an empty realm")
        worker = realm.add_worker([EchoBackend(None, Device.parse(None))], name="echo-new")
        await wait_for_screen(pilot, lambda t: worker_row(t, "echo-new") is not None, "the new worker")
        assert "1 online" in screen_text(app)
        realm.stop_worker(worker)
        await wait_for_screen(pilot, lambda t: worker_row(t, "echo-new") is None, "the worker to vanish")
        assert "0 online" in screen_text(app)


async def test_lost_connection_shows_and_reconnects(realm):
    app = dashboard(realm.url)
    async with app.run_test(size=SIZE) as pilot:
        await wait_for_screen(pilot, lambda t: "● online" in t, "the first connection")
        realm.call(realm.server.stop())
        down = await wait_for_screen(pilot, lambda t: "● offline" in t, "the lost connection")
        assert "retry in" in down
        realm.restart()
        await wait_for_screen(pilot, lambda t: "● online" in t, "the automatic reconnect")


async def test_unreachable_broker_keeps_retrying(tmp_path):
    app = dashboard(f"ws://127.0.0.1:{free_port()}")
    async with app.run_test(size=SIZE) as pilot:
        text = await wait_for_screen(pilot, lambda t: "● offline" in t, "the unreachable status")
        assert "cannot reach the broker" in text
        for key in "hello":
            await pilot.press(key)
        await pilot.press("enter")
        text = await wait_for_screen(pilot, lambda t: "[disconnected]" in t, "the refused prompt")
        assert "hint:" in text
