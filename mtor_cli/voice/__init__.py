"""Voice: audio capture, voice activity detection, the wake word "Computer",
transcription, spoken replies and the ``mtor listen`` loop.

Nothing here imports numpy, torch or faster-whisper at import time.
"""

from __future__ import annotations

from .capture import (
    FRAME_SAMPLES,
    SAMPLE_RATE,
    AudioError,
    AudioSource,
    ChainSource,
    MemorySource,
    MicrophoneSource,
    WavFileSource,
    open_source,
    read_wav,
    write_wav,
)
from .listen import (
    PROMPT,
    Answered,
    Dispatch,
    Dispatched,
    Ended,
    Failed,
    Heard,
    Ignored,
    Listener,
    ListenEvent,
    Reply,
    Said,
    TimedOut,
)
from .request import SpokenRequest, capture_request
from .stt import RealmTranscriber, Transcriber, WhisperTranscriber
from .tts import Speaker, synthesise
from .vad import Utterance, UtteranceDetector, VadConfig
from .wakeword import WakeMatch, is_goodbye, match_wake_word

__all__ = [
    "FRAME_SAMPLES",
    "PROMPT",
    "SAMPLE_RATE",
    "Answered",
    "AudioError",
    "AudioSource",
    "ChainSource",
    "Dispatch",
    "Dispatched",
    "Ended",
    "Failed",
    "Heard",
    "Ignored",
    "ListenEvent",
    "Listener",
    "MemorySource",
    "MicrophoneSource",
    "RealmTranscriber",
    "Reply",
    "Said",
    "Speaker",
    "SpokenRequest",
    "TimedOut",
    "Transcriber",
    "Utterance",
    "UtteranceDetector",
    "VadConfig",
    "WakeMatch",
    "WavFileSource",
    "WhisperTranscriber",
    "capture_request",
    "is_goodbye",
    "match_wake_word",
    "open_source",
    "read_wav",
    "synthesise",
    "write_wav",
]
