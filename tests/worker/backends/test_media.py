"""Attachment decoding: every bad upload is bad_attachment before any model runs."""

from __future__ import annotations

import base64
import io
import os
import struct
import zlib
from pathlib import Path

import pytest
from PIL import Image

from broker.protocol import Attachment, Work
from tests.support.tiny_media_models import png_bytes, speak_wav
from worker.backends.base import BadInput
from worker.media import attachment_bytes, load_audio, load_image, png_attachment


def _work(kind: str, data: bytes, intent: str = "vision", name: str | None = None) -> Work:
    att = Attachment(kind=kind, data=base64.b64encode(data).decode(), name=name)
    return Work(guid="g", intent=intent, attachments=[att])


def _bad(fn, *args, **kwargs) -> BadInput:
    with pytest.raises(BadInput) as info:
        fn(*args, **kwargs)
    assert info.value.code == "bad_attachment"
    assert info.value.hint
    return info.value


def test_png_decodes_to_rgb_at_its_size() -> None:
    img = load_image(_work("image", png_bytes(48, 40)))
    assert img.mode == "RGB" and img.size == (48, 40)


def test_jpeg_with_alpha_free_modes_decode() -> None:
    buf = io.BytesIO()
    Image.new("L", (20, 10), 128).save(buf, format="JPEG")
    assert load_image(_work("image", buf.getvalue())).size == (20, 10)


def test_missing_image_names_the_flag() -> None:
    err = _bad(load_image, Work(guid="g", intent="vision", prompt="what is this?"))
    assert "image" in err.message and "--image" in err.hint


def test_non_image_file_is_refused() -> None:
    err = _bad(load_image, _work("image", b"#!/bin/sh\necho not a picture\n", name="notes.txt"))
    assert "notes.txt" in err.message and "not an image" in err.message


def test_truncated_png_is_corrupt() -> None:
    data = _noise_png(64)
    err = _bad(load_image, _work("image", data[: len(data) // 2]))
    assert "corrupt" in err.message


def _noise_png(side: int) -> bytes:
    """Random pixels: a PNG that does not compress, so its size is predictable."""
    buf = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buf, format="PNG")
    return buf.getvalue()


def test_oversized_image_is_refused_before_decoding() -> None:
    data = _noise_png(64)
    assert len(data) > 10 * 1024
    err = _bad(load_image, _work("image", data), max_bytes=1024)
    assert "over the 1 KiB limit" in err.message


def _png_header_only(width: int, height: int) -> bytes:
    """A PNG whose header claims width x height but which holds no pixel data."""

    def chunk(kind: bytes, body: bytes) -> bytes:
        return struct.pack(">I", len(body)) + kind + body + struct.pack(">I", zlib.crc32(kind + body))

    ihdr = struct.pack(">IIBBBBB", width, height, 8, 2, 0, 0, 0)
    return b"\x89PNG\r\n\x1a\n" + chunk(b"IHDR", ihdr) + chunk(b"IEND", b"")


@pytest.mark.parametrize(
    ("side", "says"),
    [(5000, "5000x5000, over the 16777216 pixel limit"), (30000, "too large: Image size (900000000 pixels)")],
)
def test_header_claiming_a_huge_canvas_is_refused(side: int, says: str) -> None:
    # A decompression bomb: a few bytes that would decode to gigabytes.
    err = _bad(load_image, _work("image", _png_header_only(side, side)))
    assert says in err.message


def test_bad_base64_and_empty_payloads() -> None:
    bad = Work(guid="g", intent="vision", attachments=[Attachment(kind="image", data="@@not base64@@")])
    assert "base64" in _bad(load_image, bad).message
    assert "empty" in _bad(attachment_bytes, Attachment(kind="image", data="")).message


def test_wav_decodes_to_16k_mono_with_duration(tmp_path: Path) -> None:
    wav = speak_wav("hello there", tmp_path / "hello.wav").read_bytes()
    audio = load_audio(_work("audio", wav, intent="speech"))
    assert audio.samples.dtype.name == "float32"
    assert 0.5 < audio.seconds < 3.0
    assert len(audio.samples) == pytest.approx(audio.seconds * 16_000)
    assert float(abs(audio.samples).max()) > 0.01  # real sound, not silence


def test_non_audio_file_is_refused() -> None:
    err = _bad(load_audio, _work("audio", png_bytes(), intent="speech", name="photo.png"))
    assert "photo.png" in err.message


def test_text_file_is_not_audio() -> None:
    _bad(load_audio, _work("audio", b"just some words, no sound at all\n" * 20, intent="speech"))


def test_audio_over_the_length_limit_is_refused(tmp_path: Path) -> None:
    wav = speak_wav("this sentence lasts a couple of seconds", tmp_path / "long.wav").read_bytes()
    err = _bad(load_audio, _work("audio", wav, intent="speech"), max_seconds=1.0)
    assert "over the 1 s limit" in err.message


def test_png_attachment_round_trips() -> None:
    att = png_attachment(Image.new("RGB", (16, 8), (1, 2, 3)))
    assert att.kind == "image" and att.mime == "image/png"
    assert Image.open(io.BytesIO(base64.b64decode(att.data))).size == (16, 8)
