"""Voice for ``mtor ask``: a spoken request in (``--voice``), a spoken reply out (``--speak``).

The ask command stays in charge of submitting; these functions turn sound
into a prompt and a reply into sound. Each failure is the command's one
error line and exit status (no device, nothing heard), as everywhere in mtor.
"""

from __future__ import annotations

from pathlib import Path

from mtor_cli import output

from .capture import AudioError, open_source
from .meter import LevelMeter
from .request import capture_request
from .stt import WhisperTranscriber
from .tts import Speaker

NOTHING_HEARD_HINT = "speak after the prompt, closer to the microphone, or pass a recording: --voice --audio FILE.wav"


def spoken_prompt(audio: Path | None = None, *, show: bool = True, max_wait_s: float = 10.0) -> str:
    """The request spoken into the microphone (or in the WAV file ``audio``),
    transcribed; the wake word, if said, is removed. Raises AudioError.

    With ``show``, a live level meter and then the transcript are drawn on stderr.
    """
    with open_source([audio] if audio else []) as source:
        transcriber = WhisperTranscriber()
        try:
            transcriber.load()
        except RuntimeError as exc:
            raise AudioError("no_model", str(exc)) from None
        meter = LevelMeter("speak now; a pause ends it", enabled=show)
        meter.start()
        try:
            spoken = capture_request(
                source, transcriber, on_level=meter.level, max_wait_s=None if audio else max_wait_s
            )
        finally:
            meter.stop()
    if spoken is None or not any(ch.isalnum() for ch in spoken.request):
        raise AudioError("nothing_heard", "no speech was heard", NOTHING_HEARD_HINT)
    if show:
        output.note(f"heard: {spoken.transcript}")
    return spoken.request


def voice_prompt(audio: Path | None, typed: str | None = None, *, show: bool = True) -> str:
    """:func:`spoken_prompt`, or the command's error line and exit.

    ``typed`` is a prompt also given as text: with ``--voice`` that is a usage error.
    """
    if typed is not None:
        output.fail("usage", "--voice takes the request from speech, not from the prompt argument", "leave one out")
    try:
        return spoken_prompt(audio, show=show)
    except AudioError as exc:
        output.fail(exc.code, exc.message, exc.hint)


def voice_speaker() -> Speaker:
    """A speaker for ``--speak``, checked before anything is submitted."""
    speaker = Speaker(play=True)
    try:
        speaker.check()
    except AudioError as exc:
        output.fail(exc.code, exc.message, "leave out --speak: the answer is printed either way")
    return speaker


def speak_answer(speaker: Speaker, text: str | None) -> None:
    """Say the answer (already printed); a failure is the error line and exit."""
    if not text or not text.strip():
        return
    try:
        speaker.speak(text)
    except AudioError as exc:
        output.fail(exc.code, exc.message, exc.hint)
