"""Media backends end to end: `mtor ask` -> broker -> worker -> tiny models -> back.

One realm (broker + one worker serving imagine, vision, speech and tts) per
module. Each backend is a real subclass that counts its model calls, so the
bad-input tests can show that no model ran.
"""

from __future__ import annotations

import base64
import io
import json
import os
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import numpy as np
import pytest
from eth_account import Account
from PIL import Image
from typer.testing import CliRunner

from broker.protocol import Attachment, Progress, Result, SubmitQuery
from mtor_cli.app import build_app
from mtor_cli.client import RealmClient, RealmError, new_guid
from tests.support.realm import ThreadRealm, wait_until, workers
from tests.support.tiny_media_models import png_bytes
from worker.backends.base import Device
from worker.backends.imagine import ImagineBackend
from worker.backends.stt import SpeechBackend
from worker.backends.tts import TTSBackend
from worker.backends.vision import VisionBackend

MAX_IMAGE_BYTES = 64 * 1024


class CountingImagine(ImagineBackend):
    calls = 0

    def _draw(self, *args: Any) -> Any:
        self.calls += 1
        return super()._draw(*args)


class CountingVision(VisionBackend):
    calls = 0

    def _generate(self, *args: Any) -> Any:
        self.calls += 1
        return super()._generate(*args)


class CountingSpeech(SpeechBackend):
    calls = 0

    def _transcribe(self, *args: Any) -> Any:
        self.calls += 1
        return super()._transcribe(*args)


@pytest.fixture(scope="module")
def realm(
    module_home: Path, tmp_path_factory: pytest.TempPathFactory, diffusion_dir: Path, captioner_dir: Path
) -> Iterator[tuple[ThreadRealm, dict[str, Any]]]:
    cpu = Device()
    backends = {
        "imagine": CountingImagine(str(diffusion_dir), cpu, preview_every=2),
        "vision": CountingVision(str(captioner_dir), cpu, max_image_bytes=MAX_IMAGE_BYTES),
        "speech": CountingSpeech(None, cpu, cpu_threads=1),
        "tts": TTSBackend(None, cpu),
    }
    with ThreadRealm(tmp_path_factory.mktemp("realm") / "journal.db") as r:
        r.add_worker(backends.values(), slots=2, name="media")
        wait_until(lambda: workers(r.url, "speech"), 120, "the media worker to register")
        yield r, backends


