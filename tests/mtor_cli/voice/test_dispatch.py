"""What a spoken session shows and says for a result that carries files."""

from __future__ import annotations

import base64
from pathlib import Path

from broker.protocol import Attachment, Result
from mtor_cli.voice.dispatch import reply_of
from mtor_cli.voice.tts import synthesise


def test_an_image_answer_is_saved_and_announced(tmp_path: Path) -> None:
    png = b"\x89PNG\r\n\x1a\n" + b"\x00" * 32
    result = Result(
        guid="0123456789abcdef",
        intent="imagine",
        attachments=[Attachment(kind="image", data=base64.b64encode(png).decode(), mime="image/png")],
    )
    reply = reply_of(result, tmp_path / "out")
    assert reply.files == [tmp_path / "out" / "mtor-01234567-1.png"]
    assert reply.files[0].read_bytes() == png
    assert reply.text == "Here is an image, saved as mtor-01234567-1.png."
    assert (reply.intent, reply.guid) == ("imagine", "0123456789abcdef")


def test_a_text_answer_is_said_as_it_is_and_audio_is_kept(tmp_path: Path) -> None:
    wav = synthesise("hello")
    result = Result(
        guid="fedcba9876543210",
        intent="tts",
        text="  hello  ",
        attachments=[Attachment(kind="audio", data=base64.b64encode(wav).decode(), mime="audio/wav")],
    )
    reply = reply_of(result, tmp_path)
    assert reply.text == "hello"
    assert [f.name for f in reply.files] == ["mtor-fedcba98-1.wav"]
    assert reply.files[0].read_bytes() == wav
