"""Decode and validate image and audio attachments before any model runs.

Every failure is a :class:`BadInput` with the stable code ``bad_attachment``
and a hint, so a corrupt upload costs the person an error line, never a model
call. Decoding is cheap next to inference, so backends call these functions in
``validate`` and again in ``run`` rather than keeping decoded data per guid.
"""

from __future__ import annotations

import base64
import binascii
import io
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from broker.protocol import Attachment, Work
from worker.backends.base import BadInput

if TYPE_CHECKING:
    import numpy as np
    from PIL.Image import Image

# base64 inflates by 4/3 and the broker caps a frame at 8 MiB.
MAX_ATTACHMENT_BYTES = 6 * 1024 * 1024
MAX_IMAGE_PIXELS = 4096 * 4096
MAX_AUDIO_SECONDS = 600.0
SAMPLE_RATE = 16_000


def _mib(n: int) -> str:
    return f"{n / (1024 * 1024):.1f} MiB" if n >= 1024 * 1024 else f"{n / 1024:.0f} KiB"


def attachment_of(work: Work, kind: str) -> Attachment:
    """The work's single attachment of ``kind``; BadInput if there is none."""
    found = [a for a in work.attachments if a.kind == kind]
    if not found:
        raise BadInput(
            "bad_attachment",
            f"the {work.intent} intent needs an {kind} attachment",
            f"attach one, e.g. `mtor ask --{kind} FILE ...`",
        )
    return found[0]


def attachment_bytes(att: Attachment, max_bytes: int = MAX_ATTACHMENT_BYTES) -> bytes:
    """Base64-decoded payload, refusing oversize data before decoding all of it."""
    # 3 bytes per 4 base64 characters: refuse before allocating the decoded copy.
    if len(att.data) * 3 // 4 > max_bytes + 3:
        raise BadInput(
            "bad_attachment",
            f"the {att.kind} attachment is {_mib(len(att.data) * 3 // 4)}, over the {_mib(max_bytes)} limit",
            "send a smaller file (downscale the image or trim the audio)",
        )
    try:
        raw = base64.b64decode(att.data, validate=True)
    except (binascii.Error, ValueError):
        raise BadInput(
            "bad_attachment",
            f"the {att.kind} attachment is not valid base64",
            "attachments carry their bytes base64-encoded in `data`",
        ) from None
    if len(raw) > max_bytes:
        raise BadInput(
            "bad_attachment",
            f"the {att.kind} attachment is {_mib(len(raw))}, over the {_mib(max_bytes)} limit",
            "send a smaller file (downscale the image or trim the audio)",
        )
    if not raw:
        raise BadInput("bad_attachment", f"the {att.kind} attachment is empty", "attach a real file")
    return raw


def load_image(
    work: Work,
    *,
    max_bytes: int = MAX_ATTACHMENT_BYTES,
    max_pixels: int = MAX_IMAGE_PIXELS,
) -> Image:
    """The work's image attachment as a fully decoded RGB PIL image."""
    from PIL import Image as PILImage

    att = attachment_of(work, "image")
    raw = attachment_bytes(att, max_bytes)
    name = att.name or "the image"
    try:
        probe = PILImage.open(io.BytesIO(raw))
        width, height = probe.size
    except PILImage.DecompressionBombError as exc:
        # PIL itself refuses, at open(), a canvas far over its own limit.
        raise BadInput("bad_attachment", f"{name} is too large: {exc}", "downscale the image") from None
    except Exception:
        # Malformed headers surface as UnidentifiedImageError, OSError, SyntaxError, struct.error, EOFError...
        raise BadInput(
            "bad_attachment",
            f"{name} is not an image PIL can read",
            "send a PNG, JPEG, WebP, GIF or BMP file",
        ) from None
    # Check the header's size before decoding: a small file can claim a huge canvas.
    if width * height > max_pixels:
        raise BadInput(
            "bad_attachment",
            f"{name} is {width}x{height}, over the {max_pixels} pixel limit",
            "downscale the image",
        )
    try:
        probe.load()
        return probe.convert("RGB")
    except Exception as exc:  # truncated or corrupt pixel data, in whatever type the codec raises
        raise BadInput(
            "bad_attachment", f"{name} is corrupt: {exc}", "re-export or re-download the image"
        ) from None


@dataclass(frozen=True)
class Audio:
    """Mono float32 samples at 16 kHz (what Whisper wants) and their duration."""

    samples: np.ndarray
    seconds: float


def load_audio(
    work: Work,
    *,
    max_bytes: int = MAX_ATTACHMENT_BYTES,
    max_seconds: float = MAX_AUDIO_SECONDS,
) -> Audio:
    """The work's audio attachment decoded (any format PyAV/ffmpeg reads) to 16 kHz mono."""
    att = attachment_of(work, "audio")
    raw = attachment_bytes(att, max_bytes)
    name = att.name or "the audio"
    samples = _decode_audio(raw, name)
    seconds = len(samples) / SAMPLE_RATE
    if seconds <= 0.0:
        raise BadInput("bad_attachment", f"{name} holds no audio samples", "record some sound")
    if seconds > max_seconds:
        raise BadInput(
            "bad_attachment",
            f"{name} is {seconds:.0f} s long, over the {max_seconds:.0f} s limit",
            "split the recording",
        )
    return Audio(samples=samples, seconds=seconds)


def _decode_audio(raw: bytes, name: str) -> Any:
    import av
    import numpy as np

    try:
        container = av.open(io.BytesIO(raw), mode="r")
    except Exception as exc:  # FFmpegError subclasses mostly; odd files raise others
        raise BadInput(
            "bad_attachment",
            f"{name} is not an audio file: {exc}",
            "send WAV, FLAC, MP3, OGG or M4A audio",
        ) from None
    with container:
        if not container.streams.audio:
            raise BadInput(
                "bad_attachment",
                f"{name} is not an audio file: it has no audio stream",
                "send WAV, FLAC, MP3, OGG or M4A audio",
            )
        resampler = av.AudioResampler(format="s16", layout="mono", rate=SAMPLE_RATE)
        chunks: list[Any] = []
        try:
            for frame in container.decode(audio=0):
                for out in resampler.resample(frame):
                    chunks.append(out.to_ndarray().reshape(-1))
            for out in resampler.resample(None):
                chunks.append(out.to_ndarray().reshape(-1))
        except Exception as exc:  # a stream that breaks part-way
            raise BadInput(
                "bad_attachment", f"{name} is corrupt: {exc}", "re-export the recording"
            ) from None
    if not chunks:
        return np.zeros(0, dtype=np.float32)
    return np.concatenate(chunks).astype(np.float32) / 32768.0


def png_attachment(image: Image, name: str = "image.png") -> Attachment:
    buf = io.BytesIO()
    # zlib level 1: ~3x faster than the default 6 for ~10% more bytes; encoding
    # is otherwise the largest share of the realm's per-image overhead.
    image.save(buf, format="PNG", compress_level=1)
    return Attachment(kind="image", data=base64.b64encode(buf.getvalue()).decode(), mime="image/png", name=name)


def wav_attachment(wav: bytes, name: str = "speech.wav") -> Attachment:
    return Attachment(kind="audio", data=base64.b64encode(wav).decode(), mime="audio/wav", name=name)
