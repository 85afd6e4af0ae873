"""/openapi.json describes what the handlers do: schemathesis against a running realm finds no
server error and no answer that breaks the schema."""

from __future__ import annotations

import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import msgspec
import pytest
from eth_account import Account

from broker.openai_api import schema as S
from mtor_cli.client import http_url
from tests.broker.openai_api.conftest import echo_realm, new_key
from tests.support.realm import ThreadRealm, get_json
from worker.backends.base import Device
from worker.backends.tts import TTSBackend

# 503 is the documented "no connected worker serves the model now" (this realm draws no
# images); any other 5xx fails the run.
CONFIG = """
[checks.not_a_server_error]
expected-statuses = ["2xx", "3xx", "4xx", "503"]
"""
EXAMPLES = 50  # per operation: enough for successful streams to be checked event by event (~20 s)


@pytest.fixture(scope="module")
def realm(module_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadRealm]:
    r = echo_realm(tmp_path_factory.mktemp("realm") / "journal.db")
    try:
        r.add_worker([TTSBackend(None, Device())], name="tts")
        r.wait_workers(2)
        yield r
    finally:
        r.stop()


def test_the_document_is_made_of_the_handlers_types_with_live_models(realm: ThreadRealm) -> None:
    doc = get_json(realm.url, "/openapi.json")
    assert doc["openapi"] == "3.1.0"
    assert set(doc["paths"]) == {
        "/v1/models", "/v1/models/{model}", "/v1/chat/completions", "/v1/completions", "/v1/images/generations",
        "/v1/audio/speech", "/v1/audio/transcriptions", "/v1/embeddings",
    }
    schemas = doc["components"]["schemas"]
    _, generated = msgspec.json.schema_components(
        [S.ChatCompletionRequest], ref_template="#/components/schemas/{name}"
    )
    request = dict(schemas["ChatCompletionRequest"])
    assert request["properties"].pop("model")["examples"] == ["echo", "slow-echo"]
    assert request["properties"] == {
        k: v for k, v in generated["ChatCompletionRequest"]["properties"].items() if k != "model"
    }
    assert schemas["SpeechRequest"]["properties"]["model"]["examples"] == ["espeak-ng"]
    assert "examples" not in schemas["ImageRequest"]["properties"]["model"]  # no imagine worker here
    assert "examples" not in schemas["EmbeddingRequest"]["properties"]["model"]
    assert schemas["EmbeddingsResponse"]["properties"]["data"]["items"] == {"$ref": "#/components/schemas/Embedding"}


def test_schemathesis_finds_no_server_error_and_no_answer_off_the_schema(realm: ThreadRealm, tmp_path: Path) -> None:
    secret = new_key(realm.url, Account.create())["secret"]
    config = tmp_path / "schemathesis.toml"
    config.write_text(CONFIG)
    run = subprocess.run(
        [sys.executable, "-m", "schemathesis.cli", "--config-file", str(config), "run",
         http_url(realm.url, "/openapi.json"), "-H", f"Authorization: Bearer {secret}",
         "--checks", "all",
         # Schema-valid requests the realm still refuses with 400 are expected: whether the
         # last message is the user's, a voice or an audio file is the worker's to judge.
         "--exclude-checks", "positive_data_acceptance",
         "--max-examples", str(EXAMPLES), "--seed", "16", "--request-timeout", "30", "--no-color"],
        capture_output=True, text=True, timeout=240, cwd=tmp_path,  # its cache folder goes there
    )
    assert run.returncode == 0, run.stdout[-6000:]
    assert " passed" in run.stdout and "failures" not in run.stdout.split("SUMMARY")[-1]
