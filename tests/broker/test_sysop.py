"""The sysop role end to end: grants, bans mid-session, terminate, workers, broadcast,
and the signed channel refusing forged, replayed and impersonated requests."""

from __future__ import annotations

import asyncio
import json
import time
import urllib.error
import urllib.request

import pytest

from broker.protocol import Accepted, Broadcast, Capability, Error, Register, sign_challenge, sign_request
from tests.broker.conftest import STORES, both_stores
from tests.broker.test_accounts import refused, signed
from tests.broker.test_billing import DictBilling
from tests.support.peers import FakeWorker, TestClient, echo, hang, new_account

store = pytest.fixture(params=STORES)(both_stores)  # the same accounts in SQLite and PostgreSQL


async def test_only_the_operator_grants_and_only_sysops_act(make_broker) -> None:
    operator, helper, user = new_account(), new_account(), new_account()
    server = await make_broker(operator=operator.address)

    not_sysop = await refused(server, "POST", "/v1/sysop/ban", user, {"address": helper.address})
    assert not_sysop.code == "forbidden" and "not a sysop" in not_sysop.message
    assert (await refused(server, "POST", "/v1/sysop/grant", user, {"address": user.address})).code == "forbidden"

    await signed(server, "POST", "/v1/sysop/grant", operator, {"address": helper.address})
    assert (await signed(server, "GET", "/v1/profile", helper))["sysop"] is True
    # A sysop acts, but cannot make more sysops.
    assert (await refused(server, "POST", "/v1/sysop/grant", helper, {"address": user.address})).code == "forbidden"
    await signed(server, "POST", "/v1/sysop/broadcast", helper, {"message": "maintenance at noon"})

    audit = (await signed(server, "GET", "/v1/sysop/audit", operator))["audit"]
    seen = [(e["actor"], e["action"], e["outcome"]) for e in reversed(audit)]
    assert seen == [
        (user.address, "ban", "refused"),
        (user.address, "grant", "refused"),
        (operator.address, "grant", "ok"),
        (helper.address, "grant", "refused"),
        (helper.address, "broadcast", "ok"),
    ]
    assert (await refused(server, "GET", "/v1/sysop/audit", user)).code == "forbidden"


async def test_a_banned_user_is_cut_off_mid_session_and_its_hold_released(make_broker) -> None:
    operator, user = new_account(), new_account()
    billing = DictBilling({user.address: 1000})
    server = await make_broker(billing=billing, operator=operator.address)
    await FakeWorker(server.url, behaviour=hang()).start()
    client = await TestClient(server.url, user).connect()
    guid = await client.submit("a long job", intent="chat")
    assert isinstance(await client.next_for(guid), Accepted)
    assert billing.balances[user.address] == 900

    done = await signed(server, "POST", "/v1/sysop/ban", operator, {"address": user.address, "reason": "abuse"})
    assert done["intents_ended"] == 1 and done["sessions_closed"] == 1
    ended = await client.next_for(guid)
    assert isinstance(ended, Error) and ended.code == "banned" and "abuse" in ended.message
    notice = await client.next_other()
    assert isinstance(notice, Error) and notice.code == "banned"
    await asyncio.wait_for(client.closed.wait(), 5)
    assert client.close_code == 4003
    assert billing.balances[user.address] == 1000  # the hold came back
    await client.close()

    # A banned address cannot register a worker either.
    banned_worker = FakeWorker(server.url, account=user)
    await banned_worker.open()
    challenge = await banned_worker.next_other()
    from broker.protocol import Capability, Register, sign_challenge

    await banned_worker.send(
        Register(address=user.address, signature=sign_challenge(user.key, challenge.nonce, "worker"),
                 nonce=challenge.nonce, capabilities=[Capability(intent="chat")])
    )
    answer = await banned_worker.next_other()
    assert isinstance(answer, Error) and answer.code == "banned"
    await asyncio.wait_for(banned_worker.closed.wait(), 5)
    await banned_worker.close()


