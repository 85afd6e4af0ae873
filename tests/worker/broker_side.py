"""The broker's side of /ws/worker, small enough to drive a Worker from a test.

It speaks broker/protocol.py over a real aiohttp WebSocket on 127.0.0.1: sends
the challenge, checks the register signature with recover_signer, welcomes the
worker, then lets the test send messages and read the worker's answers.
"""

from __future__ import annotations

import asyncio
import secrets
from typing import Any

from aiohttp import WSMsgType, web

from broker.protocol import (
    Challenge,
    Error,
    Msg,
    ProtocolError,
    Register,
    Welcome,
    encode_str,
    recover_signer,
    worker_decoder,
)


class WorkerConn:
    """One registered worker connection, as the broker sees it."""

    def __init__(self, ws: web.WebSocketResponse, register: Register, signer: str | None) -> None:
        self.ws = ws
        self.register = register
        self.signer = signer
        self.inbox: asyncio.Queue[Any] = asyncio.Queue()
        self.closed = asyncio.Event()

    async def send(self, msg: Msg) -> None:
        await self.ws.send_str(encode_str(msg))

    async def recv(self, timeout: float = 10.0) -> Any:
        return await asyncio.wait_for(self.inbox.get(), timeout)

    async def recv_until(self, guid: str, timeout: float = 20.0) -> list[Any]:
        """Messages for ``guid`` up to and including its result or failed."""
        got: list[Any] = []
        while True:
            msg = await self.recv(timeout)
            if getattr(msg, "guid", None) != guid:
                continue
            got.append(msg)
            if type(msg).__name__ in ("WorkResult", "Failed"):
                return got

    async def close(self) -> None:
        await self.ws.close()


class BrokerSide:
    """A WebSocket server on 127.0.0.1 that registers workers."""

    def __init__(self, *, reject_with: str | None = None) -> None:
        self.reject_with = reject_with
        self.conns: asyncio.Queue[WorkerConn] = asyncio.Queue()
        self.all: list[WorkerConn] = []
        self.port = 0
        self._runner: web.AppRunner | None = None
        self._decoder = worker_decoder()

    @property
    def url(self) -> str:
        return f"ws://127.0.0.1:{self.port}"

    async def start(self, port: int = 0) -> None:
        app = web.Application()
        app.router.add_get("/ws/worker", self._socket)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        site = web.TCPSite(self._runner, "127.0.0.1", port)
        await site.start()
        self.port = site._server.sockets[0].getsockname()[1]  # type: ignore[union-attr]

    async def stop(self) -> None:
        for conn in self.all:
            await conn.ws.close()
        if self._runner is not None:
            await self._runner.cleanup()
            self._runner = None

    async def next_worker(self, timeout: float = 30.0) -> WorkerConn:
        return await asyncio.wait_for(self.conns.get(), timeout)

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        nonce = secrets.token_hex(16)
        await ws.send_str(encode_str(Challenge(nonce=nonce)))
        first = await ws.receive()
        reg = self._decoder.decode(first.data)
        assert isinstance(reg, Register) and reg.nonce == nonce
        signer = recover_signer(nonce, "worker", reg.signature)
        if self.reject_with or signer != reg.address:
            code = self.reject_with or "bad_signature"
            await ws.send_str(encode_str(Error(code=code, message="registration refused")))
            await ws.close()
            return ws
        await ws.send_str(encode_str(Welcome(address=reg.address, worker_id=f"w{len(self.all)}")))
        conn = WorkerConn(ws, reg, signer)
        self.all.append(conn)
        await self.conns.put(conn)
        try:
            async for frame in ws:
                if frame.type == WSMsgType.TEXT:
                    try:
                        await conn.inbox.put(self._decoder.decode(frame.data))
                    except ProtocolError as exc:  # the test sees it as a message
                        await conn.inbox.put(exc)
        finally:
            conn.closed.set()
        return ws
