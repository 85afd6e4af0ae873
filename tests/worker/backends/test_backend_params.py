"""Backend parameter checks and the smaller backends' own behaviour, without a realm."""

from __future__ import annotations

import asyncio
import base64
import io
import wave
from pathlib import Path
from typing import Any

import pytest

from broker.protocol import Attachment, Msg, Token, Usage, Work
from tests.support.tiny_media_models import build_vqa, build_whisper, png_bytes, speak_wav
from worker.backends.base import BadInput, Device, Emitter
from worker.backends.imagine import parse_params
from worker.backends.stt import SpeechBackend
from worker.backends.tts import TTSBackend, synthesize, wav_seconds
from worker.backends.vision import VisionBackend


@pytest.mark.parametrize(
    ("params", "width", "height", "steps"),
    [
        ({}, None, None, 25),
        ({"size": "512x768", "steps": 30}, 512, 768, 30),
        ({"width": 256, "height": 128}, 256, 128, 25),
        ({"size": 64}, 64, 64, 25),
        ({"width": 96}, 96, 96, 25),
        ({"steps": "4"}, None, None, 4),
    ],
)
def test_imagine_params_accepted(params: dict[str, Any], width: int | None, height: int | None, steps: int) -> None:
    parsed = parse_params(params)
    assert (parsed.width, parsed.height, parsed.steps) == (width, height, steps)
    assert 0 <= parsed.seed < 2**31  # chosen when absent, reported in the result


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"steps": 0}, "steps=0 is out of range"),
        ({"steps": 151}, "steps=151 is out of range"),
        ({"steps": 2.5}, "steps must be an integer"),
        ({"steps": True}, "steps must be an integer"),
        ({"size": "100x100"}, "size 100x100 is not supported"),
        ({"size": "16x16"}, "size 16x16 is not supported"),
        ({"size": "4096x512"}, "size 4096x512 is not supported"),
        ({"size": "2048x2048"}, "size 2048x2048 is too large"),
        ({"size": "big"}, "size='big' is not WIDTHxHEIGHT"),
        ({"seed": -1}, "seed=-1 is out of range"),
        ({"negative_prompt": 3}, "negative must be text"),
        ({"guidance_scale": 99}, "guidance=99 is out of range"),
        ({"sampler": "euler"}, "unknown imagine parameter(s): sampler"),
    ],
)
def test_imagine_params_refused(params: dict[str, Any], says: str) -> None:
    with pytest.raises(BadInput) as info:
        parse_params(params)
    assert info.value.code == "bad_params"
    assert says in info.value.message
    assert info.value.hint


def test_seed_and_guidance_pass_through() -> None:
    parsed = parse_params({"seed": 42, "negative": "blurry", "guidance": 3})
    assert (parsed.seed, parsed.negative, parsed.guidance) == (42, "blurry", 3.0)


async def _run(backend: Any, work: Work) -> tuple[Any, list[Msg]]:
    sent: list[Msg] = []
    backend.validate(work)
    result = await backend.run(work, Emitter(work.guid, sent.append))
    await asyncio.sleep(0)  # let thread-safe emits land
    return result, sent


@pytest.fixture(scope="module")
def tts() -> TTSBackend:
    backend = TTSBackend(None, Device())
    backend.load()
    return backend


async def test_tts_speaks_with_a_chosen_voice_and_speed(tts: TTSBackend) -> None:
    slow, _ = await _run(tts, Work(guid="a", intent="tts", prompt="one two three four", params={"speed": 100}))
    fast, _ = await _run(
        tts, Work(guid="b", intent="tts", prompt="one two three four", params={"speed": 300, "voice": "en-us+f3"})
    )
    (slow_wav,), (fast_wav,) = slow.attachments, fast.attachments
    assert slow_wav.mime == fast_wav.mime == "audio/wav"
    slow_s = wav_seconds(base64.b64decode(slow_wav.data))
    fast_s = wav_seconds(base64.b64decode(fast_wav.data))
    assert slow_s > 1.5 * fast_s
    assert slow.usage == Usage(characters=18, audio_seconds=int(slow_s) + 1)


@pytest.mark.parametrize(
    ("prompt", "params", "code", "says"),
    [
        ("", {}, "bad_params", "nothing to say"),
        ("x" * 5001, {}, "prompt_too_long", "5001 characters"),
        ("hi", {"voice": "dothraki"}, "bad_params", "espeak-ng has no voice 'dothraki'"),
        ("hi", {"voice": "en; rm -rf /"}, "bad_params", "is not a voice name"),
        ("hi", {"speed": 1000}, "bad_params", "speed=1000 is out of range"),
        ("hi", {"pitch": 3}, "bad_params", "unknown tts parameter(s): pitch"),
    ],
)
def test_tts_refuses_bad_input(tts: TTSBackend, prompt: str, params: dict[str, Any], code: str, says: str) -> None:
    with pytest.raises(BadInput) as info:
        tts.validate(Work(guid="g", intent="tts", prompt=prompt, params=params))
    assert info.value.code == code and says in info.value.message


def test_pyttsx3_engine_writes_a_wav() -> None:
    wav = synthesize("hello there", engine="pyttsx3")
    with wave.open(io.BytesIO(wav)) as w:
        assert w.getnframes() > 1000


async def test_faster_whisper_runs_a_converted_tiny_random_whisper(tmp_path: Path) -> None:
    model = build_whisper(tmp_path / "tiny-whisper", quiet=True)
    assert (model / "model.bin").exists() and (model / "tokenizer.json").exists()
    backend = SpeechBackend(str(model), Device(), cpu_threads=1)
    backend.load()
    wav = speak_wav("hello", tmp_path / "hello.wav").read_bytes()
    work = Work(
        guid="w",
        intent="speech",
        attachments=[Attachment(kind="audio", data=base64.b64encode(wav).decode())],
        params={"beam_size": 1, "language": "en", "temperature": 0},
    )
    result, sent = await _run(backend, work)
    # Whisper forbids ending on the first step, so a quiet model says one token, then stops.
    assert len(result.text) <= 3
    assert result.usage == Usage(audio_seconds=1)
    assert result.model == str(model)
    assert "".join(m.text for m in sent if isinstance(m, Token)) == result.text


@pytest.mark.parametrize(
    ("params", "says"),
    [
        ({"beam_size": 0}, "beam_size=0 is out of range"),
        ({"language": "english"}, "is not a language code"),
        ({"temperature": 2}, "temperature=2 is out of range"),
    ],
)
def test_speech_params_refused(params: dict[str, Any], says: str) -> None:
    backend = SpeechBackend(None, Device())
    with pytest.raises(BadInput) as info:
        backend.validate(Work(guid="g", intent="speech", params=params))
    assert info.value.code == "bad_params" and says in info.value.message


async def test_vision_answers_the_question_with_an_image_text_to_text_model(tmp_path: Path) -> None:
    backend = VisionBackend(str(build_vqa(tmp_path / "tiny-blip")), Device())
    backend.load()
    assert backend.capability().info["questions"] is True
    image = Attachment(kind="image", data=base64.b64encode(png_bytes(40, 40)).decode())
    work = Work(guid="q", intent="vision", prompt="what color is this", attachments=[image])
    result, sent = await _run(backend, work)
    tokens = "".join(m.text for m in sent if isinstance(m, Token))
    assert result.text and tokens == result.text
    # The question went in: [CLS] what color is this [SEP].
    assert result.usage == Usage(prompt_tokens=6, completion_tokens=8, images=1)
