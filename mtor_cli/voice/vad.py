"""Voice activity detection: cut a frame stream into utterances.

Energy with a zero-crossing check, no model: a frame is voiced when it is
loud enough above the room's noise floor (tracked as the stream goes), and
hiss-like frames (many zero crossings, little energy) do not start speech.
An utterance starts after a few voiced frames and ends after
``end_silence_ms`` of quiet, so a pause between words does not cut it.
"""

from __future__ import annotations

import math
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING

from .capture import FRAME_MS, SAMPLE_RATE

if TYPE_CHECKING:
    import numpy as np

SILENCE_DB = -100.0


@dataclass(frozen=True)
class VadConfig:
    min_db: float = -45.0  # never voiced below this, however quiet the room
    above_floor_db: float = 15.0  # voiced when this far above the noise floor
    max_zcr: float = 0.35  # zero crossings per sample above which a quiet frame counts as hiss
    start_ms: int = 90  # voiced time needed to start an utterance
    end_silence_ms: int = 700  # quiet time that ends one
    pre_roll_ms: int = 240  # audio kept from before the start, so the first consonant is not clipped
    min_speech_ms: int = 200  # shorter bursts (a click, a cough) are dropped
    max_utterance_s: float = 20.0  # a stream that never goes quiet is cut here


@dataclass(frozen=True)
class Utterance:
    samples: np.ndarray  # int16, 16 kHz
    start_s: float  # position in the stream
    end_s: float

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE


def level_db(frame: np.ndarray) -> float:
    """RMS level in dBFS (0 is full scale)."""
    import numpy as np

    if len(frame) == 0:
        return SILENCE_DB
    rms = math.sqrt(float(np.mean(np.square(frame.astype(np.float32) / 32768))))
    return 20 * math.log10(rms) if rms > 1e-5 else SILENCE_DB


def zero_crossing_rate(frame: np.ndarray) -> float:
    import numpy as np

    if len(frame) < 2:
        return 0.0
    signs = np.signbit(frame)
    return float(np.count_nonzero(signs[1:] != signs[:-1])) / (len(frame) - 1)


class UtteranceDetector:
    """Feed frames in order; :meth:`feed` returns an :class:`Utterance` when one ends."""

    def __init__(self, config: VadConfig | None = None, on_level: Callable[[float, bool], None] | None = None) -> None:
        self.config = config or VadConfig()
        self.on_level = on_level
        self._start_frames = max(1, self.config.start_ms // FRAME_MS)
        self._end_frames = max(1, self.config.end_silence_ms // FRAME_MS)
        self._max_frames = round(self.config.max_utterance_s * 1000 / FRAME_MS)
        self._pre_roll: deque[np.ndarray] = deque(maxlen=max(self._start_frames, self.config.pre_roll_ms // FRAME_MS))
        self._speech: list[np.ndarray] = []
        self._voiced_run = 0
        self._quiet_run = 0
        self._voiced_total = 0
        self._floor_db = -60.0
        self._frames_seen = 0
        self._start_frame = 0

    @property
    def clock_s(self) -> float:
        """Seconds of audio fed so far."""
        return self._frames_seen * FRAME_MS / 1000

    @property
    def in_speech(self) -> bool:
        return bool(self._speech)

    def is_voiced(self, frame: np.ndarray) -> tuple[bool, float]:
        db = level_db(frame)
        threshold = max(self.config.min_db, self._floor_db + self.config.above_floor_db)
        voiced = db >= threshold and (
            zero_crossing_rate(frame) <= self.config.max_zcr or db >= threshold + 10
        )
        if not voiced:
            # The floor follows quiet frames quickly down and slowly up, so a
            # long utterance does not raise it.
            rate = 0.3 if db < self._floor_db else 0.02
            self._floor_db += rate * (max(db, -90.0) - self._floor_db)
        return voiced, db

    def feed(self, frame: np.ndarray) -> Utterance | None:
        self._frames_seen += 1
        voiced, db = self.is_voiced(frame)
        if self.on_level is not None:
            self.on_level(db, voiced)
        if not self._speech:
            self._pre_roll.append(frame)
            self._voiced_run = self._voiced_run + 1 if voiced else 0
            if self._voiced_run >= self._start_frames:
                self._speech = list(self._pre_roll)
                self._start_frame = self._frames_seen - len(self._speech)
                self._pre_roll.clear()
                self._quiet_run = 0
                self._voiced_total = self._voiced_run
            return None
        self._speech.append(frame)
        if voiced:
            self._quiet_run = 0
            self._voiced_total += 1
        else:
            self._quiet_run += 1
        if self._quiet_run >= self._end_frames or len(self._speech) >= self._max_frames:
            return self._finish()
        return None

    def flush(self) -> Utterance | None:
        """The utterance in progress when the stream ends, if any."""
        return self._finish() if self._speech else None

    def _finish(self) -> Utterance | None:
        import numpy as np

        frames = self._speech
        # Keep a little of the trailing quiet (Whisper likes a natural end), drop the rest.
        keep = len(frames) - max(0, self._quiet_run - 8)
        voiced_ms = self._voiced_total * FRAME_MS
        self._speech = []
        self._voiced_run = 0
        self._quiet_run = 0
        self._voiced_total = 0
        if voiced_ms < self.config.min_speech_ms:
            return None
        samples = np.concatenate(frames[:keep])
        start_s = self._start_frame * FRAME_MS / 1000
        return Utterance(samples, start_s, start_s + len(samples) / SAMPLE_RATE)
