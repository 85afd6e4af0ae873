"""Where audio comes from: one interface, three sources.

Every source yields 16 kHz mono int16 frames of :data:`FRAME_SAMPLES` samples,
so that voice activity detection, the wake word and transcription see the
same thing whether the sound comes from a microphone (pyaudio), a WAV file or
memory. Tests and ``--audio FILE`` drive exactly the path a microphone does.
"""

from __future__ import annotations

import os
import queue
import sys
import wave
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any, BinaryIO

from broker.protocol import MtorError

if TYPE_CHECKING:
    import numpy as np

SAMPLE_RATE = 16_000  # what Whisper expects
FRAME_MS = 30
FRAME_SAMPLES = SAMPLE_RATE * FRAME_MS // 1000
NO_DEVICE_HINT = "no microphone here? pass a recording instead: --audio FILE.wav"


class AudioError(MtorError):
    """Audio could not be captured or read; ``code`` is stable, ``hint`` says what to do."""


class AudioSource:
    """A stream of 16 kHz mono int16 frames; close it (or use ``with``) when done."""

    sample_rate = SAMPLE_RATE
    description = "audio"

    def frames(self) -> Iterator[np.ndarray]:
        raise NotImplementedError

    def close(self) -> None:
        """Release the device; sources that hold none have nothing to do."""

    def drain(self) -> None:
        """Drop audio captured but not yet read (e.g. the assistant's own voice
        while it spoke). Recordings have none: their time stands still meanwhile."""

    def __enter__(self) -> AudioSource:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


class MemorySource(AudioSource):
    """Samples already in memory, at any rate (resampled to 16 kHz)."""

    def __init__(self, samples: np.ndarray, sample_rate: int = SAMPLE_RATE, description: str = "memory") -> None:
        self.samples = to_int16(resample(samples, sample_rate, SAMPLE_RATE))
        self.description = description

    @property
    def duration_s(self) -> float:
        return len(self.samples) / SAMPLE_RATE

    def frames(self) -> Iterator[np.ndarray]:
        import numpy as np

        samples = self.samples
        for start in range(0, len(samples), FRAME_SAMPLES):
            frame = samples[start : start + FRAME_SAMPLES]
            if len(frame) < FRAME_SAMPLES:
                frame = np.pad(frame, (0, FRAME_SAMPLES - len(frame)))
            yield frame


class WavFileSource(MemorySource):
    """A WAV file (PCM 8/16/32-bit, any rate, mono or stereo)."""

    def __init__(self, path: Path | str) -> None:
        samples, rate = read_wav(path)
        super().__init__(samples, rate, description=str(path))


class ChainSource(AudioSource):
    """Several sources one after another, with a pause between them, as if
    one person spoke each recording in turn."""

    def __init__(self, sources: Sequence[AudioSource], gap_s: float = 1.0) -> None:
        self.sources = list(sources)
        self.gap_frames = round(gap_s * 1000 / FRAME_MS)
        self.description = " + ".join(source.description for source in self.sources)

    def frames(self) -> Iterator[np.ndarray]:
        import numpy as np

        silence = np.zeros(FRAME_SAMPLES, dtype=np.int16)
        for index, source in enumerate(self.sources):
            if index:
                for _ in range(self.gap_frames):
                    yield silence
            yield from source.frames()

    def close(self) -> None:
        for source in self.sources:
            source.close()


class MicrophoneSource(AudioSource):
    """The default (or a named) input device through PortAudio (pyaudio).

    PortAudio's callback thread queues every frame, so nothing is lost while
    the caller is busy transcribing or speaking; the queue holds at most
    ``buffer_s`` seconds (older audio is dropped first).
    """

    description = "microphone"

    def __init__(self, device: int | None = None, buffer_s: float = 60.0) -> None:
        self.device = device
        self._frames: queue.Queue[bytes] = queue.Queue(maxsize=max(1, round(buffer_s * 1000 / FRAME_MS)))
        self._audio: Any = None
        self._stream: Any = None
        self._open()

    def _open(self) -> None:
        pyaudio = _pyaudio()
        self._continue = pyaudio.paContinue
        audio = new_portaudio()
        try:
            if self.device is None and not _has_input(audio):
                raise AudioError("no_device", "no microphone found: PortAudio sees no input device", NO_DEVICE_HINT)
            with _quiet_stderr():
                self._stream = audio.open(
                    format=pyaudio.paInt16,
                    channels=1,
                    rate=SAMPLE_RATE,
                    input=True,
                    input_device_index=self.device,
                    frames_per_buffer=FRAME_SAMPLES,
                    stream_callback=self._captured,
                )
        except AudioError:
            audio.terminate()
            raise
        except (OSError, ValueError) as exc:  # PortAudio reports a missing/busy device as OSError
            audio.terminate()
            raise AudioError("no_device", f"cannot open the microphone: {exc}", NO_DEVICE_HINT) from None
        self._audio = audio

    def _captured(self, data: bytes, count: int, time_info: Any, status: int) -> tuple[None, int]:
        while True:
            try:
                self._frames.put_nowait(data)
                break
            except queue.Full:
                self._drop_oldest()
        return None, self._continue

    def _drop_oldest(self) -> None:
        try:
            self._frames.get_nowait()
        except queue.Empty:
            pass

    def drain(self) -> None:
        while not self._frames.empty():
            self._drop_oldest()

    def frames(self) -> Iterator[np.ndarray]:
        import numpy as np

        while self._stream is not None:
            try:
                data = self._frames.get(timeout=0.5)
            except queue.Empty:
                continue
            yield np.frombuffer(data, dtype=np.int16)

    def close(self) -> None:
        if self._stream is not None:
            self._stream.stop_stream()
            self._stream.close()
            self._stream = None
        if self._audio is not None:
            self._audio.terminate()
            self._audio = None


