"""One spoken request (``mtor ask --voice``): the first utterance, transcribed."""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass

from .capture import AudioSource
from .stt import Transcriber
from .vad import UtteranceDetector, VadConfig
from .wakeword import match_wake_word


@dataclass(frozen=True)
class SpokenRequest:
    transcript: str  # as heard
    request: str  # the wake word, if said, removed
    duration_s: float
    stt_s: float


def capture_request(
    source: AudioSource,
    transcriber: Transcriber,
    *,
    vad: VadConfig | None = None,
    on_level: Callable[[float, bool], None] | None = None,
    max_wait_s: float | None = None,
) -> SpokenRequest | None:
    """Listen until one utterance ends on silence and transcribe it.

    None when no speech came: the audio ran out, or nothing was said within
    ``max_wait_s`` seconds.
    """
    detector = UtteranceDetector(vad, on_level=on_level)
    utterance = None
    for frame in source.frames():
        utterance = detector.feed(frame)
        if utterance is not None:
            break
        if max_wait_s is not None and not detector.in_speech and detector.clock_s >= max_wait_s:
            return None
    else:
        utterance = detector.flush()
    if utterance is None:
        return None
    started = time.perf_counter()
    transcript = transcriber.transcribe(utterance.samples)
    stt_s = time.perf_counter() - started
    wake = match_wake_word(transcript)
    return SpokenRequest(transcript, wake.request if wake.woke else transcript, utterance.duration_s, stt_s)
