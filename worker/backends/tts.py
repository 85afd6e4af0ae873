"""The tts intent: text-to-speech with espeak-ng (or pyttsx3), returned as a WAV.

``--model`` picks the engine: ``espeak-ng`` (the default; a subprocess, so a
stuck synthesis can be timed out) or ``pyttsx3`` (the platform's speech
engine: SAPI5, NSSpeechSynthesizer or libespeak). :func:`synthesize` is the
plain function the client's ``--speak`` uses too.
"""

from __future__ import annotations

import asyncio
import io
import math
import shutil
import subprocess
import tempfile
import threading
import time
import wave
from pathlib import Path
from typing import Any

from broker.protocol import Usage, Work, WorkResult
from worker.backends.base import Backend, BadInput, Device, Emitter
from worker.backends.params import Param, Params
from worker.media import wav_attachment

ENGINES = ("espeak-ng", "pyttsx3")
MAX_CHARS = 5000
MIN_SPEED, MAX_SPEED = 80, 450  # words per minute, espeak-ng's own bounds
_VOICE = r"[A-Za-z0-9_+\-/]{1,40}"
_TIMEOUT_S = 120.0


class SpeechEngineError(RuntimeError):
    """The speech engine is missing or failed."""


def default_engine() -> str:
    return "espeak-ng" if shutil.which("espeak-ng") else "pyttsx3"


def espeak_voices() -> frozenset[str]:
    """Every name espeak-ng accepts for ``-v``: languages, voice names and voice files."""
    listing = subprocess.run(["espeak-ng", "--voices"], capture_output=True, text=True, timeout=30).stdout
    names: set[str] = set()
    for line in listing.splitlines()[1:]:
        cols = line.split()
        if len(cols) >= 5:
            names.update(c.lower() for c in (cols[1], cols[3], cols[4], cols[4].rsplit("/", 1)[-1]))
    return frozenset(names)


def wav_seconds(wav: bytes) -> float:
    with wave.open(io.BytesIO(wav)) as w:
        return w.getnframes() / float(w.getframerate())


def synthesize(text: str, *, engine: str | None = None, voice: str | None = None, speed: int | None = None) -> bytes:
    """Speak ``text`` into a complete WAV file's bytes (correct RIFF sizes)."""
    engine = engine or default_engine()
    with tempfile.TemporaryDirectory(prefix="mtor-tts-") as tmp:
        path = Path(tmp) / "speech.wav"
        if engine == "espeak-ng":
            # -w writes a finished header; --stdout leaves the sizes open-ended.
            cmd = ["espeak-ng", "-w", str(path)]
            if voice:
                cmd += ["-v", voice]
            if speed:
                cmd += ["-s", str(speed)]
            done = subprocess.run([*cmd, "--", text], capture_output=True, text=True, timeout=_TIMEOUT_S)
            if done.returncode != 0:
                raise SpeechEngineError(f"espeak-ng failed: {(done.stderr or done.stdout).strip()}")
        elif engine == "pyttsx3":
            import pyttsx3

            tts = pyttsx3.init()
            if voice:
                tts.setProperty("voice", voice)
            if speed:
                tts.setProperty("rate", speed)
            tts.save_to_file(text, str(path))
            tts.runAndWait()
        else:
            raise SpeechEngineError(f"unknown speech engine {engine!r}; use one of {', '.join(ENGINES)}")
        if not path.exists() or path.stat().st_size <= 44:
            raise SpeechEngineError(f"{engine} produced no audio")
        return path.read_bytes()


class TTSBackend(Backend):
    """Speak the prompt. ``model`` is the engine name (espeak-ng or pyttsx3)."""

    intent = "tts"
    PARAMS = Params(
        "tts",
        Param("voice", (str,), "an espeak-ng voice, optionally +variant", pattern=_VOICE,
              pattern_means="a voice name", example='e.g. voice="en-us"'),
        Param("speed", (int,), "words a minute", low=MIN_SPEED, high=MAX_SPEED),
    )

    def __init__(self, model: str | None, device: Device, **options: Any) -> None:
        super().__init__(model, device, **options)
        self.engine = model or default_engine()
        # pyttsx3 keeps one process-wide engine; espeak-ng runs are cheap to queue.
        self._lock = threading.Lock()
        self._voices: frozenset[str] = frozenset()

    @property
    def model_name(self) -> str:
        return self.engine

    def load(self) -> None:
        if self.engine not in ENGINES:
            raise ValueError(f"unknown speech engine {self.engine!r}; use --model espeak-ng or --model pyttsx3")
        if self.engine == "espeak-ng" and not shutil.which("espeak-ng"):
            raise ValueError("espeak-ng is not installed (apt-get install espeak-ng), or use --model pyttsx3")
        # A short synthesis proves the engine works before the worker registers.
        synthesize("ok", engine=self.engine)
        if self.engine == "espeak-ng":
            self._voices = espeak_voices()

    def info(self) -> dict[str, Any]:
        return {"max_chars": MAX_CHARS, "format": "wav"}

    def _params(self, work: Work) -> tuple[str | None, int | None]:
        params = self.params.parse(work.params)
        voice, speed = params["voice"], params["speed"]
        # "en-us+f3" is a voice plus a variant; only the voice must exist.
        if voice is not None and self._voices and voice.split("+", 1)[0].lower() not in self._voices:
            raise BadInput("bad_params", f"espeak-ng has no voice {voice!r}", "list voices with `espeak-ng --voices`")
        return voice, speed

    def validate(self, work: Work) -> None:
        if not work.prompt.strip():
            raise BadInput("bad_params", "nothing to say: the prompt is empty", 'e.g. mtor ask --intent tts "hello"')
        if len(work.prompt) > MAX_CHARS:
            raise BadInput("prompt_too_long", f"the text is {len(work.prompt)} characters", f"keep it under {MAX_CHARS}")
        self._params(work)

    async def run(self, work: Work, out: Emitter) -> WorkResult:
        voice, speed = self._params(work)
        started = time.perf_counter()
        wav = await asyncio.to_thread(self._speak, work.prompt, voice, speed)
        seconds = wav_seconds(wav)
        return WorkResult(
            guid=work.guid,
            attachments=[wav_attachment(wav)],
            model=self.model_name,
            timings={"run_s": time.perf_counter() - started, "audio_s": seconds},
            usage=Usage(characters=len(work.prompt), audio_seconds=math.ceil(seconds)),
        )

    def _speak(self, text: str, voice: str | None, speed: int | None) -> bytes:
        with self._lock:
            return synthesize(text, engine=self.engine, voice=voice, speed=speed)
