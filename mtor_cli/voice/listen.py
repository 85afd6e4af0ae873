"""The always-on loop behind ``mtor listen``.

    wait for "Computer" -> "Yes? What would you like to do?" -> the request
    -> recognise -> dispatch to the realm -> speak or show the answer -> wait

An answer that proposes an action (an email draft: "Shall I send it?") takes
the next utterance as its yes or no; only a plain yes runs it.

A request in one breath ("Computer, imagine a neon mountain") skips the
question. Speech without the wake word is transcribed and ignored; nothing
is submitted for it. "Goodbye" on its own ends the session, with or without
the wake word. Silence for ``timeout_s`` after the wake word goes back to
waiting. Time is counted in audio
fed, so a WAV file and a microphone behave the same.

:meth:`Listener.run` yields what happens as events; the command prints
them, tests collect them.
"""

from __future__ import annotations

import time
from collections.abc import Callable, Generator, Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Protocol

from mtor_cli.client import RealmError

from .capture import AudioError, AudioSource
from .stt import Transcriber
from .vad import Utterance, UtteranceDetector, VadConfig
from .wakeword import is_goodbye, is_yes, match_wake_word

if TYPE_CHECKING:
    from mtor_cli.intent import Recognition

PROMPT = "Yes? What would you like to do?"
GOODBYE = "Goodbye."
DEFAULT_TIMEOUT_S = 8.0


@dataclass(frozen=True)
class Reply:
    text: str  # what is shown and spoken
    files: list[Path] = field(default_factory=list)  # images or audio the answer produced
    intent: str = ""
    guid: str = ""
    why: str = ""  # the realm's own account of the intent it chose (--explain), when it chose
    # An action the reply proposes (email: send the draft), run only if the
    # next utterance is a yes; ``not_done`` is said otherwise.
    confirm: Callable[[], Reply] | None = None
    not_done: str = "Nothing was done."


class Dispatch(Protocol):
    """Runs one recognised request; raises mtor_cli.client.RealmError when the realm refuses it."""

    def __call__(self, recognition: Recognition) -> Reply: ...


class Recognises(Protocol):
    def recognise(self, text: str, attachment_kinds: tuple[str, ...] = ()) -> Recognition: ...


class Speaks(Protocol):
    def speak(self, text: str) -> Path | None: ...


# --- events ------------------------------------------------------------------


@dataclass(frozen=True)
class Heard:
    """An utterance was transcribed."""

    transcript: str
    start_s: float
    duration_s: float
    stt_s: float  # time spent transcribing


@dataclass(frozen=True)
class Ignored:
    """Speech without the wake word: nothing is done with it."""

    transcript: str


@dataclass(frozen=True)
class Said:
    """The assistant says this (printed, and spoken when a speaker is set)."""

    text: str


@dataclass(frozen=True)
class Dispatched:
    """A request was recognised and handed to the realm."""

    recognition: Recognition
    latency_s: float  # from the end of the utterance to the hand-over


@dataclass(frozen=True)
class Answered:
    reply: Reply


@dataclass(frozen=True)
class Failed:
    code: str
    message: str
    hint: str = ""


@dataclass(frozen=True)
class TimedOut:
    """No request followed the wake word in time; back to waiting."""

    waited_s: float


@dataclass(frozen=True)
class Ended:
    """The session is over: "goodbye" (``said_goodbye``) or the audio ran out."""

    said_goodbye: bool


ListenEvent = Heard | Ignored | Said | Dispatched | Answered | Failed | TimedOut | Ended


