"""The money commands as a person runs them against a paid realm (--broker): output,
--json, and one error line for bad input. The operator's own commands (ledger
settle/history/audit, chain deploy) read the realm's ledger in the same home."""

from __future__ import annotations

import json
import sqlite3
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from ledger import LedgerConfig
from mtor_cli.app import app
from tests.ledger.conftest import hold
from tests.support.paid import PaidRealm


def mtor(*args: str) -> Any:
    return CliRunner().invoke(app, list(args))


def journal_rows(home: Path) -> int:
    path = home / "data" / "ledger" / "journal.db"
    if not path.exists():
        return 0
    with sqlite3.connect(path) as conn:
        return int(conn.execute("SELECT count(*) FROM txns").fetchone()[0])


def one_error_line(result: Any, code: str) -> str:
    assert result.exit_code != 0, result.output
    lines = [ln for ln in result.stderr.splitlines() if ln.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mtor: ") and f"[{code}]" in lines[0], lines[0]
    return lines[0]


@pytest.fixture
def paid(config: LedgerConfig, home: Path, monkeypatch: pytest.MonkeyPatch) -> Any:
    realm = PaidRealm(config, home)
    monkeypatch.setenv("MTOR_BROKER", realm.realm.url)  # every command asks this realm
    yield realm
    realm.close()


@pytest.fixture
def funded(paid: Any, home: Path) -> Path:
    assert mtor("wallet", "faucet").exit_code == 0
    result = mtor("wallet", "deposit", "12.5", "--json")
    assert result.exit_code == 0, result.output
    assert json.loads(result.stdout)["credited"] is True
    return home


def test_faucet_deposit_and_wallet(funded: Path) -> None:
    result = mtor("wallet", "--json")
    assert result.exit_code == 0, result.output
    info = json.loads(result.stdout)
    assert info["available"] == "12500000000000000000" and info["available_9000"] == "12.5"
    assert info["chain"]["deposit"] == "12500000000000000000"
    assert info["chain"]["tokens_9000"] == "987.5"
    table = mtor("wallet")
    assert "spendable" in table.stdout and "12.5" in table.stdout
    assert "987.5" in table.stdout


@pytest.mark.parametrize(
    ("amount", "code", "says"),
    [
        ("0", "usage", "more than 0"),
        ("-1", "usage", "more than 0"),
        ("abc", "usage", "not a number"),
        ("0.0000000000000000001", "usage", "decimal places"),
        ("5000", "insufficient_tokens", "less than 5000"),
    ],
)
def test_bad_deposits_are_one_line_and_leave_the_journal_alone(
    funded: Path, amount: str, code: str, says: str
) -> None:
    before = journal_rows(funded)
    line = one_error_line(mtor("wallet", "deposit", "--", amount), code)
    assert says in line and "hint:" in line
    assert journal_rows(funded) == before


def test_claiming_unsettled_earnings_or_refunding_more_than_unspent_is_refused(funded: Path) -> None:
    before = journal_rows(funded)
    line = one_error_line(mtor("worker", "earnings", "claim"), "not_settled")
    assert "settled no epoch" in line
    line = one_error_line(mtor("wallet", "refund", "13"), "insufficient_funds")
    assert "12.5" in line
    assert journal_rows(funded) == before
    ok = mtor("wallet", "refund", "2.5", "--json")
    assert ok.exit_code == 0, ok.output
    assert json.loads(ok.stdout)["amount_9000"] == "2.5"
    assert json.loads(mtor("wallet", "--json").stdout)["available_9000"] == "10"


def test_unreachable_rpc_and_another_realms_chain_are_refused(funded: Path, tmp_path: Path) -> None:
    before = journal_rows(funded)
    line = one_error_line(mtor("wallet", "deposit", "1", "--chain-rpc", "http://127.0.0.1:9"), "chain_unreachable")
    assert "127.0.0.1:9" in line
    # Another realm's embedded chain has the same chain id, but not this realm's contracts.
    other = PaidRealm(LedgerConfig(tmp_path / "other" / "data"), tmp_path / "other")
    try:
        relay = other.realm.server.http_url + "/v1/chain/rpc"
        line = one_error_line(mtor("wallet", "deposit", "1", "--chain-rpc", relay), "no_contract")
        assert "tell its operator" in line
    finally:
        other.close()
    assert journal_rows(funded) == before


def test_a_chain_with_another_id_is_refused(funded: Path, tmp_path: Path) -> None:
    from tests.support.hardhat import HARDHAT, HardhatNode

    if not HARDHAT.exists():
        pytest.skip("hardhat is not installed (npm ci)")
    with HardhatNode(tmp_path) as node:
        line = one_error_line(mtor("wallet", "deposit", "1", "--chain-rpc", node.url), "wrong_chain")
    assert "is chain 31337, but the realm settles on chain 131277322940537" in line


def test_settle_earnings_claim_history_and_audit(funded: Path) -> None:
    from eth_account import Account

    from ledger import Ledger
    from mtor_cli.commands.ledger import ledger_config
    from mtor_cli.identity import load_or_create_account

    me = load_or_create_account()
    worker_key = funded / "worker.json"
    worker = load_or_create_account(worker_key)
    assert worker.address != me.address and Account  # a second identity, the worker's
    with Ledger(ledger_config()) as led:
        b = led.billing()
        hold(b, me, "guid-1", 10**16)
        b.capture("guid-1", worker.address, "chat", {"tokens": 500})

    earn = json.loads(mtor("worker", "earnings", "--key", str(worker_key), "--json").stdout)
    assert earn["unclaimed"] == "4500000000000000" and earn["claimable"] == "0"
    settled = mtor("ledger", "settle", "--json")
    assert settled.exit_code == 0, settled.output
    assert json.loads(settled.stdout)["settled"][0]["receipts"] == 1
    assert "nothing to settle" in mtor("ledger", "settle").stderr
    earn = json.loads(mtor("worker", "earnings", "--key", str(worker_key), "--json").stdout)
    assert earn["claimable_9000"] == "0.0045" and earn["awaiting_settlement"] == "0"
    table = mtor("worker", "earnings", "--key", str(worker_key))
    assert "settled: claim now" in table.stdout and "0.0045" in table.stdout
    out = mtor("worker", "earnings", "claim", "--key", str(worker_key))
    assert out.exit_code == 0 and "claimed 0.0045 $9000" in out.stdout
    earn = json.loads(mtor("worker", "earnings", "--key", str(worker_key), "--json").stdout)
    assert earn["claimed_9000"] == "0.0045" and earn["unclaimed"] == "0" and earn["tokens_9000"] == "0.0045"
    one_error_line(mtor("worker", "earnings", "claim", "--key", str(worker_key)), "nothing_to_claim")

    hist = json.loads(mtor("ledger", "history", "--json").stdout)
    assert [t["kind"] for t in hist["transactions"]] == ["capture", "hold", "deposit"]
    assert "capture" in mtor("ledger", "history", "--all").stdout

    audit = mtor("ledger", "audit", "--receipt", "guid-1", "--json")
    assert audit.exit_code == 0, audit.output
    report = json.loads(audit.stdout)
    assert report["clean"] and report["proof"]["valid_on_chain"]
    assert "audit clean" in mtor("ledger", "audit").stdout


def test_audit_fails_loudly_on_a_tampered_journal(funded: Path) -> None:
    with sqlite3.connect(funded / "data" / "ledger" / "journal.db") as conn:
        conn.execute("UPDATE txns SET entries = json_replace(entries, '$[1][1]', '1') WHERE kind = 'deposit'")
    result = mtor("ledger", "audit")
    assert result.exit_code == 1
    assert "audit: differences" in result.stdout and "deposit" in result.stdout


def test_pricing_is_the_realms(home: Path, config: LedgerConfig, monkeypatch: pytest.MonkeyPatch) -> None:
    (home / "config").mkdir(parents=True, exist_ok=True)
    (home / "config" / "pricing.toml").write_text('[imagine]\nprice = "2"\n')
    realm = PaidRealm(LedgerConfig(config.data_dir, pricing_file=home / "config" / "pricing.toml"), home)
    try:
        prices = json.loads(mtor("pricing", "--broker", realm.realm.url, "--json").stdout)
        assert {p["intent"] for p in prices["prices"]} >= {"chat", "imagine", "vision", "speech"}
        assert prices["fee_bps"] == 1000 and prices["paid"] is True
        imagine = next(p for p in prices["prices"] if p["intent"] == "imagine")
        assert imagine["price"] == "2000000000000000000" and imagine["price_9000"] == "2"
        assert "2" in mtor("pricing", "-b", realm.realm.url).stdout.split("imagine")[1].split("\n")[0]
    finally:
        realm.close()


def test_chain_deploy(home: Path) -> None:
    deployed = mtor("chain", "deploy", "--json")
    assert deployed.exit_code == 0, deployed.output
    dep = json.loads(deployed.stdout)
    assert dep["rpc"] is None and dep["ledger"].startswith("0x")
    assert len({dep["owner"], dep["settler"], dep["voucher_signer"]}) == 3
    one_error_line(mtor("chain", "deploy"), "already_deployed")
    again = mtor("chain", "deploy", "--force")  # the journal is empty: allowed, and says which key is which
    assert again.exit_code == 0, again.output
    for what in ("owner key", "settler key", "voucher signer", "supply capped", "exit window"):
        assert what in again.stdout


def test_wallet_exit_start_status_finish(funded: Path) -> None:
    started = mtor("wallet", "exit")
    assert started.exit_code == 0, started.output
    assert "exit of" in started.stdout and "--finish" in started.stdout
    status = json.loads(mtor("wallet", "exit", "--status", "--json").stdout)
    assert status["exit"] == "waiting" and status["deposit"] == "12500000000000000000"
    assert status["deposit_9000"] == "12.5"
    one_error_line(mtor("wallet", "exit", "--finish"), "tx_reverted")  # the window has not passed
    one_error_line(mtor("wallet", "exit", "--finish", "--cancel"), "usage")
    from ledger import Ledger
    from mtor_cli.commands.ledger import ledger_config

    with Ledger(ledger_config()) as led, led.session() as s:
        s.chain.time_travel(status["window_s"])
    done = mtor("wallet", "exit", "--finish", "--json")
    assert done.exit_code == 0, done.output
    assert json.loads(done.stdout)["amount_9000"] == "12.5"
    wallet = json.loads(mtor("wallet", "--json").stdout)
    assert wallet["available"] == "0" and wallet["chain"]["tokens_9000"] == "1000"
    assert wallet["chain"]["exit"] == "none" and wallet["chain"]["deposit"] == "0"
