"""Audio sources: WAV files, memory, several files in a row, and no microphone."""

from __future__ import annotations

import wave
from pathlib import Path

import numpy as np
import pytest

from mtor_cli.voice import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    AudioError,
    ChainSource,
    MemorySource,
    MicrophoneSource,
    WavFileSource,
    open_source,
)
from mtor_cli.voice.capture import new_portaudio
from mtor_cli.voice.tts import synthesise


def _has_microphone() -> bool:
    audio = new_portaudio()
    try:
        return any(
            audio.get_device_info_by_index(i).get("maxInputChannels", 0) > 0 for i in range(audio.get_device_count())
        )
    finally:
        audio.terminate()


def test_an_espeak_wav_is_read_as_16khz_frames(tmp_path: Path) -> None:
    path = tmp_path / "hello.wav"
    path.write_bytes(synthesise("hello world"))
    with wave.open(str(path)) as wav:
        seconds = wav.getnframes() / wav.getframerate()
        assert wav.getframerate() == 22050
    source = WavFileSource(path)
    frames = list(source.frames())
    assert all(f.dtype == np.int16 and len(f) == FRAME_SAMPLES for f in frames)
    assert abs(len(frames) * FRAME_SAMPLES / SAMPLE_RATE - seconds) < 0.05
    assert max(int(np.abs(f).max()) for f in frames) > 10_000  # the speech survived resampling


def test_stereo_8bit_is_mixed_down(tmp_path: Path) -> None:
    path = tmp_path / "stereo.wav"
    tone = (np.sin(np.linspace(0, 200 * np.pi, 8000)) * 100 + 128).astype(np.uint8)
    with wave.open(str(path), "wb") as wav:
        wav.setnchannels(2)
        wav.setsampwidth(1)
        wav.setframerate(8000)
        wav.writeframes(np.repeat(tone, 2).tobytes())
    source = WavFileSource(path)
    assert abs(source.duration_s - 1.0) < 0.01
    assert 20_000 < int(np.abs(source.samples).max()) < 26_000


def test_files_in_a_row_are_heard_with_a_pause_between() -> None:
    one = MemorySource(np.full(FRAME_SAMPLES * 2, 1000, dtype=np.int16))
    two = MemorySource(np.full(FRAME_SAMPLES * 3, 2000, dtype=np.int16))
    frames = list(ChainSource([one, two], gap_s=0.3).frames())
    levels = [int(f[0]) for f in frames]
    assert levels == [1000, 1000, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 2000, 2000, 2000]


def test_unreadable_files_are_clear_errors(tmp_path: Path) -> None:
    with pytest.raises(AudioError) as missing:
        open_source([tmp_path / "nope.wav"])
    assert missing.value.code == "bad_audio" and "--audio" in missing.value.hint
    junk = tmp_path / "junk.wav"
    junk.write_text("not audio")
    with pytest.raises(AudioError) as bad:
        WavFileSource(junk)
    assert bad.value.code == "bad_audio" and "sox" in bad.value.hint


@pytest.mark.skipif(_has_microphone(), reason="this machine has a microphone")
def test_no_microphone_is_one_error_with_a_hint(capfd: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(AudioError) as caught:
        MicrophoneSource()
    assert caught.value.code == "no_device"
    assert "--audio FILE" in caught.value.hint
    # PortAudio's probing (ALSA, JACK) must not spill onto the terminal.
    assert capfd.readouterr().err == ""
