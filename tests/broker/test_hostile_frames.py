"""Frames built to crash the broker: deeply nested JSON on every socket and REST body.

The broker runs as its own process, so a crash is a dead process (and a
failed test), not a dead test session.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import Iterator

import aiohttp
import pytest

from broker.protocol import Error, Pong, Result, sign_request
from tests.support.peers import FakeWorker, TestClient, echo, new_account
from tests.support.realm import free_port, log_of, spawn_broker, stop_process, url_for, wait_healthy

DEEP = 50_000  # py_ecc's recursion limit (100000) lets this overflow the C stack


def deep_frames() -> list[tuple[str, bytes]]:
    arrays = b"[" * DEEP + b"]" * DEEP
    objects = b'{"a":' * DEEP + b"1" + b"}" * DEEP
    return [
        ("deep params", b'{"type":"submit_query","guid":"g","params":{"a":' + arrays + b"}}"),
        ("deep objects", b'{"type":"hello","address":' + objects + b"}"),
        ("deep unknown type", b'{"type":"nope","x":' + arrays + b"}"),
        ("unclosed arrays", b"[" * (4 * DEEP)),
    ]


@pytest.fixture(scope="module")
def broker_url(tmp_path_factory: pytest.TempPathFactory) -> Iterator[str]:
    home = tmp_path_factory.mktemp("broker")
    port = free_port()
    proc = spawn_broker(port, home / "broker.db", home)
    url = url_for(port)
    try:
        wait_healthy(url)
        yield url
    finally:
        code = stop_process(proc)
        assert code == 0, f"the broker exited with {code}:\n{log_of(home, 'broker.log')[-3000:]}"


async def _alive(url: str) -> None:
    """The broker still logs people in and serves them."""
    async with TestClient(url) as client:
        await client.send({"type": "ping", "nonce": "n"})
        assert isinstance(await client.next_other(), Pong)


async def test_deeply_nested_frames_are_refused_on_the_client_socket(broker_url: str) -> None:
    # A logged-in client first: the broker has imported eth_account (and py_ecc) by then.
    await _alive(broker_url)
    for name, frame in deep_frames():
        # Before login such a frame is too big to be read at all ...
        async with aiohttp.ClientSession() as http, http.ws_connect(broker_url + "/ws/client") as ws:
            await ws.receive()  # challenge
            await ws.send_str(frame.decode())
            answer = await asyncio.wait_for(ws.receive(), 10)
            assert answer.type == aiohttp.WSMsgType.TEXT, f"{name}: the socket died ({answer.type})"
            assert '"code":"frame_too_large"' in answer.data, name
        # ... after it, it is decoded only within the nesting bound.
        async with TestClient(broker_url) as client:
            await client.send(frame.decode())
            answer = await client.next_other()
            assert isinstance(answer, Error) and answer.code in ("invalid_json", "invalid_message"), name
    await _alive(broker_url)


async def test_deeply_nested_frames_are_refused_on_the_worker_socket(broker_url: str) -> None:
    worker = await FakeWorker(broker_url, behaviour=echo()).start()
    for name, frame in deep_frames():
        await worker.send(frame.decode())
        answer = await worker.next_other()
        assert isinstance(answer, Error) and answer.code in ("invalid_json", "invalid_message"), name
    async with TestClient(broker_url) as client:
        assert isinstance(await client.ask("still serving", intent="chat"), Result)
    await worker.close()


async def test_a_deeply_nested_rest_body_is_a_clear_400(broker_url: str) -> None:
    account = new_account()
    http_url = broker_url.replace("ws://", "http://")
    body = b'{"nickname":' + b"[" * DEEP + b"]" * DEEP + b"}"
    path = "/v1/profile/nickname"
    ts, nonce = int(time.time()), "n" * 16
    headers = {
        "X-MTOR-Address": account.address,
        "X-MTOR-Timestamp": str(ts),
        "X-MTOR-Nonce": nonce,
        "X-MTOR-Signature": sign_request(account.key, "PUT", path, ts, nonce, body),
    }
    async with aiohttp.ClientSession() as http, http.put(http_url + path, data=body, headers=headers) as resp:
        assert resp.status == 400
        assert (await resp.json())["error"]["code"] == "invalid_json"
    await _alive(broker_url)
