"""`mtor stats` against a real broker with an echo worker."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

from mtor_cli.client import RealmClient
from mtor_cli.identity import load_or_create_account
from tests.mtor_cli.test_history import echo_realm, key_file, mtor


def test_stats_shows_realm_totals(tmp_path: Path) -> None:
    realm = echo_realm(tmp_path)
    try:
        key, _ = key_file(tmp_path, "me")
        account = load_or_create_account(Path(key))

        async def ask() -> None:
            async with RealmClient(realm.url, account) as client:
                for i in range(3):
                    await client.ask(f"hello {i}", intent="echo")

        asyncio.run(ask())
        result = mtor("stats", "--broker", realm.url, "--json")
        assert result.exit_code == 0, result.output
        data = json.loads(result.stdout)
        echo = data["intents"]["echo"]
        assert (echo["total"], echo["done"], echo["success_rate"]) == (3, 3, 1.0)
        assert echo["latency_s"]["count"] == 3 and echo["latency_s"]["median"] <= echo["latency_s"]["p95"]
        assert data["users"]["all_time"] == 1 and data["workers"]["connected"] == 1
        assert data["tokens"]["spent"] == "0" and data["tokens"]["spent_9000"] == "0"  # a free realm

        table = mtor("stats", "--broker", realm.url)
        assert table.exit_code == 0, table.output
        assert "success rate 100.0%" in table.stdout and "echo" in table.stdout
        assert "workers: 1 connected" in table.stdout
    finally:
        realm.stop()
