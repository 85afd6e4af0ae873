"""A paid realm: key requests charged like `mtor ask` under the standing authorisation
their owner signed, 402s, the key's limit, settlement on chain, and hanging up.

The realm bills through the real ledger (``ledger.RealmBilling``) on the embedded
chain (py-evm), its contracts deployed; users take test tokens from the faucet and
deposit them on chain. ``curl -N`` is the client of the streaming and hang-up tests.
"""

from __future__ import annotations

import json
import subprocess
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest

from broker.billing import InsufficientFunds, PaymentRefused
from ledger import Ledger, LedgerConfig, RealmBilling
from ledger import accounts as A
from ledger import authorisation as auth
from ledger.desk import MoneyDesk
from ledger.units import ONE
from mtor_cli.client import RealmClient, RealmError, http_url
from mtor_cli.identity import load_or_create_account
from mtor_cli.signed import call
from tests.broker.openai_api.conftest import SLOW_WORD_S, echo_realm, new_key, openai_client
from tests.support.realm import ThreadRealm, get_json, wait_until, workers

PRICE = ONE // 100  # the default price of an intent the price table does not name: 0.01 $9000 per query


class Paid:
    def __init__(self, realm: ThreadRealm, billing: RealmBilling, ledger: Ledger, free_key: str) -> None:
        self.realm, self.billing, self.ledger, self.journal = realm, billing, ledger, ledger.journal
        self.free_key = free_key  # made while the realm was free: it has no signed limit

    def user(self, path: Path, amount: int = 10 * ONE) -> Any:
        """An identity (a key file, as the CLI keeps it) with ``amount`` deposited on chain."""
        account = load_or_create_account(path)
        if amount:
            self.on_loop(lambda: (self.ledger.faucet(account), self.ledger.deposit(account, amount)))
        return account

    def on_loop(self, fn: Any) -> Any:
        """``fn()`` on the realm's loop: the ledger is the broker's, used by one thread."""

        async def run() -> Any:
            return fn()

        return self.realm.call(run())

    def balance(self, address: str) -> int:
        return self.on_loop(lambda: self.billing.balance(address))

    def held(self, address: str) -> int:
        return self.on_loop(lambda: self.journal.balance(A.hold(address)))

    def terms(self) -> auth.Terms:
        terms = self.on_loop(self.ledger.terms)
        assert terms is not None
        return terms


@pytest.fixture(scope="module")
def paid(module_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[Paid]:
    root = tmp_path_factory.mktemp("paid")
    # The operator ran the realm free first, and someone made a key then.
    free = echo_realm(root / "journal.db")
    try:
        free_key = new_key(free.url, load_or_create_account(root / "early.json"))["secret"]
    finally:
        free.stop()
    config = LedgerConfig(root / "data", welcome_grant=0)
    ledger = Ledger(config, commit="loop")
    ledger.deploy()
    billing = ledger.billing(insufficient_funds=InsufficientFunds, refused=PaymentRefused)
    realm = echo_realm(root / "journal.db", billing=billing, slots=2, money=lambda: MoneyDesk(config))
    try:
        yield Paid(realm, billing, ledger, free_key)
    finally:
        realm.stop()
        ledger.close()


def keys_of(url: str, user: Any) -> dict[str, Any]:
    return {k["id"]: k for k in call(url, "GET", "/v1/keys", account=user)["keys"]}


def history_of(url: str, user: Any) -> list[dict[str, Any]]:
    return call(url, "GET", "/v1/history", account=user)["history"]


def ask(client: Any, text: str, model: str = "echo", **extra: Any) -> Any:
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], **extra)


def test_a_key_request_is_charged_to_its_address_like_mtor_ask(paid: Paid, tmp_path: Path) -> None:
    user = paid.user(tmp_path / "user.json")
    key = new_key(paid.realm.url, user, name="app")
    assert key["paid"] is True and int(key["limit"]) == 10 * ONE  # a paid realm's default limit
    before = paid.balance(user.address)
    answer = ask(openai_client(paid.realm.url, key["secret"]), "pay for this")
    assert answer.mtor["cost"] == str(PRICE)
    assert paid.balance(user.address) == before - PRICE
    assert paid.held(user.address) == 0

    async def over_the_bus() -> int:
        async with RealmClient(paid.realm.url, user) as realm:
            return (await realm.ask("pay for this", intent="echo")).cost

    assert paid.realm.call(over_the_bus()) == PRICE  # `mtor ask`'s path: the same price
    assert paid.balance(user.address) == before - 2 * PRICE
    listed = keys_of(paid.realm.url, user)
    assert int(listed[key["id"]]["spent"]) == PRICE  # only what the key itself spent


