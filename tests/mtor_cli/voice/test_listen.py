"""The whole voice path, capture -> VAD -> wake word -> STT -> intent -> realm,
driven by espeak-ng speech through a real broker and worker.

The worker echoes prompts back under the imagine and chat intents, so what
comes back is exactly what the realm was asked, under the intent it was
asked for.
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path

import pytest

from mtor_cli.intent import Recogniser
from mtor_cli.voice import (
    PROMPT,
    Answered,
    Dispatched,
    Ended,
    Heard,
    Ignored,
    Listener,
    ListenEvent,
    RealmTranscriber,
    Said,
    Speaker,
    TimedOut,
    WhisperTranscriber,
)
from mtor_cli.voice.dispatch import RealmDispatcher
from tests.support.realm import ThreadRealm
from worker.backends.echo import EchoBackend
from worker.backends.stt import SpeechBackend

from . import models
from .speech import conversation


class EchoImagine(EchoBackend):
    intent = "imagine"


class EchoChat(EchoBackend):
    intent = "chat"


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadRealm]:
    from worker import Device

    with ThreadRealm(tmp_path_factory.mktemp("realm") / "journal.db") as realm:
        realm.add_worker([EchoImagine(None, Device()), EchoChat(None, Device())])
        realm.add_worker([SpeechBackend(None, Device())])
        realm.wait_workers(2)
        yield realm


@pytest.fixture(scope="module")
def transcriber() -> WhisperTranscriber:
    return models.transcriber()


@pytest.fixture(scope="module")
def recogniser(tmp_path_factory: pytest.TempPathFactory) -> Recogniser:
    recogniser = Recogniser(models.embedder(), cache_dir=tmp_path_factory.mktemp("intent-cache"))
    recogniser.warm()
    return recogniser


def listen(
    source: object,
    transcriber: WhisperTranscriber,
    recogniser: Recogniser,
    realm: ThreadRealm,
    tmp_path: Path,
    **options: object,
) -> list[ListenEvent]:
    dispatcher = RealmDispatcher(realm.url, out_dir=tmp_path, timeout_s=30)
    return list(Listener(source, transcriber, recogniser, dispatcher, **options).run())  # type: ignore[arg-type]


def of(kind: type, events: list[ListenEvent]) -> list:
    return [e for e in events if isinstance(e, kind)]


def test_one_breath_imagines_a_neon_mountain(transcriber, recogniser, realm, tmp_path) -> None:
    events = listen(conversation("Computer, imagine a neon mountain"), transcriber, recogniser, realm, tmp_path)
    (dispatched,) = of(Dispatched, events)
    assert dispatched.recognition.intent == "imagine"
    assert dispatched.recognition.prompt.lower() == "a neon mountain"
    (answered,) = of(Answered, events)
    assert answered.reply.intent == "imagine"
    assert answered.reply.text.lower() == "a neon mountain"  # what the worker was given
    assert of(Said, events) == []  # no question when the request came with the wake word
    assert events[-1] == Ended(said_goodbye=False)


def test_the_wake_word_a_pause_then_the_request(transcriber, recogniser, realm, tmp_path) -> None:
    source = conversation("Computer", 1.5, "what is the capital of France")
    events = listen(source, transcriber, recogniser, realm, tmp_path)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Heard", "Said", "Heard", "Dispatched", "Answered", "Ended"]
    assert of(Said, events)[0].text == PROMPT
    (dispatched,) = of(Dispatched, events)
    assert dispatched.recognition.intent == "chat"
    assert "capital" in dispatched.recognition.prompt.lower()
    assert "france" in of(Answered, events)[0].reply.text.lower()


def test_speech_without_the_wake_word_submits_nothing(transcriber, recogniser, realm, tmp_path) -> None:
    events = listen(conversation("imagine a neon mountain"), transcriber, recogniser, realm, tmp_path)
    (ignored,) = of(Ignored, events)
    assert "mountain" in ignored.transcript.lower()
    assert of(Dispatched, events) == [] and of(Answered, events) == []


def test_silence_hears_nothing(transcriber, recogniser, realm, tmp_path) -> None:
    events = listen(conversation(4.0), transcriber, recogniser, realm, tmp_path)
    assert events == [Ended(said_goodbye=False)]


def test_goodbye_alone_ends_listening_too(transcriber, recogniser, realm, tmp_path) -> None:
    source = conversation("goodbye", 1.2, "Computer, imagine a neon mountain")
    events = listen(source, transcriber, recogniser, realm, tmp_path)
    assert [type(e).__name__ for e in events] == ["Heard", "Said", "Ended"]
    assert events[-1] == Ended(said_goodbye=True)


def test_goodbye_ends_listening(transcriber, recogniser, realm, tmp_path) -> None:
    # What follows "goodbye" in the stream is never heard.
    source = conversation("Computer", 1.2, "goodbye", 1.2, "Computer, imagine a neon mountain")
    events = listen(source, transcriber, recogniser, realm, tmp_path)
    assert [e.text for e in of(Said, events)] == [PROMPT, "Goodbye."]
    assert events[-1] == Ended(said_goodbye=True)
    assert of(Dispatched, events) == []
    assert len(of(Heard, events)) == 2


def test_a_timeout_returns_to_waiting(transcriber, recogniser, realm, tmp_path) -> None:
    # After the timeout, a request without the wake word is ignored again.
    source = conversation("Computer", 3.0, "imagine a neon mountain")
    events = listen(source, transcriber, recogniser, realm, tmp_path, timeout_s=2.0)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Heard", "Said", "TimedOut", "Heard", "Ignored", "Ended"]
    assert of(TimedOut, events)[0].waited_s >= 2.0


def test_spoken_replies_can_be_heard_back(transcriber, recogniser, realm, tmp_path) -> None:
    speaker = Speaker(play=False, save_dir=tmp_path / "spoken")
    source = conversation("Computer", 1.2, "imagine a neon mountain")
    events = listen(source, transcriber, recogniser, realm, tmp_path, speaker=speaker)
    assert of(Answered, events)[0].reply.text.lower() == "a neon mountain"
    question, answer = speaker.saved
    from mtor_cli.voice import read_wav
    from mtor_cli.voice.capture import resample

    heard = []
    for path in (question, answer):
        samples, rate = read_wav(path)
        heard.append(transcriber.transcribe(resample(samples, rate, 16_000)).lower())
    assert "what would you like" in heard[0]
    assert "mountain" in heard[1]


def test_a_refused_request_is_reported_and_listening_goes_on(transcriber, recogniser, realm, tmp_path) -> None:
    # No worker serves vision in this realm: the broker refuses, the session continues.
    source = conversation("Computer, describe this picture", 1.2, "Computer, imagine a neon mountain")
    events = listen(source, transcriber, recogniser, realm, tmp_path)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Heard", "Dispatched", "Failed", "Heard", "Dispatched", "Answered", "Ended"]
    failed = events[2]
    assert failed.code in ("no_worker", "bad_attachment") and failed.message



def test_a_speech_worker_in_the_realm_can_do_the_transcribing(recogniser, realm, tmp_path) -> None:
    source = conversation("Computer", 1.2, "imagine a neon mountain")
    events = listen(source, RealmTranscriber(realm.url), recogniser, realm, tmp_path)
    kinds = [type(e).__name__ for e in events]
    assert kinds == ["Heard", "Said", "Heard", "Dispatched", "Answered", "Ended"]
    assert of(Heard, events)[0].transcript.lower().startswith(("computer", "commuter"))
    (dispatched,) = of(Dispatched, events)
    assert (dispatched.recognition.intent, dispatched.recognition.prompt.lower()) == ("imagine", "a neon mountain")