def open_source(audio_files: Sequence[Path | str] = (), device: int | None = None) -> AudioSource:
    """The WAV files given (in order), else the microphone."""
    if audio_files:
        sources: list[AudioSource] = [WavFileSource(path) for path in audio_files]
        return sources[0] if len(sources) == 1 else ChainSource(sources)
    return MicrophoneSource(device)


@contextmanager
def _quiet_stderr() -> Iterator[None]:
    """Silence the C libraries under PortAudio (ALSA, JACK), which print dozens of
    lines to file descriptor 2 while probing for devices that do not exist."""
    sys.stderr.flush()
    saved = os.dup(2)
    devnull = os.open(os.devnull, os.O_WRONLY)
    try:
        os.dup2(devnull, 2)
        yield
    finally:
        os.dup2(saved, 2)
        os.close(saved)
        os.close(devnull)


def new_portaudio() -> Any:
    """A ``pyaudio.PyAudio`` created without the probing noise; terminate() it when done."""
    pyaudio = _pyaudio()
    with _quiet_stderr():
        return pyaudio.PyAudio()


def _pyaudio() -> Any:
    try:
        import pyaudio
    except ImportError:
        raise AudioError(
            "no_device", "pyaudio is not installed, so there is no microphone input", NO_DEVICE_HINT
        ) from None
    return pyaudio


def _has_input(audio: Any) -> bool:
    return any(
        audio.get_device_info_by_index(index).get("maxInputChannels", 0) > 0
        for index in range(audio.get_device_count())
    )


def has_output_device() -> bool:
    """Whether PortAudio can play sound here."""
    try:
        audio = new_portaudio()
    except AudioError:
        return False
    try:
        return any(
            audio.get_device_info_by_index(index).get("maxOutputChannels", 0) > 0
            for index in range(audio.get_device_count())
        )
    finally:
        audio.terminate()


def read_wav(path: Path | str | BinaryIO) -> tuple[np.ndarray, int]:
    """Mono float32 samples in [-1, 1] and the sample rate of a PCM WAV file."""
    import numpy as np

    try:
        with wave.open(path if not isinstance(path, (str, Path)) else str(path), "rb") as wav:
            rate, width, channels = wav.getframerate(), wav.getsampwidth(), wav.getnchannels()
            raw = wav.readframes(wav.getnframes())
    except FileNotFoundError:
        raise AudioError("bad_audio", f"no such audio file: {path}", "check the path given to --audio") from None
    except (wave.Error, EOFError) as exc:
        raise AudioError(
            "bad_audio", f"{path} is not a PCM WAV file ({exc})", "convert it: sox IN.mp3 -r 16000 -c 1 OUT.wav"
        ) from None
    if width == 1:
        samples = (np.frombuffer(raw, dtype=np.uint8).astype(np.float32) - 128) / 128
    elif width == 2:
        samples = np.frombuffer(raw, dtype="<i2").astype(np.float32) / 32768
    elif width == 4:
        samples = np.frombuffer(raw, dtype="<i4").astype(np.float32) / 2147483648
    else:
        raise AudioError("bad_audio", f"{path}: {8 * width}-bit WAV is not supported", "use 16-bit PCM")
    if channels > 1:
        samples = samples.reshape(-1, channels).mean(axis=1)
    return samples, rate


def resample(samples: np.ndarray, rate_in: int, rate_out: int) -> np.ndarray:
    """Linear-interpolation resampling: enough for speech going into Whisper,
    without a dependency on scipy."""
    import numpy as np

    if rate_in == rate_out or len(samples) == 0:
        return samples
    count = round(len(samples) * rate_out / rate_in)
    positions = np.arange(count) * (rate_in / rate_out)
    as_float = samples.astype(np.float32) / 32768 if samples.dtype == np.int16 else samples.astype(np.float32)
    return np.interp(positions, np.arange(len(samples)), as_float).astype(np.float32)


def to_int16(samples: np.ndarray) -> np.ndarray:
    import numpy as np

    if samples.dtype == np.int16:
        return samples
    return (np.clip(samples, -1.0, 1.0) * 32767).astype(np.int16)


def to_float32(samples: np.ndarray) -> np.ndarray:
    import numpy as np

    return samples.astype(np.float32) / 32768


def write_wav(path: Path | str | BinaryIO, samples: np.ndarray, sample_rate: int = SAMPLE_RATE) -> None:
    """16-bit mono PCM WAV, to a path or a binary file object."""
    with wave.open(path if not isinstance(path, (str, Path)) else str(path), "wb") as wav:
        wav.setnchannels(1)
        wav.setsampwidth(2)
        wav.setframerate(sample_rate)
        wav.writeframes(to_int16(samples).tobytes())
