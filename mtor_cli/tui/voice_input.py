"""The microphone action: one spoken request, transcribed, becomes a prompt."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

LISTEN_LIMIT_S = 15.0  # stop waiting for speech after this long


class VoiceInput:
    """Captures one utterance (microphone, or WAV files for ``--audio``) and transcribes it.

    Blocking: the app runs :meth:`listen` in a thread. Whisper loads on first use.
    """

    def __init__(self, audio_files: Sequence[Path] = (), device: int | None = None) -> None:
        self.audio_files = list(audio_files)
        self.device = device
        self._transcriber: Any = None

    @property
    def source_name(self) -> str:
        return ", ".join(p.name for p in self.audio_files) if self.audio_files else "the microphone"

    def listen(self, on_level: Callable[[float, bool], None]) -> str | None:
        """The words of one request (wake word removed); None if nothing was said.

        Raises ``mtor_cli.voice.AudioError`` when there is nothing to listen to.
        """
        from mtor_cli.voice import WhisperTranscriber, capture_request, open_source

        if self._transcriber is None:
            self._transcriber = WhisperTranscriber()
        with open_source(self.audio_files, self.device) as source:
            spoken = capture_request(source, self._transcriber, on_level=on_level, max_wait_s=LISTEN_LIMIT_S)
        if spoken is None:
            return None
        return spoken.request.strip() or None
