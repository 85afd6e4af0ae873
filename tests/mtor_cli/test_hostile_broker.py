"""Something posing as a broker, sending frames built to crash the client.

`mtor ask` runs as its own process, so a crash is a dead process, not a dead
test session.
"""

from __future__ import annotations

import asyncio
import secrets
import sys
from pathlib import Path

from aiohttp import web

from broker.protocol import Accepted, Challenge, Result, Token, Welcome, client_decoder, encode_str
from tests.support.realm import process_env

DEEP = 50_000


async def _hostile_broker(request: web.Request) -> web.WebSocketResponse:
    ws = web.WebSocketResponse()
    await ws.prepare(request)
    decoder = client_decoder()
    await ws.send_str(encode_str(Challenge(nonce=secrets.token_hex(16))))
    hello = decoder.decode((await ws.receive()).data)
    await ws.send_str(encode_str(Welcome(address=hello.address)))
    query = decoder.decode((await ws.receive()).data)
    guid = query.guid
    await ws.send_str(encode_str(Accepted(guid=guid, intent="echo")))
    await ws.send_str('{"type":"stats","topic":"stats","data":{"a":' + "[" * DEEP + "]" * DEEP + "}}")
    await ws.send_str('{"type":"token","guid":"' + guid + '","text":' + '{"a":' * DEEP + "1" + "}" * DEEP + "}")
    await ws.send_str("[" * (4 * DEEP))
    await ws.send_str(encode_str(Token(guid=guid, text="fine")))
    await ws.send_str(encode_str(Result(guid=guid, intent="echo", text="fine")))
    await ws.receive()
    return ws


async def test_mtor_ask_ignores_deeply_nested_frames(tmp_path: Path) -> None:
    app = web.Application()
    app.router.add_get("/ws/client", _hostile_broker)
    runner = web.AppRunner(app)
    await runner.setup()
    site = web.TCPSite(runner, "127.0.0.1", 0)
    await site.start()
    port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]
    try:
        proc = await asyncio.create_subprocess_exec(
            sys.executable, "-m", "mtor_cli", "ask", "--broker", f"ws://127.0.0.1:{port}", "-i", "echo", "hi",
            env=process_env(tmp_path / "home"), stdout=asyncio.subprocess.PIPE, stderr=asyncio.subprocess.PIPE,
        )
        out, err = await asyncio.wait_for(proc.communicate(), 120)
    finally:
        await runner.cleanup()
    assert proc.returncode == 0, err.decode()[-2000:]
    assert out.decode().strip() == "fine"