def mtor(*args: str) -> Any:
    result = CliRunner().invoke(build_app(), list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def noise_png(side: int) -> bytes:
    buf = io.BytesIO()
    Image.frombytes("RGB", (side, side), os.urandom(side * side * 3)).save(buf, format="PNG")
    return buf.getvalue()


def test_workers_endpoint_lists_media_capabilities(realm: tuple[ThreadRealm, dict[str, Any]]) -> None:
    r, _ = realm
    (row,) = workers(r.url)
    caps = {c["intent"]: c for c in row["capabilities"]}
    assert set(caps) == {"imagine", "vision", "speech", "tts"}
    assert caps["imagine"]["info"]["size"] == "128x128"  # the tiny pipeline's native size
    # The declared parameters, advertised as a JSON Schema: what `validate` checks.
    steps = caps["imagine"]["params"]["properties"]["steps"]
    assert (steps["type"], steps["minimum"], steps["maximum"], steps["default"]) == ("integer", 1, 150, 25)
    assert caps["imagine"]["params"]["additionalProperties"] is False
    assert caps["speech"]["models"] == ["whisper-tiny.en"]


def test_imagine_saves_a_png_at_the_requested_size(realm: Any, tmp_path: Path) -> None:
    r, _ = realm
    out = tmp_path / "mountain.png"
    res = mtor(
        "ask", "--broker", r.url, "--intent", "imagine", "--steps", "2", "--size", "64x48",
        "--seed", "7", "--negative", "blurry", "--out", str(out), "a neon mountain",
    )
    assert res.exit_code == 0, res.stderr
    assert str(out) in res.stdout
    with Image.open(out) as img:
        assert img.format == "PNG" and img.size == (64, 48)


async def test_imagine_streams_one_progress_event_per_step_with_previews(realm: Any) -> None:
    r, _ = realm
    async with RealmClient(r.url, Account.create()) as client:
        query = SubmitQuery(
            guid=new_guid(), prompt="a purple sky", intent="imagine", params={"steps": 3, "size": "32x32", "seed": 1}
        )
        events = [e async for e in client.submit(query)]
    progress = [e for e in events if isinstance(e, Progress)]
    assert [(e.step, e.total) for e in progress] == [(1, 3), (2, 3), (3, 3)]
    # preview_every=2: a rough picture from the latents (32 px / VAE factor 2) mid-way only.
    assert [e.preview is not None for e in progress] == [False, True, False]
    preview = progress[1].preview
    assert preview.mime == "image/png"
    assert Image.open(io.BytesIO(base64.b64decode(preview.data))).size == (16, 16)
    result = events[-1]
    assert isinstance(result, Result) and result.usage.steps == 3
    (att,) = result.attachments
    assert att.mime == "image/png"
    assert Image.open(io.BytesIO(base64.b64decode(att.data))).size == (32, 32)


def test_imagine_same_seed_same_picture(realm: Any, tmp_path: Path) -> None:
    r, _ = realm
    paths = [tmp_path / "a.png", tmp_path / "b.png", tmp_path / "c.png"]
    for path, seed in zip(paths, ("11", "11", "12"), strict=False):
        res = mtor("ask", "--broker", r.url, "--intent", "imagine", "--steps", "2", "--size", "32x32",
                   "--seed", seed, "--out", str(path), "a cat")
        assert res.exit_code == 0, res.stderr
    a, b, c = (np.asarray(Image.open(p), dtype=np.int16) for p in paths)
    # Same seed: the same picture, up to float rounding between CPU thread splits.
    assert np.abs(a - b).max() <= 2
    assert np.abs(a - c).mean() > 10


def test_vision_captions_an_image_routed_by_the_question(realm: Any, tmp_path: Path) -> None:
    r, backends = realm
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(48, 40))
    before = backends["vision"].calls
    res = mtor("ask", "--broker", r.url, "--json", "--image", str(photo), "what is in this picture?")
    assert res.exit_code == 0, res.stderr
    answer = json.loads(res.stdout)
    assert answer["intent"] == "vision"
    assert answer["text"].strip()
    assert answer["usage"]["images"] == 1
    assert backends["vision"].calls == before + 1


def test_speech_transcribes_espeak_audio(realm: Any, speech_wav: Path) -> None:
    r, _ = realm
    res = mtor("ask", "--broker", r.url, "--json", "--intent", "speech", "--audio", str(speech_wav))
    assert res.exit_code == 0, res.stderr
    answer = json.loads(res.stdout)
    assert "mountain" in answer["text"].lower()
    with wave.open(str(speech_wav)) as w:
        seconds = w.getnframes() / w.getframerate()
    assert answer["usage"]["audio_seconds"] == int(seconds) + 1


def test_streamed_transcript_and_caption_match_their_results(realm: Any, speech_wav: Path, tmp_path: Path) -> None:
    """Streamed tokens join to exactly the result text, so the CLI prints each answer once."""
    r, _ = realm
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(48, 40))
    for argv in (["--intent", "speech", "--audio", str(speech_wav)], ["--image", str(photo), "what is in this picture?"]):
        res = mtor("ask", "--broker", r.url, *argv)
        assert res.exit_code == 0, res.stderr
        assert "answer changed" not in res.stderr
        (line,) = res.stdout.strip().splitlines()
        assert line == line.strip() and line


