"""`mtor broker serve --tls-cert/--tls-key` serves wss:// and https:// (self-signed cert)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from mtor_cli.client import CA_ENV
from tests.broker.test_tls import self_signed
from tests.mtor_cli.test_history import key_file, mtor
from tests.support.realm import free_port, log_of, spawn_broker, stop_process, wait_until


def test_broker_serve_with_tls(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    cert, key = self_signed(tmp_path)
    port = free_port()
    home = tmp_path / "broker"
    broker = spawn_broker(port, tmp_path / "broker.db", home, "--tls-cert", str(cert), "--tls-key", str(key))
    try:
        mine, address = key_file(tmp_path, "me")
        url = f"wss://127.0.0.1:{port}"
        # Without the certificate trusted, the request is refused by the client.

        def listening() -> object:
            result = mtor("profile", "show", "-b", url, "--key", mine)
            return None if "Connection refused" in result.stderr else result

        untrusted = wait_until(listening, 60, "the broker to listen", interval=0.2)
        assert untrusted.exit_code == 3 and "CERTIFICATE_VERIFY_FAILED" in untrusted.stderr
        monkeypatch.setenv(CA_ENV, str(cert))
        shown = mtor("profile", "show", "-b", url, "--key", mine, "--json")
        assert shown.exit_code == 0, shown.output + log_of(home, "broker.log")
        assert json.loads(shown.stdout)["address"] == address
        # The WebSocket client trusts the same certificate: the handshake over
        # wss:// succeeds, and the broker's answer (no worker yet) comes back.
        asked = mtor("ask", "-b", url, "-i", "chat", "hello")
        assert asked.exit_code == 4 and "[no_worker]" in asked.stderr, asked.output
        assert "broker listening on wss://127.0.0.1" in log_of(home, "broker.log")
    finally:
        stop_process(broker)
