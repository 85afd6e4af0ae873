"""Profiles and bans: nicknames over signed REST, and a ban that survives a restart."""

from __future__ import annotations

import asyncio
from typing import Any

import pytest

from broker.protocol import Error
from mtor_cli.client import RealmError
from mtor_cli.signed import call
from tests.broker.conftest import STORES, both_stores
from tests.support.peers import TestClient, new_account

store = pytest.fixture(params=STORES)(both_stores)  # the same accounts in SQLite and PostgreSQL


async def signed(server: Any, method: str, path: str, account: Any, payload: dict[str, Any] | None = None) -> Any:
    """A signed REST call from another thread (the broker runs on this loop)."""
    return await asyncio.to_thread(call, server.url, method, path, payload, account)


async def refused(server: Any, method: str, path: str, account: Any, payload: dict[str, Any] | None = None) -> RealmError:
    with pytest.raises(RealmError) as info:
        await signed(server, method, path, account, payload)
    return info.value


async def test_nickname_is_unique_validated_and_shown_in_the_profile(make_broker) -> None:
    server = await make_broker()
    alice, bob = new_account(), new_account()
    assert (await signed(server, "PUT", "/v1/profile/nickname", alice, {"nickname": "Alice_1"}))["nickname"] == "Alice_1"
    profile = await signed(server, "GET", "/v1/profile", alice)
    assert profile == {"address": alice.address, "nickname": "Alice_1", "sysop": False, "operator": False, "banned": None}
    taken = await refused(server, "PUT", "/v1/profile/nickname", bob, {"nickname": "alice_1"})
    assert taken.code == "nickname_taken"
    bad = await refused(server, "PUT", "/v1/profile/nickname", bob, {"nickname": "9 lives!"})
    assert bad.code == "bad_params" and "3-32 characters" in bad.hint
    # Renaming yourself frees the old name.
    await signed(server, "PUT", "/v1/profile/nickname", alice, {"nickname": "alice2"})
    await signed(server, "PUT", "/v1/profile/nickname", bob, {"nickname": "Alice_1"})
    assert (await signed(server, "GET", "/v1/profile", bob))["nickname"] == "Alice_1"


async def test_a_ban_survives_a_broker_restart(make_broker) -> None:
    operator, user = new_account(), new_account()
    first = await make_broker(operator=operator.address)
    await signed(first, "POST", "/v1/sysop/ban", operator, {"address": user.address, "reason": "spam"})
    await first.stop()

    second = await make_broker(operator=operator.address)
    client = TestClient(second.url, user)
    await client.connect(hello=False)
    answer = await client.hello()
    assert isinstance(answer, Error) and answer.code == "banned" and "spam" in answer.message
    await asyncio.wait_for(client.closed.wait(), 5)
    assert client.close_code == 4003
    await client.close()
    profile = await signed(second, "GET", "/v1/profile", user)
    assert profile["banned"] == "spam"

    await signed(second, "POST", "/v1/sysop/unban", operator, {"address": user.address})
    async with TestClient(second.url, user) as back:
        assert back.address == user.address
        assert (await back.ask("hi", intent="chat")).code == "no_worker"  # logged in; no worker here


async def test_a_captured_signed_request_cannot_be_replayed_after_a_restart(make_broker) -> None:
    import time

    import aiohttp

    from broker.protocol import sign_request

    operator, user = new_account(), new_account()
    first = await make_broker(operator=operator.address)
    body = b'{"address": "%s", "reason": "spam"}' % user.address.encode()
    ts, nonce = int(time.time()), "captured-nonce-1"
    headers = {
        "X-MTOR-Address": operator.address,
        "X-MTOR-Timestamp": str(ts),
        "X-MTOR-Nonce": nonce,
        "X-MTOR-Signature": sign_request(operator.key, "POST", "/v1/sysop/ban", ts, nonce, body),
    }

    async def send(server: Any) -> tuple[int, Any]:
        async with aiohttp.ClientSession() as http, http.post(
            server.http_url + "/v1/sysop/ban", data=body, headers=headers
        ) as resp:
            return resp.status, await resp.json()

    assert (await send(first))[0] == 200
    assert (await send(first))[1]["error"]["code"] == "bad_signature"
    await signed(first, "POST", "/v1/sysop/unban", operator, {"address": user.address})
    await first.stop()

    second = await make_broker(operator=operator.address)
    status, answer = await send(second)  # the same bytes, within the window, to a fresh process
    assert status == 401 and answer["error"]["code"] == "bad_signature"
    assert "already used" in answer["error"]["message"]
    assert (await signed(second, "GET", "/v1/profile", user))["banned"] is None


async def test_a_nickname_with_a_trailing_newline_is_refused(make_broker) -> None:
    server = await make_broker()
    alice = new_account()
    for bad in ("alice\n", "alice\r\n", " alice", "alice\t"):
        refusal = await refused(server, "PUT", "/v1/profile/nickname", alice, {"nickname": bad})
        assert refusal.code == "bad_params", bad
    assert (await signed(server, "GET", "/v1/profile", alice))["nickname"] is None


async def test_running_guids_and_addresses_are_not_shown_without_login(make_broker) -> None:
    import aiohttp

    from tests.support.peers import FakeWorker, hang

    operator = new_account()
    server = await make_broker(operator=operator.address)
    worker = await FakeWorker(server.url, behaviour=hang()).start()
    async with TestClient(server.url) as client, aiohttp.ClientSession() as http:
        guid = await client.submit("private", intent="chat")
        await worker.got_work.wait()
        public = ""
        for path in ("/healthz", "/v1/workers", "/v1/stats", "/v1/totals"):
            async with http.get(server.http_url + path) as resp:
                assert resp.status == 200
                public += await resp.text()
        assert guid not in public and client.address.lower() not in public.lower()
        (row,) = (await signed(server, "GET", "/v1/sysop/workers", operator))["workers"]
        assert row["running_guids"] == [guid]  # a sysop still sees them
        # A logged-in subscriber sees its own intents only, and no other user's address.
        async with TestClient(server.url) as other:
            await other.send({"type": "subscribe", "topics": ["workers", "queue", "intents"]})
            pushes = [await other.next_other() for _ in range(3)]
        seen = str([p.data for p in pushes])
        assert guid not in seen and client.address.lower() not in seen.lower()
    await worker.close()
