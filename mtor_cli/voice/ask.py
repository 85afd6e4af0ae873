"""Voice for ``mtor ask``: a spoken request in (``--voice``), a spoken reply out (``--speak``).

The ask command stays in charge of submitting; these functions only turn
sound into a prompt and a reply into sound, and raise :class:`AudioError`
(one clear line for the command to print) when there is no device.
"""

from __future__ import annotations

from pathlib import Path

from .capture import AudioError, open_source
from .meter import LevelMeter
from .request import capture_request
from .stt import WhisperTranscriber
from .tts import Speaker

NOTHING_HEARD_HINT = "speak after the prompt, closer to the microphone, or pass a recording: --voice --audio FILE.wav"


def spoken_prompt(audio: Path | None = None, *, show: bool = True, max_wait_s: float = 10.0) -> str:
    """The request spoken into the microphone (or in the WAV file ``audio``),
    transcribed; the wake word, if said, is removed.

    With ``show``, a live level meter and then the transcript are drawn on stderr.
    """
    from mtor_cli.output import note

    with open_source([audio] if audio else []) as source:
        transcriber = WhisperTranscriber()
        try:
            transcriber.load()
        except RuntimeError as exc:
            raise AudioError("no_model", str(exc)) from None
        meter = LevelMeter("speak now; silence ends", enabled=show)
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
        note(f"heard: {spoken.transcript}")
    return spoken.request


def check_speaker() -> Speaker:
    """A speaker for ``--speak``; raises AudioError now if nothing can be played."""
    speaker = Speaker(play=True)
    speaker.check()
    return speaker