async def test_terminate_ends_any_users_intent_and_releases_its_hold(make_broker) -> None:
    operator, user = new_account(), new_account()
    billing = DictBilling({user.address: 1000})
    server = await make_broker(billing=billing, operator=operator.address)
    worker = await FakeWorker(server.url, behaviour=hang()).start()
    async with TestClient(server.url, user) as client:
        guid = await client.submit("stuck", intent="chat")
        await client.next_for(guid)
        await asyncio.wait_for(worker.got_work.wait(), 5)
        await signed(server, "POST", "/v1/sysop/terminate", operator, {"guid": guid, "reason": "stuck"})
        ended = await client.next_for(guid)
        assert isinstance(ended, Error) and ended.code == "cancelled" and "terminated by a sysop: stuck" in ended.message
        assert billing.balances[user.address] == 1000
        for _ in range(50):
            if guid in worker.cancels:
                break
            await asyncio.sleep(0.02)
        assert guid in worker.cancels
        again = await refused(server, "POST", "/v1/sysop/terminate", operator, {"guid": guid})
        assert again.code == "unknown_guid"


async def test_workers_pause_resume_remove_and_broadcast(make_broker) -> None:
    operator = new_account()
    server = await make_broker(operator=operator.address)
    worker = await FakeWorker(server.url, behaviour=echo(), name="box").start()
    async with TestClient(server.url) as client:
        rows = (await signed(server, "GET", "/v1/sysop/workers", operator))["workers"]
        assert [(w["id"], w["name"], w["trust"]["state"]) for w in rows] == [(worker.worker_id, "box", "active")]

        await signed(server, "POST", "/v1/sysop/pause", operator, {"id": worker.worker_id})
        guid = await client.submit("waits for resume", intent="chat")
        assert isinstance(await client.next_for(guid), Accepted)
        await asyncio.sleep(0.2)
        assert worker.received == []  # paused: no new work
        await signed(server, "POST", "/v1/sysop/resume", operator, {"id": worker.worker_id})
        assert (await client.collect(guid))[-1].text == "waits for resume"

        sent = await signed(server, "POST", "/v1/sysop/broadcast", operator, {"message": "realm restarts at 5"})
        assert sent["delivered"] == 2
        shown = await client.next_other()
        assert isinstance(shown, Broadcast) and shown.message == "realm restarts at 5" and shown.sender == operator.address
        heard = await worker.next_other()
        assert isinstance(heard, Broadcast) and heard.message == "realm restarts at 5"

        await signed(server, "POST", "/v1/sysop/remove", operator, {"id": worker.worker_id, "reason": "flaky"})
        await asyncio.wait_for(worker.closed.wait(), 5)
        assert (await refused(server, "POST", "/v1/sysop/pause", operator, {"id": worker.worker_id})).code == "bad_params"
        # A removed worker may not come straight back.
        back = FakeWorker(server.url, account=worker.account)
        try:
            await back.start()
            raise AssertionError("a removed worker registered again")
        except AssertionError as exc:
            assert "banned" in str(exc)
        await back.close()


def _raw(url: str, path: str, headers: dict[str, str], method: str = "GET", body: bytes = b"") -> tuple[int, dict]:
    request = urllib.request.Request(url + path, data=body or None, method=method, headers=headers)
    try:
        with urllib.request.urlopen(request, timeout=5) as resp:
            return resp.status, json.loads(resp.read())
    except urllib.error.HTTPError as exc:
        return exc.code, json.loads(exc.read())