class Listener:
    def __init__(
        self,
        source: AudioSource,
        transcriber: Transcriber,
        recogniser: Recognises,
        dispatch: Dispatch,
        *,
        speaker: Speaks | None = None,
        timeout_s: float = DEFAULT_TIMEOUT_S,
        vad: VadConfig | None = None,
        on_level: Callable[[float, bool], None] | None = None,
    ) -> None:
        self.source = source
        self.transcriber = transcriber
        self.recogniser = recogniser
        self.dispatch = dispatch
        self.speaker = speaker
        self.timeout_s = timeout_s
        self.vad = vad or VadConfig()
        self.on_level = on_level
        self._pending: Reply | None = None  # a reply whose question awaits a yes

    def run(self) -> Iterator[ListenEvent]:
        detector = UtteranceDetector(self.vad, on_level=self.on_level)
        awaiting_since: float | None = None  # stream time of the question, while an answer is due
        self._pending = None
        for frame in self.source.frames():
            utterance = detector.feed(frame)
            if utterance is None:
                if (
                    awaiting_since is not None
                    and not detector.in_speech
                    and detector.clock_s - awaiting_since >= self.timeout_s
                ):
                    yield TimedOut(detector.clock_s - awaiting_since)
                    if self._pending is not None:
                        yield from self._say(self._pending.not_done)
                        self._pending = None
                    awaiting_since = None
                continue
            outcome = yield from self._handle(utterance, awaiting_since is not None)
            if outcome == "end":
                return
            if outcome == "asked":
                awaiting_since = detector.clock_s
            elif outcome == "done":
                awaiting_since = None
        last = detector.flush()
        if last is not None:
            outcome = yield from self._handle(last, awaiting_since is not None)
            if outcome == "end":
                return
        if self._pending is not None:  # the audio ended before a yes
            yield from self._say(self._pending.not_done)
        yield Ended(said_goodbye=False)

    def _confirming(self, transcript: str) -> Generator[ListenEvent, None, str]:
        """The answer to a reply's question: a yes runs its action, anything else does not."""
        pending, self._pending = self._pending, None
        assert pending is not None and pending.confirm is not None
        if not is_yes(transcript):
            yield from self._say(pending.not_done)
            return "done"
        try:
            reply = pending.confirm()
        except (RealmError, AudioError) as exc:
            yield Failed(exc.code, exc.message, exc.hint)
            return "done"
        yield Answered(reply)
        if self.speaker is not None and reply.text:
            yield from self._speak(reply.text)
        return "done"

    def _handle(self, utterance: Utterance, awaiting: bool) -> Generator[ListenEvent, None, str]:
        """Yields the events for one utterance. Returns what happens next:
        "asked" (a request is due now), "unchanged" (nothing was said: keep
        the state, and a running timeout), "done" (back to waiting) or "end"."""
        closed_at = time.perf_counter()
        try:
            transcript = self.transcriber.transcribe(utterance.samples)
        except RealmError as exc:  # a speech worker in the realm could not transcribe it
            yield Failed(exc.code, exc.message, exc.hint)
            return "unchanged"
        yield Heard(transcript, utterance.start_s, utterance.duration_s, time.perf_counter() - closed_at)
        if not any(ch.isalnum() for ch in transcript):
            return "unchanged"
        if self._pending is not None:
            return (yield from self._confirming(transcript))
        wake = match_wake_word(transcript)
        if awaiting or is_goodbye(transcript):
            request = wake.request if wake.woke else transcript
        elif wake.woke:
            request = wake.request
        else:
            yield Ignored(transcript)
            return "done"
        if not any(ch.isalnum() for ch in request):
            yield from self._say(PROMPT)
            return "asked"
        if is_goodbye(request):
            yield from self._say(GOODBYE)
            yield Ended(said_goodbye=True)
            return "end"
        recognition = self.recogniser.recognise(request)
        yield Dispatched(recognition, time.perf_counter() - closed_at)
        try:
            reply = self.dispatch(recognition)
        except (RealmError, AudioError) as exc:  # a refusal must not end an always-on session
            yield Failed(exc.code, exc.message, exc.hint)
            return "done"
        yield Answered(reply)
        if self.speaker is not None and reply.text:
            yield from self._speak(reply.text)
        if reply.confirm is not None:
            self._pending = reply  # the reply asked a question: the next utterance answers it
            return "asked"
        return "done"

    def _say(self, text: str) -> Iterator[ListenEvent]:
        yield Said(text)
        if self.speaker is not None:
            yield from self._speak(text)

    def _speak(self, text: str) -> Iterator[ListenEvent]:
        try:
            self.speaker.speak(text)  # type: ignore[union-attr]
        except AudioError as exc:
            yield Failed(exc.code, exc.message, exc.hint)
        # What the microphone caught meanwhile is mostly our own voice: do not
        # take it for the next request.
        self.source.drain()
