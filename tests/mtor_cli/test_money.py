"""Someone else's paid realm, used from your own home: the money commands act on it.

A paid broker runs in one home (its ledger and embedded dev chain are there,
its upkeep settling every few seconds), an echo worker in a second, and the
user in a third, all over real sockets. The user sees, funds and takes back
the balance that realm's books hold, the worker sees what it earned there and
claims it once the realm has settled it, and `pricing`/`models` show that
realm's prices; neither home gets a ledger of its own.
"""

from __future__ import annotations

import json
import time
from collections.abc import Callable, Iterator
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ledger.units import ONE
from mtor_cli.app import app
from tests.support.realm import (
    ThreadRealm,
    free_port,
    log_of,
    spawn_broker,
    spawn_worker,
    stop_process,
    url_for,
    wait_healthy,
    wait_workers,
)

pytestmark = pytest.mark.timeout(300)

ECHO_PRICE = ONE // 100  # the default rule: 0.01 $9000 a query
WELCOME = 100 * ONE  # a dev realm's first deposit for a new user
EPOCH_S = 2  # the realm's upkeep settles this often (config.toml [ledger] epoch_seconds)


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[dict[str, Any]]:
    root = tmp_path_factory.mktemp("someone-elses-realm")
    port = free_port()
    url = url_for(port)
    (root / "operator" / "config").mkdir(parents=True)
    (root / "operator" / "config" / "config.toml").write_text(f"[ledger]\nepoch_seconds = {EPOCH_S}\n")
    broker = spawn_broker(port, root / "operator" / "broker.db", root / "operator", "--paid")
    worker = None
    try:
        wait_healthy(url, timeout=120)
        worker = spawn_worker(url, root / "volunteer", "echo")
        wait_workers(url, 1, "echo")
        yield {"url": url, "root": root, "worker_key": root / "volunteer" / "config" / "key.json"}
    finally:
        if worker is not None:
            stop_process(worker)
        stop_process(broker)
        assert "Traceback" not in log_of(root / "operator", "broker.log"), log_of(root / "operator", "broker.log")


@pytest.fixture
def user(realm: dict[str, Any], monkeypatch: pytest.MonkeyPatch) -> Path:
    home = realm["root"] / "user"
    monkeypatch.setenv("MTOR_HOME", str(home))
    return home


