"""Spoken replies: text -> speech with espeak-ng (pyttsx3 where espeak-ng is
not installed), played through PortAudio or saved as WAV files."""

from __future__ import annotations

import shutil
import subprocess
import tempfile
import wave
from pathlib import Path
from typing import Any

from .capture import AudioError, has_output_device, new_portaudio

NO_OUTPUT_HINT = "no speakers here? save the spoken replies instead: --speak-to DIR"


def synthesise(text: str, *, voice: str = "en", words_per_minute: int = 150, word_gap: int = 0) -> bytes:
    """A WAV file (bytes) of ``text`` spoken."""
    espeak = shutil.which("espeak-ng")
    if espeak is None:
        return _pyttsx3_wav(text, words_per_minute)
    # Written to a file, not --stdout: on a pipe espeak-ng cannot seek back to
    # fill in the WAV header's length, and readers then see a bogus size.
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "speech.wav"
        done = subprocess.run(
            [espeak, "-v", voice, "-s", str(words_per_minute), "-g", str(word_gap), "-w", str(path), "--", text],
            capture_output=True,
            check=False,
        )
        if done.returncode != 0 or not path.exists():
            raise AudioError(
                "tts_failed",
                f"espeak-ng failed: {done.stderr.decode(errors='replace').strip()}",
                "check the voice with `espeak-ng --voices`",
            )
        return path.read_bytes()


def _pyttsx3_wav(text: str, words_per_minute: int) -> bytes:
    try:
        import pyttsx3
    except ImportError:
        raise AudioError(
            "tts_failed", "no speech synthesiser: neither espeak-ng nor pyttsx3 is installed",
            "install espeak-ng (apt install espeak-ng) or pip install pyttsx3",
        ) from None
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "reply.wav"
        engine = pyttsx3.init()
        engine.setProperty("rate", words_per_minute)
        engine.save_to_file(text, str(path))
        engine.runAndWait()
        return path.read_bytes()


def play_wav(data: bytes) -> None:
    """Play WAV bytes on the default output device (blocks until done)."""
    import io

    audio = new_portaudio()
    try:
        with wave.open(io.BytesIO(data), "rb") as wav:
            try:
                stream = audio.open(
                    format=audio.get_format_from_width(wav.getsampwidth()),
                    channels=wav.getnchannels(),
                    rate=wav.getframerate(),
                    output=True,
                )
            except (OSError, ValueError) as exc:
                raise AudioError("no_device", f"cannot open the speakers: {exc}", NO_OUTPUT_HINT) from None
            try:
                stream.write(wav.readframes(wav.getnframes()))
            finally:
                stream.stop_stream()
                stream.close()
    finally:
        audio.terminate()


class Speaker:
    """Speaks replies aloud (``play``) and/or keeps them as numbered WAVs in ``save_dir``."""

    def __init__(self, *, play: bool = True, save_dir: Path | None = None, voice: str = "en") -> None:
        self.play = play
        self.save_dir = save_dir
        self.voice = voice
        self.saved: list[Path] = []
        if save_dir is not None:
            save_dir.mkdir(parents=True, exist_ok=True)

    def check(self) -> None:
        """Fail now, with one clear error, if replies cannot be played."""
        if self.play and not has_output_device():
            raise AudioError("no_device", "no audio output device: PortAudio sees no speakers", NO_OUTPUT_HINT)

    def speak(self, text: str) -> Path | None:
        data = synthesise(text, voice=self.voice)
        path: Path | None = None
        if self.save_dir is not None:
            path = self.save_dir / f"reply-{len(self.saved) + 1:03d}.wav"
            path.write_bytes(data)
            self.saved.append(path)
        if self.play:
            play_wav(data)
        return path


def wav_samples(data: bytes) -> tuple[Any, int]:
    """Samples (float32) and rate of WAV bytes, e.g. for feeding synthetic speech to a source."""
    import io

    from .capture import read_wav

    return read_wav(io.BytesIO(data))
