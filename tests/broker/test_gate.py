"""Sockets that never log in: a deadline, caps per address and in total, and enough file descriptors."""

from __future__ import annotations

import asyncio
import subprocess
import sys
from pathlib import Path
from typing import Any

import aiohttp
import pytest

from broker.protocol import Error, Pong, Result, sign_challenge
from tests.support.peers import FakeWorker, TestClient, echo, new_account
from tests.support.realm import free_port, mtor_command, process_env, stop_process, url_for, wait_healthy


async def _idle(http: aiohttp.ClientSession, url: str, path: str = "/ws/client") -> aiohttp.ClientWebSocketResponse:
    ws = await http.ws_connect(url + path)
    await ws.receive()  # the challenge; then nothing
    return ws


async def _refused(http: aiohttp.ClientSession, url: str) -> dict[str, Any]:
    with pytest.raises(aiohttp.WSServerHandshakeError) as info:
        await http.ws_connect(url + "/ws/client")
    assert info.value.status == 503
    async with http.get(url.replace("ws://", "http://") + "/healthz") as health:
        assert health.status == 200  # plain HTTP is not refused
    return {"status": info.value.status, "retry_after": (info.value.headers or {}).get("Retry-After")}


async def test_a_socket_that_does_not_log_in_is_closed_at_the_deadline(make_broker) -> None:
    server = await make_broker(login_timeout_s=0.3)
    async with TestClient(server.url) as logged_in, aiohttp.ClientSession() as http:
        for path in ("/ws/client", "/ws/worker"):
            ws = await _idle(http, server.url, path)
            answer = await asyncio.wait_for(ws.receive(), 5)
            assert answer.type == aiohttp.WSMsgType.TEXT and '"code":"login_timeout"' in answer.data
            closing = await asyncio.wait_for(ws.receive(), 5)
            assert closing.type == aiohttp.WSMsgType.CLOSE and closing.data == 4008
        await asyncio.sleep(0.4)  # well past the deadline: a logged-in socket stays
        await logged_in.send({"type": "ping", "nonce": "n"})
        assert isinstance(await logged_in.next_other(), Pong)


async def test_idle_sockets_from_one_address_cannot_lock_out_anyone_else(make_broker) -> None:
    server = await make_broker(max_unauthenticated_per_ip=3, login_timeout_s=30)
    worker = await FakeWorker(server.url, intents=("echo",), behaviour=echo()).start()
    async with aiohttp.ClientSession() as http:
        idle = [await _idle(http, server.url) for _ in range(3)]
        refused = await _refused(http, server.url)
        assert refused["retry_after"] == "1"
        # Another address logs in and is served.
        other = aiohttp.ClientSession(connector=aiohttp.TCPConnector(local_addr=("127.0.0.2", 0)))
        async with other:
            answer = await _login_and_ask(other, server.url)
        assert isinstance(answer, Result) and answer.text == "from elsewhere"
        # A socket that is done with its login (here: refused and closed) frees its place.
        await idle[0].send_str('{"type":"hello","address":"0x0","signature":"0x0","nonce":"wrong"}')
        assert '"code":"bad_signature"' in (await idle[0].receive()).data
        assert (await idle[0].receive()).type == aiohttp.WSMsgType.CLOSE
        await asyncio.sleep(0.1)
        again = await _idle(http, server.url)
        for ws in [*idle, again]:
            await ws.close()
    await worker.close()


async def test_the_total_of_unauthenticated_sockets_is_capped(make_broker) -> None:
    server = await make_broker(max_unauthenticated=4, max_unauthenticated_per_ip=100, login_timeout_s=30)
    async with aiohttp.ClientSession() as http:
        idle = [await _idle(http, server.url) for _ in range(4)]
        await _refused(http, server.url)
        for ws in idle:
            await ws.close()
        await asyncio.sleep(0.1)
        async with TestClient(server.url) as client:  # the places are free again
            await client.send({"type": "ping", "nonce": "n"})
            assert isinstance(await client.next_other(), Pong)


async def test_a_big_frame_before_login_closes_the_socket(make_broker) -> None:
    server = await make_broker()
    async with aiohttp.ClientSession() as http:
        ws = await _idle(http, server.url)
        await ws.send_str('{"type":"hello","address":"' + "a" * 100_000 + '"}')
        answer = await asyncio.wait_for(ws.receive(), 5)
        assert '"code":"frame_too_large"' in answer.data and "before login" in answer.data
        await asyncio.wait_for(ws.receive(), 5)
        assert ws.close_code == 1009


async def _login_and_ask(http: aiohttp.ClientSession, url: str) -> Any:
    from broker.protocol import server_to_client_decoder

    decode = server_to_client_decoder().decode
    account = new_account()
    async with http.ws_connect(url + "/ws/client") as ws:
        nonce = decode((await ws.receive()).data).nonce
        await ws.send_json(
            {"type": "hello", "address": account.address, "nonce": nonce,
             "signature": sign_challenge(account.key, nonce, "client")}
        )
        decode((await ws.receive()).data)  # welcome
        await ws.send_json({"type": "submit_query", "guid": "g1", "prompt": "from elsewhere", "intent": "echo"})
        while True:
            msg = decode((await ws.receive()).data)
            if isinstance(msg, (Result, Error)):
                return msg


@pytest.mark.skipif(not sys.platform.startswith("linux"), reason="reads /proc")
def test_the_broker_raises_its_open_file_limit_at_start(tmp_path: Path) -> None:
    import resource

    _, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    low = min(256, hard)

    def lower() -> None:
        resource.setrlimit(resource.RLIMIT_NOFILE, (low, hard))

    port = free_port()
    home = tmp_path / "b"
    home.mkdir()
    proc = subprocess.Popen(
        mtor_command("broker", "serve", "--host", "127.0.0.1", "--port", str(port), "--db", str(tmp_path / "b.db")),
        env=process_env(home), stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL, preexec_fn=lower, cwd=home,
    )
    try:
        wait_healthy(url_for(port))
        limits = Path(f"/proc/{proc.pid}/limits").read_text()
        (line,) = [row for row in limits.splitlines() if row.startswith("Max open files")]
        assert line.split()[3:5] == [str(hard), str(hard)], line
    finally:
        stop_process(proc)
