"""BrokerConfig defaults and checks, and a light `import broker`."""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path

import pytest

from broker import BrokerConfig


def test_journal_defaults_to_mtor_home(mtor_home: Path) -> None:
    assert BrokerConfig().resolved_db_path() == mtor_home / "data" / "broker.db"


@pytest.mark.parametrize(
    ("field", "value"),
    [("max_attempts", 0), ("queue_limit", 0), ("heartbeat_s", 0.0), ("job_timeout_s", {"chat": -1.0})],
)
def test_nonsense_settings_are_refused_by_name(field: str, value: object) -> None:
    with pytest.raises(ValueError, match=field):
        BrokerConfig(**{field: value})


def test_importing_broker_loads_neither_the_server_nor_sqlite() -> None:
    code = (
        "import sys, broker, broker.protocol; "
        "heavy = [m for m in ('aiohttp', 'sqlite3', 'prometheus_client', 'eth_account') if m in sys.modules]; "
        "print(heavy)"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True).stdout
    assert out.strip() == "[]"
