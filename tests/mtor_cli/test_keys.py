"""Login signing without eth_account: the same addresses and signatures, and `mtor ask`
logs in to a real broker without importing eth_account or web3."""

from __future__ import annotations

import json
import secrets
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
from eth_account import Account
from eth_account.messages import encode_defunct

from broker import protocol as p
from mtor_cli.identity import load_or_create_account, load_signer
from mtor_cli.keys import Signer, personal_sign
from tests.support.realm import ThreadRealm, process_env
from worker import Device
from worker.backends.echo import EchoBackend


@pytest.mark.parametrize("text", ["MTOR client login\nnonce: 1f2e", "", "ünïcødé 🎉 " * 40])
def test_signatures_and_addresses_match_eth_account(text: str) -> None:
    for _ in range(20):
        key = secrets.token_bytes(32)
        signer, account = Signer.from_key(key), Account.from_key(key)
        assert signer.address == account.address
        expected = Account.sign_message(encode_defunct(text=text), key).signature.hex().removeprefix("0x")
        assert personal_sign(key, text) == "0x" + expected


def test_the_broker_recovers_the_signer_of_a_login() -> None:
    signer = Signer.from_key(secrets.token_bytes(32))
    signature = signer.sign_text(p.challenge_text("abc123", "client"))
    assert p.recover_signer("abc123", "client", signature) == signer.address
    assert p.recover_signer("abc123", "worker", signature) != signer.address  # the role is signed too


def test_one_key_file_for_both_loaders(mtor_home: Path) -> None:
    signer = load_signer()  # creates config/key.json
    assert load_or_create_account().address == signer.address == load_signer().address
    data = json.loads((mtor_home / "config" / "key.json").read_text())
    assert data["address"] == signer.address and (mtor_home / "config" / "key.json").stat().st_mode & 0o077 == 0


def test_a_bad_key_file_is_reported(mtor_home: Path) -> None:
    from mtor_cli.identity import IdentityError

    path = mtor_home / "config" / "key.json"
    path.parent.mkdir(parents=True)
    path.write_text(json.dumps({"private_key": "0x" + "00" * 32}))
    with pytest.raises(IdentityError, match="cannot read the key file"):
        load_signer()


@pytest.fixture(scope="module")
def echo_realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadRealm]:
    with ThreadRealm(tmp_path_factory.mktemp("keys-realm") / "journal.db") as realm:
        realm.add_worker([EchoBackend(None, Device())])
        realm.wait_workers(1, "echo")
        yield realm


def test_ask_logs_in_without_eth_account_or_web3(echo_realm: ThreadRealm, tmp_path: Path) -> None:
    code = (
        "import sys\n"
        "from mtor_cli.app import main\n"
        f"sys.argv = ['mtor', 'ask', '--broker', {echo_realm.url!r}, '--intent', 'echo', '--json', 'hello']\n"
        "try:\n"
        "    main()\n"
        "finally:\n"
        "    heavy = sorted(m for m in ('eth_account', 'web3', 'torch', 'onnxruntime') if m in sys.modules)\n"
        "    print('HEAVY', heavy, file=sys.stderr)\n"
    )
    done = subprocess.run(
        [sys.executable, "-c", code], env=process_env(tmp_path / "home"), capture_output=True, text=True, timeout=60
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout)["text"]
    assert "HEAVY []" in done.stderr