def test_no_funds_is_402(paid: Paid, tmp_path: Path) -> None:
    poor = paid.user(tmp_path / "poor.json", amount=0)
    client = openai_client(paid.realm.url, new_key(paid.realm.url, poor)["secret"])
    with pytest.raises(openai.APIStatusError) as err:
        ask(client, "on credit")
    assert err.value.status_code == 402
    assert err.value.body["code"] == "insufficient_funds" and err.value.body["type"] == "payment_required"


def test_a_key_never_spends_past_its_limit(paid: Paid, tmp_path: Path) -> None:
    user = paid.user(tmp_path / "user.json")
    key = new_key(paid.realm.url, user, limit=str(PRICE * 5 // 2))
    client = openai_client(paid.realm.url, key["secret"])
    ask(client, "one")
    ask(client, "two")
    with pytest.raises(openai.APIStatusError) as err:
        ask(client, "three")
    assert err.value.status_code == 402 and err.value.body["code"] == "allowance_exceeded"
    assert "left of its limit" in err.value.body["message"]
    assert int(keys_of(paid.realm.url, user)[key["id"]]["spent"]) == 2 * PRICE
    # The user's other keys and `mtor ask` are not limited by this key's limit.
    other = openai_client(paid.realm.url, new_key(paid.realm.url, user)["secret"])
    assert ask(other, "three").choices[0].message.content == "three"


def test_max_price_refuses_a_dearer_request(paid: Paid, tmp_path: Path) -> None:
    user = paid.user(tmp_path / "user.json")
    client = openai_client(paid.realm.url, new_key(paid.realm.url, user)["secret"])
    before = paid.balance(user.address)
    with pytest.raises(openai.APIStatusError) as err:
        ask(client, "too dear", extra_headers={"X-MTOR-Max-Price": str(PRICE - 1)})
    assert err.value.status_code == 402 and err.value.body["code"] == "price_exceeded"
    assert err.value.body["param"] == "max_price"
    with pytest.raises(openai.APIStatusError):
        ask(client, "too dear", extra_body={"max_price": str(PRICE - 1)})
    assert ask(client, "fine", extra_body={"max_price": PRICE}).mtor["cost"] == str(PRICE)
    assert paid.balance(user.address) == before - PRICE


def curl(url: str, key: str, body: dict[str, Any], headers_file: Path, *extra: str) -> subprocess.Popen[bytes]:
    return subprocess.Popen(
        ["curl", "-N", "-sS", "-D", str(headers_file), http_url(url, "/v1/chat/completions"),
         "-H", f"Authorization: Bearer {key}", "-H", "Content-Type: application/json", "-d", json.dumps(body), *extra],
        stdout=subprocess.PIPE,
    )


def streamed_text(sse: bytes) -> str:
    events = [line[6:] for line in sse.decode().splitlines() if line.startswith("data: ")]
    assert events[-1] == "[DONE]", events[-3:]
    return "".join(json.loads(e)["choices"][0]["delta"].get("content") or "" for e in events[:-1]
                   if json.loads(e)["choices"])


def guid_of(headers_file: Path) -> str:
    for line in headers_file.read_text().splitlines():
        if line.lower().startswith("x-mtor-guid:"):
            return line.split(":", 1)[1].strip()
    raise AssertionError(f"no X-MTOR-Guid in {headers_file.read_text()!r}")


def test_curl_streams_server_sent_events(paid: Paid, tmp_path: Path) -> None:
    user = paid.user(tmp_path / "user.json")
    key = new_key(paid.realm.url, user)["secret"]
    proc = curl(paid.realm.url, key, {"model": "slow-echo", "stream": True,
                                       "messages": [{"role": "user", "content": "one two three four five six"}]},
                tmp_path / "headers")
    assert proc.stdout is not None
    first = proc.stdout.readline()
    assert first.startswith(b"data: ") and json.loads(first[6:])["choices"][0]["delta"]["role"] == "assistant"
    assert proc.stdout.readline() == b"\n"
    word = json.loads(proc.stdout.readline()[6:])["choices"][0]["delta"]["content"]
    assert word == "one " and proc.poll() is None  # the first word arrived while the rest is still coming
    rest = proc.stdout.read()
    assert proc.wait(10) == 0
    assert rest.endswith(b"data: [DONE]\n\n")
    assert "text/event-stream" in (tmp_path / "headers").read_text()


def test_a_client_that_hangs_up_cancels_its_intent_and_pays_nothing(paid: Paid, tmp_path: Path) -> None:
    user = paid.user(tmp_path / "user.json")
    key = new_key(paid.realm.url, user)["secret"]
    before = paid.balance(user.address)
    stats = get_json(paid.realm.url, "/v1/stats")["intents"]
    words = 30
    proc = curl(paid.realm.url, key, {"model": "slow-echo", "stream": True,
                                       "messages": [{"role": "user", "content": " ".join(["word"] * words)}]},
                tmp_path / "headers")
    assert proc.stdout is not None
    proc.stdout.readline()
    proc.stdout.readline()
    assert b"word" in proc.stdout.readline()
    assert paid.held(user.address) == PRICE  # held while it runs
    started = time.monotonic()
    proc.kill()
    proc.wait(5)
    guid = guid_of(tmp_path / "headers")

    def idle() -> bool:
        (row,) = workers(paid.realm.url)
        return row["running"] == 0 and row["letting_go"] == 0

    wait_until(idle, 5, "the worker to drop the cancelled job")
    # The worker stopped long before its answer would have ended.
    assert time.monotonic() - started < words * SLOW_WORD_S / 2
    stored = call(paid.realm.url, "GET", f"/v1/history/{guid}", account=user)
    assert stored["status"] == "cancelled" and stored["cost"] == 0
    assert paid.held(user.address) == 0 and paid.balance(user.address) == before
    after = get_json(paid.realm.url, "/v1/stats")["intents"]
    assert after["cancelled"] == stats["cancelled"] + 1


def test_a_waiting_client_that_times_out_cancels_its_intent(paid: Paid, tmp_path: Path) -> None:
    user = paid.user(tmp_path / "user.json")
    client = openai_client(paid.realm.url, new_key(paid.realm.url, user)["secret"], timeout=0.5)
    before = paid.balance(user.address)
    with pytest.raises(openai.APITimeoutError):
        ask(client, " ".join(["slow"] * 20), model="slow-echo")
    wait_until(lambda: paid.held(user.address) == 0, 5, "the hold to be released")
    assert paid.balance(user.address) == before
    history = history_of(paid.realm.url, user)
    assert history[0]["status"] == "cancelled"


def test_a_retry_with_the_same_idempotency_key_picks_up_the_answer_once(paid: Paid, tmp_path: Path) -> None:
    user = paid.user(tmp_path / "user.json")
    key = new_key(paid.realm.url, user)["secret"]
    before = paid.balance(user.address)
    prompt = " ".join(f"w{i}" for i in range(12))
    body = {"model": "slow-echo", "stream": True, "messages": [{"role": "user", "content": prompt}]}
    first = curl(paid.realm.url, key, body, tmp_path / "h1", "-H", "Idempotency-Key: job-7")
    assert first.stdout is not None
    for _ in range(3):
        first.stdout.readline()
    first.kill()  # the network dropped mid-answer
    first.wait(5)
    time.sleep(0.5)  # the broker notices the hang-up; with an Idempotency-Key it waits for the retry
    again = curl(paid.realm.url, key, body, tmp_path / "h2", "-H", "Idempotency-Key: job-7")
    out, _ = again.communicate(timeout=20)
    assert streamed_text(out) == prompt  # all of it, once: what was sent before is caught up
    assert guid_of(tmp_path / "h1") == guid_of(tmp_path / "h2")
    assert paid.balance(user.address) == before - PRICE and paid.held(user.address) == 0
    stored = call(paid.realm.url, "GET", f"/v1/history/{guid_of(tmp_path / 'h2')}", account=user)
    assert stored["status"] == "done"


def post_key(paid: Paid, user: Any, payload: dict[str, Any]) -> dict[str, Any]:
    return call(paid.realm.url, "POST", "/v1/keys", payload, user)  # type: ignore[no-any-return]


def test_a_paid_key_needs_its_owners_signature_for_everything_it_may_spend(paid: Paid, tmp_path: Path) -> None:
    user = paid.user(tmp_path / "user.json")
    first = new_key(paid.realm.url, user, limit=str(3 * PRICE))
    with pytest.raises(RealmError) as refused:
        post_key(paid, user, {"limit": str(2 * PRICE)})  # no authorisation
    err = refused.value
    assert err.code == "bad_authorisation" and "at least" in err.message
    # What it must cover: everything committed (nothing yet), the first key's limit, and this one's.
    assert int(err.detail["needed"]) == 3 * PRICE + 2 * PRICE
    terms = paid.terms()
    assert (err.detail["chain_id"], err.detail["contract"]) == (terms.chain_id, terms.contract)
    short = 3 * PRICE + 2 * PRICE - 1
    with pytest.raises(RealmError, match="at least"):
        post_key(paid, user, {"limit": str(2 * PRICE), "authorisation": {
            "total": str(short), "signature": auth.sign(user.key, terms, user.address, short)}})
    stranger = load_or_create_account(tmp_path / "stranger.json")
    needed = 5 * PRICE
    with pytest.raises(RealmError) as forged:
        post_key(paid, user, {"limit": str(2 * PRICE), "authorisation": {
            "total": str(needed), "signature": auth.sign(stranger.key, terms, user.address, needed)}})
    assert forged.value.code == "bad_authorisation" and "not signed by" in forged.value.message
    assert list(keys_of(paid.realm.url, user)) == [first["id"]]  # nothing was made unsigned
    second = post_key(paid, user, {"limit": str(2 * PRICE), "authorisation": {
        "total": str(needed), "signature": auth.sign(user.key, terms, user.address, needed)}})
    assert int(second["limit"]) == 2 * PRICE and "authorisation" not in second
    # The realm now asks every new authorisation of this user to cover both keys' limits.
    assert paid.on_loop(lambda: paid.billing.terms(user.address))["committed"] == 5 * PRICE


def test_mtor_keys_create_signs_the_authorisation_itself(paid: Paid, tmp_path: Path) -> None:
    from typer.testing import CliRunner

    from mtor_cli.app import build_app

    path = tmp_path / "cli.json"
    user = paid.user(path)
    made = CliRunner().invoke(build_app(), ["keys", "create", "--broker", paid.realm.url, "--key", str(path),
                                            "--limit", "0.02", "--json"])
    assert made.exit_code == 0, made.output
    key = json.loads(made.stdout)
    assert key["paid"] is True and int(key["limit"]) == 2 * PRICE and key["limit_9000"] == "0.02"
    assert ask(openai_client(paid.realm.url, key["secret"]), "signed once").mtor["cost"] == str(PRICE)
    assert paid.balance(user.address) == 10 * ONE - PRICE


def test_other_spending_never_eats_a_keys_limit(paid: Paid, tmp_path: Path) -> None:
    user = paid.user(tmp_path / "user.json")
    key = new_key(paid.realm.url, user, limit=str(2 * PRICE))
    client = openai_client(paid.realm.url, key["secret"])

    async def over_the_bus(n: int) -> list[int]:
        async with RealmClient(paid.realm.url, user) as realm:
            return [(await realm.ask(f"sdk {i}", intent="echo")).cost for i in range(n)]

    assert paid.realm.call(over_the_bus(3)) == [PRICE] * 3  # the SDK signs above the key's reserve
    other = new_key(paid.realm.url, user, limit=str(PRICE))
    assert ask(openai_client(paid.realm.url, other["secret"]), "other key").mtor["cost"] == str(PRICE)
    assert ask(client, "one").mtor["cost"] == str(PRICE)
    assert ask(client, "two").mtor["cost"] == str(PRICE)
    with pytest.raises(openai.APIStatusError) as err:
        ask(client, "three")
    assert err.value.status_code == 402 and err.value.body["code"] == "allowance_exceeded"
    assert paid.balance(user.address) == 10 * ONE - 6 * PRICE
    # Every hold carried a signature of this user covering all it committed then.
    rows = paid.on_loop(lambda: paid.journal.hold_authorisations(payer=user.address))
    assert len(rows) == 6
    terms = paid.terms()
    for _, _, text in rows:
        total, signature = auth.decode(text)
        assert auth.verify(terms, user.address, total, signature)
    assert max(auth.decode(t)[0] for _, _, t in rows) >= 6 * PRICE


def test_a_key_made_while_the_realm_was_free_spends_nothing_unsigned(paid: Paid) -> None:
    client = openai_client(paid.realm.url, paid.free_key)
    with pytest.raises(openai.APIStatusError) as err:
        ask(client, "free ride")
    assert err.value.status_code == 402
    body = err.value.body
    assert body["code"] == "authorisation_exhausted" and "mtor keys create --limit" in body["hint"]


def test_settlement_redeems_key_spending_on_chain_under_the_owners_signature(paid: Paid, tmp_path: Path) -> None:
    user = paid.user(tmp_path / "user.json")
    client = openai_client(paid.realm.url, new_key(paid.realm.url, user, limit=str(5 * PRICE))["secret"])
    for i in range(3):
        ask(client, f"settle {i}")
    paid.on_loop(paid.ledger.settle)

    def on_chain() -> tuple[int, int, int]:
        with paid.ledger.session() as s:
            deposit, spent = s.ledger.functions.accountOf(user.address).call()
        return deposit, spent, paid.journal.charged(user.address)

    deposit, spent, charged = paid.on_loop(on_chain)
    assert spent == charged == 3 * PRICE  # redeemed in full: the key's authorisation covered it
    assert deposit == 10 * ONE - 3 * PRICE
