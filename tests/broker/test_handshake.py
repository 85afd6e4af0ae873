"""The signed challenge: good, bad, replayed, and anything before it."""

from __future__ import annotations

import asyncio

from broker.protocol import Capability, Error, Pong, Register, Token, Welcome, sign_challenge
from tests.support.peers import FakeWorker, TestClient, new_account


async def test_good_hello_is_welcomed_with_the_signers_address(broker) -> None:
    client = TestClient(broker.url)
    await client.connect(hello=False)
    welcome = await client.hello()
    assert isinstance(welcome, Welcome)
    assert welcome.address == client.address
    await client.close()


async def test_signature_by_another_key_is_rejected_and_closed(broker) -> None:
    client = TestClient(broker.url)
    await client.connect(hello=False)
    forged = sign_challenge(new_account().key, client.nonce, "client")
    reply = await client.hello(signature=forged)
    assert isinstance(reply, Error) and reply.code == "bad_signature"
    await asyncio.wait_for(client.closed.wait(), 5)
    await client.close()


async def test_unsigned_hello_is_rejected(broker) -> None:
    client = TestClient(broker.url)
    await client.connect(hello=False)
    reply = await client.hello(signature="0x")
    assert isinstance(reply, Error) and reply.code == "bad_signature"
    await asyncio.wait_for(client.closed.wait(), 5)
    await client.close()


async def test_replayed_nonce_from_another_connection_is_rejected(broker) -> None:
    account = new_account()
    first = TestClient(broker.url, account)
    await first.connect(hello=False)
    captured = sign_challenge(account.key, first.nonce, "client")
    second = TestClient(broker.url, account)
    await second.connect(hello=False)
    reply = await second.hello(nonce=first.nonce, signature=captured)
    assert isinstance(reply, Error) and reply.code == "bad_signature"
    assert "nonce" in reply.message
    await asyncio.wait_for(second.closed.wait(), 5)
    # The nonce was single-use on its own connection too: a second hello there fails.
    assert isinstance(await first.hello(), Welcome)
    again = await first.hello()
    assert isinstance(again, Error) and again.code == "bad_signature"
    await first.close()
    await second.close()


async def test_a_client_signature_does_not_register_a_worker(broker) -> None:
    account = new_account()
    worker = FakeWorker(broker.url, account=account)
    await worker.open()
    challenge = await worker.next_other()
    wrong_role = sign_challenge(account.key, challenge.nonce, "client")
    await worker.send(
        Register(
            address=account.address,
            signature=wrong_role,
            nonce=challenge.nonce,
            capabilities=[Capability(intent="chat")],
        )
    )
    reply = await worker.next_other()
    assert isinstance(reply, Error) and reply.code == "bad_signature"
    await asyncio.wait_for(worker.closed.wait(), 5)
    await worker.close()


async def test_messages_before_hello_get_not_authenticated_and_the_socket_stays(broker) -> None:
    client = TestClient(broker.url)
    await client.connect(hello=False)
    guid = await client.submit("hi", intent="chat")
    reply = await client.next_for(guid)
    assert isinstance(reply, Error) and reply.code == "not_authenticated"
    await client.send({"type": "ping", "nonce": "n1"})
    assert (await client.next_other()).code == "not_authenticated"
    assert isinstance(await client.hello(), Welcome)
    await client.send({"type": "ping", "nonce": "n2"})
    pong = await client.next_other()
    assert isinstance(pong, Pong) and pong.nonce == "n2"
    await client.close()


async def test_worker_frames_before_register_get_not_authenticated(broker) -> None:
    worker = FakeWorker(broker.url)
    await worker.open()
    await worker.next_other()  # challenge
    await worker.send(Token(guid="g1", text="x"))
    reply = await worker.next_for("g1")
    assert isinstance(reply, Error) and reply.code == "not_authenticated"
    await worker.close()


async def test_register_with_no_slots_is_refused_but_can_be_retried(broker) -> None:
    account = new_account()
    worker = FakeWorker(broker.url, account=account)
    await worker.open()
    challenge = await worker.next_other()
    sig = sign_challenge(account.key, challenge.nonce, "worker")
    bad = Register(address=account.address, signature=sig, nonce=challenge.nonce, capabilities=[], slots=0)
    await worker.send(bad)
    reply = await worker.next_other()
    assert isinstance(reply, Error) and reply.code == "bad_params"
    good = Register(
        address=account.address, signature=sig, nonce=challenge.nonce, capabilities=[Capability(intent="chat")]
    )
    await worker.send(good)
    welcome = await worker.next_other()
    assert isinstance(welcome, Welcome) and welcome.worker_id
    await worker.close()