async def test_forged_replayed_and_impersonated_requests_are_refused(make_broker) -> None:
    operator, mallory = new_account(), new_account()
    server = await make_broker(operator=operator.address)
    path = "/v1/sysop/workers"

    def headers(address: str, key: bytes, ts: int, sign_path: str = path, nonce: str = "n1") -> dict[str, str]:
        return {"X-MTOR-Address": address, "X-MTOR-Timestamp": str(ts), "X-MTOR-Nonce": nonce,
                "X-MTOR-Signature": sign_request(key, "GET", sign_path, ts, nonce)}

    now = int(time.time())
    good = headers(operator.address, operator.key, now)
    cases = {
        "unsigned": {},
        "forged": {**good, "X-MTOR-Signature": "0x" + "11" * 65},
        "posing": headers(operator.address, mallory.key, now),  # mallory's key, the operator's address
        "other path": headers(operator.address, operator.key, now, "/v1/profile"),
        "stale": headers(operator.address, operator.key, now - 3600),
        "other nonce": {**good, "X-MTOR-Nonce": "n2"},
    }
    for name, hdrs in cases.items():
        status, body = await asyncio.to_thread(_raw, server.http_url, path, hdrs)
        assert (status, body["error"]["code"]) == (401, "bad_signature"), name
    status, body = await asyncio.to_thread(_raw, server.http_url, path, good)
    assert status == 200 and body["workers"] == []
    status, body = await asyncio.to_thread(_raw, server.http_url, path, good)  # the same request again
    assert (status, body["error"]["code"]) == (401, "bad_signature") and "already used" in body["error"]["message"]
    # A body changed after signing is refused too.
    ts = int(time.time())
    sig = sign_request(operator.key, "POST", "/v1/sysop/ban", ts, "n3", b'{"address":"0x1"}')
    tampered = {"X-MTOR-Address": operator.address, "X-MTOR-Timestamp": str(ts), "X-MTOR-Nonce": "n3",
                "X-MTOR-Signature": sig}
    status, body = await asyncio.to_thread(
        _raw, server.http_url, "/v1/sysop/ban", tampered, "POST", json.dumps({"address": mallory.address}).encode()
    )
    assert (status, body["error"]["code"]) == (401, "bad_signature")


async def test_a_replayed_challenge_and_a_client_posing_as_another_are_refused(make_broker) -> None:
    server = await make_broker()
    victim = new_account()
    first = await TestClient(server.url, victim).connect()
    spent_nonce, spent_sig = first.nonce, None
    from broker.protocol import sign_challenge

    spent_sig = sign_challenge(victim.key, spent_nonce, "client")
    # Replaying the victim's signed answer on a new connection: refused.
    thief = await TestClient(server.url, new_account()).connect(hello=False)
    thief.address = victim.address
    answer = await thief.hello(nonce=spent_nonce, signature=spent_sig)
    assert isinstance(answer, Error) and answer.code == "bad_signature"
    # Posing as the victim with one's own key over a fresh nonce: refused.
    poser = await TestClient(server.url, new_account()).connect(hello=False)
    poser.address = victim.address
    answer = await poser.hello()
    assert isinstance(answer, Error) and answer.code == "bad_signature"
    for c in (first, thief, poser):
        await c.close()


async def test_a_banned_address_always_sees_close_code_4003(make_broker) -> None:
    """At login and mid-session, while it keeps sending: the close code is
    the ban's every time, for clients and workers."""
    operator = new_account()
    server = await make_broker(operator=operator.address)
    codes: list[int | None] = []
    for _ in range(8):
        banned = new_account()
        await signed(server, "POST", "/v1/sysop/ban", operator, {"address": banned.address, "reason": "spam"})
        client = TestClient(server.url, banned)
        await client.connect(hello=False)
        await client.hello()
        worker = FakeWorker(server.url, account=banned)
        await worker.open()
        challenge = await worker.next_other()
        await worker.send(
            Register(address=banned.address, signature=sign_challenge(banned.key, challenge.nonce, "worker"),
                     nonce=challenge.nonce, capabilities=[Capability(intent="chat")])
        )
        for sock in (client, worker):
            await asyncio.wait_for(sock.closed.wait(), 5)
            codes.append(sock.close_code)
            await sock.close()

        user = new_account()
        chatty = await TestClient(server.url, user).connect()

        talking = asyncio.create_task(_chatter(chatty))
        await signed(server, "POST", "/v1/sysop/ban", operator, {"address": user.address, "reason": "spam"})
        await asyncio.wait_for(chatty.closed.wait(), 5)
        codes.append(chatty.close_code)
        talking.cancel()
        await chatty.close()
    assert codes == [4003] * 24


async def _chatter(sock: TestClient) -> None:
    while not sock.closed.is_set():
        try:
            await sock.send({"type": "ping", "nonce": "x"})
        except (ConnectionError, RuntimeError):
            return
        await asyncio.sleep(0)