def mtor(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def ok(*args: str) -> dict[str, Any]:
    result = mtor(*args, "--json")
    assert result.exit_code == 0, result.output
    return dict(json.loads(result.stdout))


def eventually(
    read: Callable[[], dict[str, Any]], done: Callable[[dict[str, Any]], bool], timeout: float = 60
) -> dict[str, Any]:
    """``read()`` until ``done`` says yes: what the realm's upkeep does in the background."""
    deadline = time.monotonic() + timeout
    while True:
        seen = read()
        if done(seen) or time.monotonic() > deadline:
            return seen
        time.sleep(0.5)


def test_the_user_sees_funds_and_spends_the_realms_balance(realm: dict[str, Any], user: Path) -> None:
    b = ["--broker", realm["url"]]
    prices = ok("pricing", *b)
    assert prices["paid"] is True and prices["fee_bps"] == 1000
    assert {p["intent"] for p in prices["prices"]} >= {"chat", "imagine", "default"}

    empty = ok("wallet", *b)
    assert empty["available"] == "0" and empty["chain"]["deposit"] == "0"

    answer = ok("ask", *b, "--intent", "echo", "--max-price", "0.02", "pay as you go")
    assert answer["text"] == "pay as you go" and answer["cost"] == str(ECHO_PRICE) and answer["cost_9000"] == "0.01"
    after_ask = ok("wallet", *b)
    assert int(after_ask["available"]) == WELCOME - ECHO_PRICE  # the realm's books: its welcome grant, less the query
    assert after_ask["available_9000"] == "99.99" and after_ask["charged_9000"] == "0.01"
    # the upkeep escrows the grant on chain, then redeems the query under the user's signature
    settled = eventually(lambda: ok("wallet", *b), lambda w: w["chain"]["spent"] != "0")
    assert (int(settled["chain"]["deposit"]), int(settled["chain"]["spent"])) == (WELCOME - ECHO_PRICE, ECHO_PRICE)

    refused = mtor("ask", *b, "--intent", "echo", "--max-price", "0.001", "too dear")
    assert refused.exit_code == 6
    assert "the price 0.01 $9000 is above --max-price 0.001 [price_exceeded]" in refused.stderr

    minted = ok("wallet", "faucet", *b)
    assert minted["tokens_9000"] == "1000"
    deposited = ok("wallet", "deposit", "5", *b)
    assert deposited["credited"] is True and deposited["amount_9000"] == "5"
    assert int(deposited["wallet"]["available"]) == WELCOME - ECHO_PRICE + 5 * ONE
    table = mtor("wallet", *b)
    assert "104.99" in table.stdout and realm["url"] in table.stdout

    refunded = ok("wallet", "refund", "1.5", *b)
    assert refunded["amount_9000"] == "1.5" and refunded["wallet"]["available_9000"] == "103.49"
    assert ok("wallet", *b)["chain"]["tokens_9000"] == "996.5"  # 1000 from the faucet, 5 in, 1.5 back

    assert not (user / "data" / "ledger").exists()  # nothing was kept on the user's side


def test_the_worker_sees_its_earnings_there_and_claims_them(realm: dict[str, Any], user: Path) -> None:
    b, key = ["--broker", realm["url"]], ["--key", str(realm["worker_key"])]
    ok("ask", *b, "--intent", "echo", "one more")  # at least one paid query, whatever ran before
    earned = ok("worker", "earnings", *b, *key)
    part = ECHO_PRICE * 9 // 10
    assert int(earned["unclaimed"]) > 0 and int(earned["unclaimed"]) % part == 0
    assert Decimal(earned["unclaimed_9000"]) == Decimal(int(earned["unclaimed"])) / ONE

    # the realm settles by itself; then the worker pulls what is settled into its wallet
    ready = eventually(lambda: ok("worker", "earnings", *b, *key), lambda e: e["awaiting_settlement"] == "0")
    assert ready["claimable"] == ready["unclaimed"] != "0"
    claimed = ok("worker", "earnings", "claim", *b, *key)
    assert claimed["amount"] == ready["claimable"] and claimed["epoch"] >= 1
    after = ok("worker", "earnings", *b, *key)
    assert after["claimed"] == claimed["cumulative"] and after["tokens"] == claimed["amount"]
    assert after["unclaimed"] == "0" and after["claimable"] == "0"
    again = mtor("worker", "earnings", "claim", *b, *key)
    assert again.exit_code == 1 and "[nothing_to_claim]" in again.stderr
    assert not (realm["root"] / "volunteer" / "data" / "ledger").exists()


def test_models_shows_what_the_realm_serves_and_its_price(realm: dict[str, Any], user: Path) -> None:
    rows = ok("models", "--broker", realm["url"])["models"]
    echo = next(r for r in rows if r["intent"] == "echo")
    assert echo["workers"] == 1 and echo["price_9000"] == "0.01" and echo["unit"] == "query"


def test_someone_elses_free_realm_has_no_wallet(tmp_path: Path, user: Path) -> None:
    with ThreadRealm(tmp_path / "free.db") as free:
        result = mtor("wallet", "--broker", free.url)
        assert result.exit_code == 1
        assert "[free_realm]" in result.stderr and len(result.stderr.strip().splitlines()) == 1
        assert ok("pricing", "--broker", free.url)["paid"] is False
        faucet = mtor("wallet", "faucet", "--broker", free.url)
        assert faucet.exit_code == 1 and "[free_realm]" in faucet.stderr
