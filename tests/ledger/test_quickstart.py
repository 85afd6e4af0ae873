"""The Quickstart on the embedded realm: a fresh user's first `mtor ask` is paid from the
dev realm's welcome grant (the client signed its spending authorisation by itself),
recorded in the journal, escrowed and redeemed on the embedded chain, and the worker claims."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.realm import mtor_command, process_env


@pytest.fixture
def realm_env(tmp_path: Path, tiny_chat_model: Path) -> Iterator[dict[str, str]]:
    env = process_env(tmp_path / "home", MTOR_DEFAULT_CHAT_MODEL=str(tiny_chat_model), HF_HUB_OFFLINE="1")
    yield env
    subprocess.run(mtor_command("realm", "stop"), env=env, capture_output=True, timeout=60)


def run(env: dict[str, str], *args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(mtor_command(*args), env=env, capture_output=True, text=True, timeout=300)


def test_a_fresh_users_first_ask_is_paid_by_the_welcome_grant(realm_env: dict[str, str]) -> None:
    asked = run(realm_env, "ask", "--json", "--temperature", "0", "--max-tokens", "8", "Computer, tell me a joke")
    assert asked.returncode == 0, asked.stderr
    cost = int(json.loads(asked.stdout)["cost"])
    assert cost > 0
    grant = 100 * 10**18

    history = json.loads(run(realm_env, "ledger", "history", "--json").stdout)
    kinds = [t["kind"] for t in history["transactions"]]
    assert [k for k in kinds if k in ("welcome", "hold", "capture")] == ["capture", "hold", "welcome"], kinds
    assert set(kinds) <= {"welcome", "hold", "capture", "welcome_deposit", "welcome_escrowed"}  # the upkeep escrows
    [welcome] = [t for t in history["transactions"] if t["kind"] == "welcome"]
    assert welcome["amount"] == grant

    worker_key = Path(realm_env["MTOR_HOME"]) / "data" / "realm" / "worker-key.json"
    settled = run(realm_env, "ledger", "settle", "--json")
    assert settled.returncode == 0, settled.stderr
    # the user's and the worker's commands ask the embedded realm, as they would any realm
    wallet = run(realm_env, "wallet", "--json")
    assert wallet.returncode == 0, wallet.stderr
    info = json.loads(wallet.stdout)
    assert int(info["available"]) == grant - cost
    assert info["chain"]["name"] == "embedded"
    assert (int(info["chain"]["deposit"]), int(info["chain"]["spent"])) == (grant - cost, cost)  # escrowed, redeemed
    earnings = json.loads(run(realm_env, "worker", "earnings", "--key", str(worker_key), "--json").stdout)
    assert int(earnings["claimable"]) == cost - cost // 10
    claimed = run(realm_env, "worker", "earnings", "claim", "--key", str(worker_key), "--json")
    assert claimed.returncode == 0, claimed.stderr
    assert int(json.loads(claimed.stdout)["amount"]) == cost - cost // 10
    audit = run(realm_env, "ledger", "audit")
    assert audit.returncode == 0 and "audit clean" in audit.stdout, audit.stdout
