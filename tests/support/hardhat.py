"""A real ``hardhat node`` for tests: started on a free 127.0.0.1 port, killed by pid.

The binary is started directly (not through npx) so that killing its pid stops
the node. It needs ``npm ci`` at the repository root (scripts/install.sh --all).
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import time
import urllib.request
from pathlib import Path

from tests.support.realm import REPO, free_port

HARDHAT = REPO / "node_modules" / ".bin" / "hardhat"


class HardhatNode:
    def __init__(self, log_dir: Path) -> None:
        if not HARDHAT.exists():
            raise RuntimeError(f"{HARDHAT} is missing: run `npm ci` at the repository root")
        self.port = free_port()
        self.url = f"http://127.0.0.1:{self.port}"
        self.log = log_dir / "hardhat-node.log"
        self.proc: subprocess.Popen[bytes] | None = None

    def start(self, timeout_s: float = 60.0) -> HardhatNode:
        self.log.parent.mkdir(parents=True, exist_ok=True)
        with open(self.log, "ab") as log:
            self.proc = subprocess.Popen(
                [str(HARDHAT), "node", "--hostname", "127.0.0.1", "--port", str(self.port)],
                cwd=REPO,
                stdout=log,
                stderr=subprocess.STDOUT,
                stdin=subprocess.DEVNULL,
                env={**os.environ, "HARDHAT_DISABLE_TELEMETRY_PROMPT": "true"},
            )
        deadline = time.monotonic() + timeout_s
        while time.monotonic() < deadline:
            if self.proc.poll() is not None:
                raise RuntimeError(f"hardhat node exited: {self.log.read_text()[-2000:]}")
            if self.chain_id() is not None:
                return self
            time.sleep(0.2)
        self.stop()
        raise RuntimeError(f"hardhat node did not answer in {timeout_s}s: {self.log.read_text()[-2000:]}")

    def chain_id(self) -> int | None:
        body = json.dumps({"jsonrpc": "2.0", "id": 1, "method": "eth_chainId", "params": []}).encode()
        req = urllib.request.Request(self.url, body, {"Content-Type": "application/json"})
        try:
            with urllib.request.urlopen(req, timeout=2) as resp:
                return int(json.loads(resp.read())["result"], 16)
        except OSError:
            return None

    def stop(self) -> None:
        if self.proc is not None and self.proc.poll() is None:
            os.kill(self.proc.pid, signal.SIGTERM)
            try:
                self.proc.wait(10)
            except subprocess.TimeoutExpired:
                os.kill(self.proc.pid, signal.SIGKILL)
                self.proc.wait(10)

    def __enter__(self) -> HardhatNode:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
