"""The `openai` package's images, audio and vision calls against workers running tiny real models."""

from __future__ import annotations

import base64
import io
import wave
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from eth_account import Account
from PIL import Image

from tests.broker.openai_api.conftest import new_key, openai_client
from tests.support.realm import ThreadRealm
from tests.support.tiny_media_models import png_bytes
from worker.backends.base import Device
from worker.backends.imagine import ImagineBackend
from worker.backends.stt import SpeechBackend
from worker.backends.tts import TTSBackend
from worker.backends.vision import VisionBackend


@pytest.fixture(scope="module")
def realm(module_home: Path, tmp_path_factory: pytest.TempPathFactory, diffusion_dir: Path,
          captioner_dir: Path) -> Iterator[ThreadRealm]:
    cpu = Device()
    backends = [
        ImagineBackend(str(diffusion_dir), cpu),
        VisionBackend(str(captioner_dir), cpu),
        SpeechBackend(None, cpu, cpu_threads=1),
        TTSBackend(None, cpu),
    ]
    with ThreadRealm(tmp_path_factory.mktemp("realm") / "journal.db") as r:
        r.add_worker(backends, slots=2, name="media")
        r.wait_workers(1, "speech", timeout=120)
        yield r


@pytest.fixture(scope="module")
def client(realm: ThreadRealm) -> Any:
    return openai_client(realm.url, new_key(realm.url, Account.create())["secret"])


@pytest.fixture(scope="module")
def models(client: Any) -> dict[str, str]:
    """The model each intent's worker registered, by intent."""
    return {m.mtor["intents"][0]: m.id for m in client.models.list().data}


def test_models_name_each_media_model_with_its_intent(client: Any, models: dict[str, str], diffusion_dir: Path,
                                                      captioner_dir: Path) -> None:
    assert set(models) == {"imagine", "vision", "speech", "tts"}
    # Local model folders register under their path (hub ids have slashes too): both can be asked for.
    assert models["imagine"].endswith(diffusion_dir.name) and models["vision"].endswith(captioner_dir.name)
    assert (models["speech"], models["tts"]) == ("whisper-tiny.en", "espeak-ng")
    assert client.models.retrieve(models["imagine"]).mtor == {"intents": ["imagine"], "workers": 1}


def test_images_generate_returns_a_base64_png_of_the_size_asked(client: Any, models: dict[str, str]) -> None:
    answer = client.images.generate(
        model=models["imagine"], prompt="a neon mountain", size="32x48", response_format="b64_json",
        extra_body={"steps": 2, "seed": 7},
    )
    (image,) = answer.data
    with Image.open(io.BytesIO(base64.b64decode(image.b64_json))) as png:
        assert png.format == "PNG" and png.size == (32, 48)
    # No model named: any imagine worker draws it.
    assert client.images.generate(prompt="a cat", size="32x32", extra_body={"steps": 1}).data[0].b64_json
    with pytest.raises(openai.BadRequestError) as err:
        client.images.generate(prompt="a cat", n=2)
    assert err.value.body["param"] == "n"
    with pytest.raises(openai.BadRequestError) as err:
        client.images.generate(prompt="a cat", response_format="url")
    assert err.value.body["param"] == "response_format"


def test_speech_returns_a_wav_with_its_content_type(client: Any) -> None:
    raw = client.audio.speech.with_raw_response.create(model="espeak-ng", voice="alloy", input="hello from the realm")
    assert raw.headers["content-type"] == "audio/wav"
    with wave.open(io.BytesIO(raw.content)) as w:
        assert w.getnchannels() == 1 and w.getsampwidth() == 2
        assert 0.5 < w.getnframes() / w.getframerate() < 5.0
    pcm = client.audio.speech.create(model="espeak-ng", voice="en-us", input="hello", response_format="pcm", speed=2.0)
    assert pcm.response.headers["content-type"] == "audio/pcm" and not pcm.read().startswith(b"RIFF")
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.speech.create(model="espeak-ng", voice="alloy", input="hi", response_format="mp3")
    assert err.value.body["param"] == "response_format"


def test_transcriptions_turn_an_uploaded_file_into_text(client: Any, speech_wav: Path) -> None:
    with speech_wav.open("rb") as audio:
        answer = client.audio.transcriptions.create(model="whisper-tiny.en", file=audio, language="en")
    assert "mountain" in answer.text.lower()
    with speech_wav.open("rb") as audio:
        text = client.audio.transcriptions.create(model="whisper-tiny.en", file=audio, response_format="text")
    assert "mountain" in text.lower()
    with pytest.raises(openai.BadRequestError) as err:
        client.audio.transcriptions.create(model="whisper-tiny.en", file=("noise.wav", b"not audio at all"))
    assert err.value.body["code"] == "bad_attachment"


def test_an_image_part_routes_chat_to_the_vision_worker(client: Any, models: dict[str, str]) -> None:
    url = "data:image/png;base64," + base64.b64encode(png_bytes(48, 40)).decode()
    answer = client.chat.completions.create(
        model=models["vision"],
        messages=[{"role": "user", "content": [
            {"type": "text", "text": "what is in this picture?"},
            {"type": "image_url", "image_url": {"url": url}},
        ]}],
    )
    assert answer.choices[0].message.content.strip()
    assert answer.mtor["intent"] == "vision"
    with pytest.raises(openai.BadRequestError) as err:
        client.chat.completions.create(model=models["vision"], messages=[{"role": "user", "content": "no image"}])
    assert "does not answer text" in err.value.body["message"]