def test_tts_returns_a_playable_wav(realm: Any, tmp_path: Path) -> None:
    r, _ = realm
    out = tmp_path / "reply.wav"
    res = mtor("ask", "--broker", r.url, "--intent", "tts", "--out", str(out), "hello from the realm")
    assert res.exit_code == 0, res.stderr
    with wave.open(str(out)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        assert 0.5 < w.getnframes() / w.getframerate() < 5.0


# --- bad input: refused with a clear error before any model runs -------------------------


def _write(tmp_path: Path, name: str, data: bytes) -> str:
    path = tmp_path / name
    path.write_bytes(data)
    return str(path)


BAD_INPUTS: list[tuple[str, Any, str, str]] = [
    # (case, argv builder, backend whose model must not run, what the error says)
    (
        "corrupt image",
        lambda t: ["--intent", "vision", "--image", _write(t, "cut.png", noise_png(64)[:4000]), "what?"],
        "vision",
        "cut.png is corrupt",
    ),
    (
        "non-image file",
        lambda t: ["--intent", "vision", "--image", _write(t, "notes.txt", b"shopping list: milk\n"), "what?"],
        "vision",
        "notes.txt is not an image",
    ),
    (
        "oversized image",
        lambda t: ["--intent", "vision", "--image", _write(t, "big.png", noise_png(200)), "what?"],
        "vision",
        "over the 64 KiB limit",
    ),
    (
        "non-audio file",
        lambda t: ["--intent", "speech", "--audio", _write(t, "photo.png", png_bytes())],
        "speech",
        "photo.png is not an audio file",
    ),
    (
        "unsupported size",
        lambda t: ["--intent", "imagine", "--size", "100x100", "a cat"],
        "imagine",
        "size 100x100 is not supported",
    ),
    (
        "steps out of range",
        lambda t: ["--intent", "imagine", "--steps", "500", "a cat"],
        "imagine",
        "steps=500 is out of range",
    ),
]


@pytest.mark.parametrize(("case", "argv", "backend", "says"), BAD_INPUTS, ids=[c[0] for c in BAD_INPUTS])
def test_bad_input_is_refused_before_the_model_runs(
    realm: Any, tmp_path: Path, case: str, argv: Any, backend: str, says: str
) -> None:
    r, backends = realm
    before = backends[backend].calls
    res = mtor("ask", "--broker", r.url, *argv(tmp_path))
    assert res.exit_code == 1
    assert says in res.stderr
    assert "hint:" in res.stderr
    assert backends[backend].calls == before


async def test_bad_input_error_carries_the_stable_code(realm: Any) -> None:
    r, _ = realm
    async with RealmClient(r.url, Account.create()) as client:
        with pytest.raises(RealmError) as bad_image:
            await client.ask(
                "what?", intent="vision", attachments=[Attachment(kind="image", data=base64.b64encode(b"nope").decode())]
            )
        with pytest.raises(RealmError) as bad_steps:
            await client.ask("a cat", intent="imagine", params={"steps": 0})
    for err, code in ((bad_image.value, "bad_attachment"), (bad_steps.value, "bad_params")):
        assert code in (err.code, err.detail.get("worker_code"))


def test_backend_exception_fails_the_job_and_the_worker_keeps_serving(realm: Any, tmp_path: Path) -> None:
    r, _ = realm
    photo = _write(tmp_path, "photo.png", png_bytes())
    # The tiny captioner's GPT-2 decoder has 128 positions: asking for 200 new
    # tokens passes validation but breaks inside generate().
    res = mtor("ask", "--broker", r.url, "--intent", "vision", "--image", photo, "--param", "max_tokens=200", "what?")
    assert res.exit_code == 1
    assert "vision backend error" in res.stderr and "[worker_failed]" in res.stderr
    res = mtor("ask", "--broker", r.url, "--intent", "vision", "--image", photo, "what?")
    assert res.exit_code == 0, res.stderr
    assert res.stdout.strip()
    (row,) = workers(r.url)
    assert {c["intent"] for c in row["capabilities"]} == {"imagine", "vision", "speech", "tts"}
