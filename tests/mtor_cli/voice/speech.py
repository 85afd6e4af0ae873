"""Speech for the voice tests, generated with espeak-ng (slow and clear, so the
small Whisper model hears it reliably), as sources or WAV files."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from mtor_cli.voice import SAMPLE_RATE, MemorySource, write_wav
from mtor_cli.voice.capture import resample, to_int16
from mtor_cli.voice.tts import synthesise, wav_samples


def speech_samples(text: str) -> np.ndarray:
    """int16, 16 kHz, without espeak-ng's own leading and trailing silence, so
    that the pauses a test asks for are the pauses it gets."""
    samples, rate = wav_samples(synthesise(text, words_per_minute=120, word_gap=4))
    audible = np.flatnonzero(np.abs(samples) > 0.01)
    return to_int16(resample(samples[audible[0] : audible[-1] + 1], rate, SAMPLE_RATE))


def quiet(seconds: float, noise_db: float = -70.0, seed: int = 0) -> np.ndarray:
    """A quiet room: faint white noise, int16, 16 kHz."""
    amplitude = 10 ** (noise_db / 20)
    rng = np.random.default_rng(seed)
    return to_int16(rng.normal(0.0, amplitude, int(seconds * SAMPLE_RATE)).astype(np.float32))


def conversation(*parts: str | float) -> MemorySource:
    """Speech (str) and pauses (float seconds) in order, over a faint noise floor."""
    pieces = [quiet(0.5)]
    for part in parts:
        pieces.append(quiet(part) if isinstance(part, float) else speech_samples(part))
    pieces.append(quiet(1.0))
    return MemorySource(np.concatenate(pieces))


def wav_file(path: Path, *parts: str | float) -> Path:
    write_wav(path, conversation(*parts).samples)
    return path
