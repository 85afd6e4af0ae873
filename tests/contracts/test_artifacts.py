"""The contracts: the ABI + bytecode the Python package ships match a fresh offline
compile, and the hardhat test suite (every function, every revert) passes.

Needs node and `npm ci` at the repository root (scripts/install.sh --all).
"""

from __future__ import annotations

import json
import os
import subprocess
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
HARDHAT = REPO / "node_modules" / ".bin" / "hardhat"
SHIPPED = ("NineThousand", "RealmLedger")


def hardhat(*args: str, timeout: float = 300) -> subprocess.CompletedProcess[str]:
    assert HARDHAT.exists(), f"{HARDHAT} is missing: run `npm ci` at the repository root"
    env = {**os.environ, "HARDHAT_DISABLE_TELEMETRY_PROMPT": "true", "CI": "true"}
    return subprocess.run(
        [str(HARDHAT), *args], cwd=REPO, env=env, capture_output=True, text=True, timeout=timeout
    )


def test_shipped_artifacts_match_a_fresh_compile(tmp_path: Path) -> None:
    done = hardhat("export-artifacts", "--out", str(tmp_path))
    assert done.returncode == 0, done.stdout + done.stderr
    for name in SHIPPED:
        fresh = json.loads((tmp_path / f"{name}.json").read_text())
        shipped = json.loads((REPO / "ledger" / "artifacts" / f"{name}.json").read_text())
        assert shipped["abi"] == fresh["abi"], f"{name}: ABI differs; run `npx hardhat export-artifacts`"
        assert shipped["bytecode"] == fresh["bytecode"], f"{name}: bytecode differs; run `npx hardhat export-artifacts`"
        assert shipped["deployedBytecode"] == fresh["deployedBytecode"]


def test_the_python_package_loads_the_shipped_artifacts() -> None:
    from ledger.chain import artifact

    for name in SHIPPED:
        art = artifact(name)
        assert art["bytecode"].startswith("0x") and len(art["bytecode"]) > 2000 and art["abi"]
    events = {i["name"] for i in artifact("RealmLedger")["abi"] if i["type"] == "event"}
    assert {"Deposited", "Redeemed", "RedemptionSkipped", "Settled", "Claimed", "Refunded", "ExitStarted", "Exited"} <= events
    from ledger.watcher import EVENTS

    assert set(EVENTS) <= events  # every event the watcher books exists


@pytest.mark.timeout(600)
def test_hardhat_contract_suite_passes() -> None:
    done = hardhat("test", timeout=600)
    assert done.returncode == 0, done.stdout[-4000:] + done.stderr[-4000:]
    assert " passing" in done.stdout and " failing" not in done.stdout
