"""Every kind of bad input gets `error{code, message, hint}`; the socket and other clients carry on."""

from __future__ import annotations

import base64

import pytest

from broker.protocol import Attachment, Error, Pong, Result
from tests.support.peers import FakeWorker, TestClient, echo

SMALL_FRAME = 64 * 1024


@pytest.fixture
async def realm(make_broker):
    server = await make_broker(max_frame_bytes=SMALL_FRAME, max_prompt_chars=100, max_attachment_bytes=1000)
    worker = await FakeWorker(server.url, intents=("chat", "vision"), behaviour=echo()).start()
    yield server
    await worker.close()


async def still_usable(client: TestClient) -> None:
    await client.send({"type": "ping", "nonce": "alive"})
    pong = await client.next_other()
    assert isinstance(pong, Pong) and pong.nonce == "alive"
    result = await client.ask("still here", intent="chat")
    assert isinstance(result, Result) and result.text == "still here"


async def expect_error(client: TestClient, code: str, guid: str | None = None) -> Error:
    reply = await (client.next_for(guid) if guid else client.next_other())
    assert isinstance(reply, Error), reply
    assert reply.code == code, reply
    assert reply.message and reply.hint
    return reply


@pytest.mark.parametrize(
    ("frame", "code"),
    [
        ("{not json", "invalid_json"),
        ("[1, 2]", "invalid_message"),
        ('{"type": "launch_missiles"}', "unknown_type"),
        ('{"no_type": 1}', "unknown_type"),
        ('{"type": "submit_query", "prompt": "hi"}', "invalid_message"),
        ('{"type": "cancel", "guid": 7}', "invalid_message"),
    ],
)
async def test_malformed_frames(realm, frame: str, code: str) -> None:
    async with TestClient(realm.url) as client:
        await client.send(frame)
        await expect_error(client, code)
        await still_usable(client)


async def test_mistyped_field_names_the_guid(realm) -> None:
    async with TestClient(realm.url) as client:
        await client.send('{"type": "submit_query", "guid": "g-typed", "prompt": 5}')
        err = await expect_error(client, "invalid_message", "g-typed")
        assert "prompt" in err.message
        await still_usable(client)


async def test_binary_frame(realm) -> None:
    async with TestClient(realm.url) as client:
        await client.send(b"\x00\x01binary")
        await expect_error(client, "binary_frame")
        await still_usable(client)


async def test_oversized_frame_gets_an_error_not_a_close(realm) -> None:
    async with TestClient(realm.url) as client:
        await client.submit("x" * (SMALL_FRAME + 10), intent="chat")
        err = await expect_error(client, "frame_too_large")
        assert str(SMALL_FRAME) in err.message
        await still_usable(client)


async def test_unknown_intent(realm) -> None:
    async with TestClient(realm.url) as client:
        guid = await client.submit("hi", intent="teleport")
        err = await expect_error(client, "unknown_intent", guid)
        assert "chat" in err.hint
        await still_usable(client)


async def test_prompt_too_long(realm) -> None:
    async with TestClient(realm.url) as client:
        guid = await client.submit("y" * 101, intent="chat")
        err = await expect_error(client, "prompt_too_long", guid)
        assert err.detail["limit"] == 100
        await still_usable(client)


@pytest.mark.parametrize(
    ("attachment", "why"),
    [
        (Attachment(kind="video", data=base64.b64encode(b"abc").decode()), "kind"),
        (Attachment(kind="image", data="!!not base64!!"), "base64"),
        (Attachment(kind="image", data=base64.b64encode(b"z" * 1001).decode()), "exceed"),
    ],
)
async def test_bad_attachments(realm, attachment: Attachment, why: str) -> None:
    async with TestClient(realm.url) as client:
        guid = await client.submit("what is in this picture", attachments=[attachment])
        err = await expect_error(client, "bad_attachment", guid)
        assert why in err.message
        await still_usable(client)


async def test_no_worker_for_a_known_intent_fails_at_once(realm) -> None:
    async with TestClient(realm.url) as client:
        guid = await client.submit("a neon mountain", intent="imagine")
        err = await expect_error(client, "no_worker", guid)
        assert "mtor worker serve" in err.hint
        guid = await client.submit("hi", intent="chat", model="no-such-model")
        await expect_error(client, "no_worker", guid)
        await still_usable(client)


async def test_bad_input_on_one_client_does_not_disturb_another(realm) -> None:
    async with TestClient(realm.url) as bad, TestClient(realm.url) as good:
        guid = await good.submit("calm and steady", intent="chat")
        for frame in ("{", '{"type": "nope"}', b"\xff"):
            await bad.send(frame)
        assert [(await bad.next_other()).code for _ in range(3)] == ["invalid_json", "unknown_type", "binary_frame"]
        msgs = await good.collect(guid)
        assert isinstance(msgs[-1], Result) and msgs[-1].text == "calm and steady"


async def test_bad_frames_on_the_worker_socket(realm) -> None:
    worker = await FakeWorker(realm.url, intents=("chat",), behaviour=echo()).start()
    for frame, code in (("{", "invalid_json"), ('{"type": "work"}', "unknown_type"), (b"\x00", "binary_frame")):
        await worker.send(frame)
        assert (await worker.next_other()).code == code
    await worker.send('{"type": "result", "guid": "nobody"}')
    assert (await worker.next_for("nobody")).code == "unknown_guid"
    # The worker is still registered and serving.
    async with TestClient(realm.url) as client:
        results = [await client.ask("ok then", intent="chat") for _ in range(4)]
    assert all(isinstance(r, Result) for r in results)
    await worker.close()
