"""Voice activity detection on generated speech and noise."""

from __future__ import annotations

import numpy as np

from mtor_cli.voice import SAMPLE_RATE, MemorySource, UtteranceDetector, VadConfig
from mtor_cli.voice.vad import level_db, zero_crossing_rate

from .speech import conversation, quiet, speech_samples


def utterances(source: MemorySource, config: VadConfig | None = None) -> list:
    detector = UtteranceDetector(config)
    found = [u for frame in source.frames() if (u := detector.feed(frame)) is not None]
    last = detector.flush()
    return found + ([last] if last is not None else [])


def test_levels_and_zero_crossings() -> None:
    full = (np.sin(np.linspace(0, 40 * np.pi, 480)) * 32767).astype(np.int16)
    assert -4.0 < level_db(full) < -2.0  # a full-scale sine is -3 dBFS
    assert level_db(np.zeros(480, dtype=np.int16)) == -100.0
    alternating = np.array([1000, -1000] * 240, dtype=np.int16)
    assert zero_crossing_rate(alternating) == 1.0


def test_silence_and_a_quiet_room_are_not_speech() -> None:
    assert utterances(MemorySource(np.zeros(3 * SAMPLE_RATE, dtype=np.int16))) == []
    assert utterances(MemorySource(quiet(3.0, noise_db=-50.0))) == []


def test_a_loud_hiss_does_not_start_an_utterance() -> None:
    # Broadband noise 12 dB above a quiet floor: many zero crossings, no voice.
    room = np.concatenate([quiet(1.0, noise_db=-65.0), quiet(1.0, noise_db=-42.0, seed=1)])
    assert utterances(MemorySource(room)) == []


def test_a_pause_between_phrases_splits_them_and_short_gaps_do_not() -> None:
    found = utterances(conversation("Computer", 1.2, "what time is it"))
    assert len(found) == 2
    first, second = found
    assert 0.3 < first.start_s < 0.7
    assert first.end_s < second.start_s
    assert abs(first.duration_s - len(speech_samples("Computer")) / SAMPLE_RATE) < 0.6

    joined = utterances(conversation("Computer", 0.3, "what time is it"))
    assert len(joined) == 1


def test_an_utterance_still_open_when_the_audio_ends_is_kept() -> None:
    source = MemorySource(np.concatenate([quiet(0.5), speech_samples("hello there")]))
    found = utterances(source)
    assert len(found) == 1 and found[0].duration_s > 0.5


def test_a_click_is_too_short_to_be_speech() -> None:
    click = np.concatenate([quiet(1.0), (np.ones(1600) * 20000).astype(np.int16), quiet(1.0)])
    assert utterances(MemorySource(click)) == []
