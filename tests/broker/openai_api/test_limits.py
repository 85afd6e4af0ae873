"""HTTP intents share the realm's limits with everyone: SafeQueue's fairness, rate limits,
full queues, missing workers and bans, each with the status an OpenAI client expects."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import openai
import pytest
from eth_account import Account

from broker.protocol import SubmitQuery
from mtor_cli.client import RealmClient, RealmError, http_url, new_guid
from mtor_cli.signed import call
from tests.broker.openai_api.conftest import echo_realm, new_key, openai_client
from tests.support.realm import ThreadRealm, get_json, wait_until

QUEUE_LIMIT = 4


@pytest.fixture(scope="module")
def operator() -> Any:
    return Account.create()


@pytest.fixture(scope="module")
def realm(module_home: Path, tmp_path_factory: pytest.TempPathFactory, operator: Any) -> Iterator[ThreadRealm]:
    # One slot: intents of slow-echo run one at a time and the rest wait in SafeQueue.
    r = echo_realm(tmp_path_factory.mktemp("realm") / "journal.db", slots=1, queue_limit=QUEUE_LIMIT,
                   operator=operator.address)
    try:
        yield r
    finally:
        r.stop()


def ask(client: Any, text: str, model: str = "echo", **extra: Any) -> Any:
    return client.chat.completions.create(model=model, messages=[{"role": "user", "content": text}], **extra)


async def _ws_submit(url: str, account: Any, prompt: str, done: list[str], delay_s: float = 0.05) -> None:
    async with RealmClient(url, account) as client:
        query = SubmitQuery(guid=new_guid(), prompt=prompt, intent="slow-echo", params={"delay_s": delay_s})
        async for event in client.submit(query):
            if event.__class__.__name__ == "Result":
                done.append(prompt.split()[0])


async def _http_ask(url: str, secret: str, prompt: str, done: list[str]) -> None:
    client = openai.AsyncOpenAI(base_url=http_url(url, "/v1"), api_key=secret, max_retries=0)
    answer = await client.chat.completions.create(model="slow-echo", messages=[{"role": "user", "content": prompt}])
    done.append((answer.choices[0].message.content or "").split()[0])
    await client.close()


def test_an_http_user_is_served_fairly_between_websocket_users_intents(realm: ThreadRealm) -> None:
    bus_user, http_user = Account.create(), Account.create()
    secret = new_key(realm.url, http_user)["secret"]
    done: list[str] = []

    async def run() -> None:
        # The bus user's first intent runs (1.5 s) while three more wait; then the HTTP user asks once.
        bus = [asyncio.create_task(_ws_submit(realm.url, bus_user, "bus0 a b", done, delay_s=0.5))]
        await asyncio.to_thread(wait_until, lambda: get_json(realm.url, "/v1/stats")["slots_busy"], 10, "bus0")
        bus += [asyncio.create_task(_ws_submit(realm.url, bus_user, f"bus{i} a b", done)) for i in (1, 2, 3)]
        await asyncio.to_thread(
            wait_until, lambda: get_json(realm.url, "/v1/stats")["queue_depth"].get("slow-echo") == 3, 10, "3 queued"
        )
        await _http_ask(realm.url, secret, "http a b", done)
        await asyncio.gather(*bus)

    asyncio.run(run())
    # Round robin between users: the HTTP request waits for one of the bus user's
    # queued intents, not for all three.
    assert done[0] == "bus0" and done.index("http") == 2, done


def test_a_full_queue_is_429_with_retry_after(realm: ThreadRealm) -> None:
    secret = new_key(realm.url, Account.create())["secret"]
    client = openai_client(realm.url, secret)

    async def fill_then_ask() -> Any:
        users = [Account.create() for _ in range(QUEUE_LIMIT + 1)]  # one runs, QUEUE_LIMIT wait
        done: list[str] = []
        fills = [asyncio.create_task(_ws_submit(realm.url, u, "wait", done, delay_s=0.4)) for u in users]
        await asyncio.to_thread(
            wait_until, lambda: get_json(realm.url, "/v1/stats")["queue_depth"].get("slow-echo") == QUEUE_LIMIT, 10,
            "a full queue",
        )
        try:
            await asyncio.to_thread(ask, client, "one more", "slow-echo")
        except openai.RateLimitError as exc:
            return exc
        finally:
            await asyncio.gather(*fills)
        return None

    err = asyncio.run(fill_then_ask())
    assert isinstance(err, openai.RateLimitError), err
    assert err.body["code"] == "queue_full"
    assert int(err.response.headers["Retry-After"]) >= 1


def test_no_worker_for_the_intent_is_503(realm: ThreadRealm) -> None:
    client = openai_client(realm.url, new_key(realm.url, Account.create())["secret"])
    with pytest.raises(openai.APIStatusError) as err:
        client.images.generate(prompt="a neon mountain", response_format="b64_json")
    assert err.value.status_code == 503
    assert err.value.body["code"] == "no_worker" and err.value.body["type"] == "service_unavailable"


def test_a_banned_address_is_403_and_its_running_request_ends(realm: ThreadRealm, operator: Any) -> None:
    user = Account.create()
    client = openai_client(realm.url, new_key(realm.url, user)["secret"])
    assert ask(client, "before").choices[0].message.content == "before"
    call(realm.url, "POST", "/v1/sysop/ban", {"address": user.address, "reason": "spam"}, account=operator)
    try:
        with pytest.raises(openai.PermissionDeniedError) as err:
            ask(client, "after")
        assert err.value.body["code"] == "banned" and "spam" in err.value.body["message"]
    finally:
        call(realm.url, "POST", "/v1/sysop/unban", {"address": user.address}, account=operator)
    assert ask(client, "unbanned").choices[0].message.content == "unbanned"


def test_rate_limits_are_429_with_retry_after(module_home: Path, tmp_path: Path) -> None:
    realm = echo_realm(tmp_path / "journal.db", rate_per_minute=2)
    try:
        user = Account.create()
        client = openai_client(realm.url, new_key(realm.url, user)["secret"])
        ask(client, "one")
        ask(client, "two")
        with pytest.raises(openai.RateLimitError) as err:
            ask(client, "three")
        assert err.value.body["code"] == "rate_limited"
        assert 1 <= int(err.value.response.headers["Retry-After"]) <= 60

        async def over_the_bus() -> str:
            # The same user's budget: the bus is refused as well.
            async with RealmClient(realm.url, user) as bus:
                try:
                    await bus.ask("four", intent="echo")
                except RealmError as exc:
                    return exc.code
            return "ok"

        assert asyncio.run(over_the_bus()) == "rate_limited"
    finally:
        realm.stop()
