"""Simon Willison's `llm` CLI as a second real client, configured the way its docs say:
a model in ``extra-openai-models.yaml`` pointing at the realm, the key in ``keys.json``."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account

from mtor_cli.client import http_url
from tests.broker.openai_api.conftest import echo_realm, new_key
from tests.support.realm import ThreadRealm


@pytest.fixture(scope="module")
def realm(module_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadRealm]:
    r = echo_realm(tmp_path_factory.mktemp("realm") / "journal.db")
    try:
        yield r
    finally:
        r.stop()


def llm_home(tmp_path: Path, realm: ThreadRealm) -> Path:
    home = tmp_path / "llm"
    home.mkdir()
    (home / "extra-openai-models.yaml").write_text(
        "- model_id: realm-echo\n"
        "  model_name: slow-echo\n"
        f"  api_base: {http_url(realm.url, '/v1')}\n"
        "  api_key_name: mtor\n"
    )
    (home / "keys.json").write_text(json.dumps({"mtor": new_key(realm.url, Account.create())["secret"]}))
    return home


def test_llm_streams_an_answer_from_the_realm(realm: ThreadRealm, tmp_path: Path) -> None:
    env = {**os.environ, "LLM_USER_PATH": str(llm_home(tmp_path, realm)), "PYTHONUNBUFFERED": "1"}
    proc = subprocess.Popen(
        [sys.executable, "-m", "llm", "-m", "realm-echo", "one two three four five six seven eight"],
        stdout=subprocess.PIPE, stderr=subprocess.PIPE, env=env,
    )
    assert proc.stdout is not None and proc.stderr is not None
    try:
        first = proc.stdout.read(4)
        # The first word is on the terminal while the realm is still sending the rest.
        assert first == b"one " and proc.poll() is None, proc.stderr.read().decode()
        rest = proc.stdout.read()
        assert proc.wait(30) == 0, proc.stderr.read().decode()
    finally:
        if proc.poll() is None:
            proc.kill()
            proc.wait(5)
    assert (first + rest).decode().strip() == "one two three four five six seven eight"
    # llm logged the exchange, with the usage the realm reported.
    logs = subprocess.run([sys.executable, "-m", "llm", "logs", "--json", "-n", "1"], env=env,
                          capture_output=True, text=True, check=True)
    (entry,) = json.loads(logs.stdout)
    assert entry["model"] == "realm-echo" and entry["response"].strip().endswith("eight")
    assert entry["input_tokens"] == 8 and entry["output_tokens"] == 8
