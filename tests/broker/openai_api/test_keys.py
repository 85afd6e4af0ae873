"""`mtor keys create / list / revoke` against a realm, and what a key then opens or no longer opens."""

from __future__ import annotations

import hashlib
import json
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from typer.testing import CliRunner

from broker.openai_api import keys_path
from mtor_cli.app import build_app
from mtor_cli.client import http_url
from tests.broker.openai_api.conftest import echo_realm, openai_client
from tests.support.realm import ThreadRealm, wait_until


@pytest.fixture(scope="module")
def realm(module_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadRealm]:
    r = echo_realm(tmp_path_factory.mktemp("realm") / "journal.db")
    try:
        yield r
    finally:
        r.stop()


def mtor(*args: str) -> Any:
    result = CliRunner().invoke(build_app(), list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def create(realm: ThreadRealm, *extra: str) -> dict[str, Any]:
    res = mtor("keys", "create", "--broker", realm.url, "--json", *extra)
    assert res.exit_code == 0, res.stderr
    return json.loads(res.stdout)  # type: ignore[no-any-return]


def test_create_shows_the_secret_once_and_the_realm_keeps_only_its_hash(realm: ThreadRealm) -> None:
    made = create(realm, "--name", "laptop")
    secret = made["secret"]
    assert secret.startswith("sk-mtor-") and len(secret) > 40
    assert made["base_url"] == http_url(realm.url, "/v1")
    assert made["name"] == "laptop" and made["paid"] is False and made["limit"] is None
    db = keys_path(realm.config.db_path)
    stored = b"".join(p.read_bytes() for p in db.parent.glob(db.name + "*"))
    assert secret.encode() not in stored
    assert hashlib.sha256(secret.encode()).hexdigest().encode() in stored
    listed = json.loads(mtor("keys", "list", "--broker", realm.url, "--json").stdout)
    (row,) = [k for k in listed["keys"] if k["id"] == made["id"]]
    assert "secret" not in row and row["key"] == secret[:12] + "…"
    assert row["address"] == made["address"] == listed["address"]
    # It works at once, for the address that made it.
    answer = openai_client(realm.url, secret).chat.completions.create(
        model="echo", messages=[{"role": "user", "content": "it works"}]
    )
    assert answer.choices[0].message.content == "it works"


def test_create_for_people_prints_the_key_and_how_to_use_it(realm: ThreadRealm) -> None:
    res = mtor("keys", "create", "--broker", realm.url)
    assert res.exit_code == 0, res.stderr
    assert res.stdout.strip().startswith("sk-mtor-") and len(res.stdout.strip().splitlines()) == 1
    assert f"OPENAI_BASE_URL={http_url(realm.url, '/v1')}" in res.stderr
    assert "free realm: nothing is charged" in res.stderr
    table = mtor("keys", "list", "--broker", realm.url)
    assert table.exit_code == 0 and res.stdout.strip()[:12] in table.stdout


def test_a_revoked_key_ends_its_running_request_and_opens_nothing(realm: ThreadRealm) -> None:
    made = create(realm)
    client = openai_client(realm.url, made["secret"])
    seen: list[str] = []
    failure: list[BaseException] = []
    started = threading.Event()

    def listen() -> None:
        prompt = " ".join(f"w{i}" for i in range(40))  # 6 s of slow echo
        try:
            for chunk in client.chat.completions.create(
                model="slow-echo", messages=[{"role": "user", "content": prompt}], stream=True
            ):
                seen.append(chunk.choices[0].delta.content or "")
                started.set()
        except openai.APIError as exc:
            failure.append(exc)

    thread = threading.Thread(target=listen)
    thread.start()
    assert started.wait(10)
    res = mtor("keys", "revoke", made["id"], "--broker", realm.url, "--json")
    assert res.exit_code == 0, res.stderr
    assert json.loads(res.stdout)["requests_ended"] == 1
    thread.join(10)
    assert not thread.is_alive()
    (err,) = failure
    assert "revoked" in str(err)
    assert len("".join(seen).split()) < 40
    with pytest.raises(openai.AuthenticationError) as refused:
        client.models.list()
    assert refused.value.body["code"] == "revoked_api_key"
    listed = json.loads(mtor("keys", "list", "--broker", realm.url, "--json").stdout)
    assert made["id"] not in {k["id"] for k in listed["keys"]}


def test_only_the_owner_can_revoke_a_key(realm: ThreadRealm, tmp_path: Path) -> None:
    made = create(realm)
    other = mtor("keys", "revoke", made["id"], "--broker", realm.url, "--key", str(tmp_path / "other.json"))
    assert other.exit_code == 1
    assert "[unknown_key]" in other.stderr
    wait_until(lambda: openai_client(realm.url, made["secret"]).models.list(), 5, "the key to still work")


def test_a_limit_must_be_an_amount(realm: ThreadRealm) -> None:
    res = mtor("keys", "create", "--broker", realm.url, "--limit", "lots")
    assert res.exit_code == 2 and "[usage]" in res.stderr
