"""Protocol peers for tests: a signed client and a scriptable fake worker.

Both speak the real bus over a real aiohttp WebSocket, sign the broker's
challenge with a real key, and decode with broker.protocol, so a test sees
exactly what a user's client or a volunteer's worker would.

    async with TestClient(broker.url) as c:
        guid = await c.submit("hello there", intent="chat")
        msgs = await c.collect(guid)          # accepted, token..., result

    w = FakeWorker(broker.url, intents=("chat",), slots=2, behaviour=echo(delay_s=0.01))
    await w.start()
"""

from __future__ import annotations

import asyncio
import uuid
from collections import defaultdict
from collections.abc import Awaitable, Callable
from typing import Any

import aiohttp
import msgspec
from eth_account import Account

from broker.protocol import (
    Capability,
    Error,
    Failed,
    Hello,
    Msg,
    Pong,
    Register,
    Result,
    SubmitQuery,
    Token,
    Usage,
    Work,
    WorkResult,
    encode,
    server_to_client_decoder,
    server_to_worker_decoder,
    sign_challenge,
)

DEFAULT_TIMEOUT = 10.0


def new_account() -> Any:
    return Account.create()


class _Socket:
    """A WebSocket with a reader task that sorts frames by guid."""

    def __init__(self, url: str, path: str, decoder: msgspec.json.Decoder[Any]) -> None:
        self.url = url.rstrip("/") + path
        self._decoder = decoder
        self._http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self.by_guid: dict[str, asyncio.Queue[Any]] = defaultdict(asyncio.Queue)
        self.other: asyncio.Queue[Any] = asyncio.Queue()  # frames without a guid
        self.closed = asyncio.Event()
        self.close_code: int | None = None

    async def open(self) -> None:
        self._http = aiohttp.ClientSession()
        self.ws = await self._http.ws_connect(self.url, max_msg_size=64 * 1024 * 1024)
        self._reader = asyncio.create_task(self._read())

    async def _read(self) -> None:
        assert self.ws is not None
        try:
            async for frame in self.ws:
                if frame.type != aiohttp.WSMsgType.TEXT:
                    break
                msg = self._decoder.decode(frame.data)
                await self.on_message(msg)
        finally:
            self.close_code = self.ws.close_code
            self.closed.set()

    async def on_message(self, msg: Any) -> None:
        guid = getattr(msg, "guid", None)
        if guid:
            self.by_guid[guid].put_nowait(msg)
        else:
            self.other.put_nowait(msg)

    async def send(self, msg: Msg | dict[str, Any] | str | bytes) -> None:
        assert self.ws is not None
        if isinstance(msg, Msg):
            await self.ws.send_str(encode(msg).decode())
        elif isinstance(msg, dict):
            await self.ws.send_str(msgspec.json.encode(msg).decode())
        elif isinstance(msg, bytes):
            await self.ws.send_bytes(msg)
        else:
            await self.ws.send_str(msg)

    async def next_other(self, timeout: float = DEFAULT_TIMEOUT) -> Any:
        return await asyncio.wait_for(self.other.get(), timeout)

    async def next_for(self, guid: str, timeout: float = DEFAULT_TIMEOUT) -> Any:
        return await asyncio.wait_for(self.by_guid[guid].get(), timeout)

    async def close(self) -> None:
        if self.ws is not None and not self.ws.closed:
            await self.ws.close()
        if self._reader is not None:
            try:
                await asyncio.wait_for(self._reader, 5)
            except (TimeoutError, asyncio.CancelledError):
                self._reader.cancel()
        if self._http is not None:
            await self._http.close()


class TestClient(_Socket):
    """A signed client of /ws/client."""

    __test__ = False  # not a pytest class

    def __init__(self, url: str, account: Any | None = None) -> None:
        super().__init__(url, "/ws/client", server_to_client_decoder())
        self.account = account or new_account()
        self.address: str = self.account.address
        self.nonce = ""
        self.welcome: Any = None

    async def connect(self, hello: bool = True) -> TestClient:
        await self.open()
        challenge = await self.next_other()
        assert challenge.__class__.__name__ == "Challenge", challenge
        self.nonce = challenge.nonce
        if hello:
            self.welcome = await self.hello()
        return self

    async def hello(self, nonce: str | None = None, signature: str | None = None) -> Any:
        nonce = nonce if nonce is not None else self.nonce
        sig = signature or sign_challenge(self.account.key, nonce, "client")
        await self.send(Hello(address=self.address, signature=sig, nonce=nonce))
        return await self.next_other()  # welcome or error

    async def __aenter__(self) -> TestClient:
        return await self.connect()

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def submit(self, prompt: str = "hello world", guid: str | None = None, **fields: Any) -> str:
        guid = guid or uuid.uuid4().hex
        await self.send(SubmitQuery(guid=guid, prompt=prompt, **fields))
        return guid

    async def collect(self, guid: str, timeout: float = DEFAULT_TIMEOUT) -> list[Any]:
        """Every message for ``guid`` up to and including its result or error."""
        out: list[Any] = []
        while True:
            msg = await self.next_for(guid, timeout)
            out.append(msg)
            if isinstance(msg, (Result, Error)):
                return out

    async def ask(self, prompt: str = "hello world", timeout: float = DEFAULT_TIMEOUT, **fields: Any) -> Any:
        """Submit and return the final result or error."""
        guid = await self.submit(prompt, **fields)
        return (await self.collect(guid, timeout))[-1]


Behaviour = Callable[["FakeWorker", Work], Awaitable[None]]


def echo(delay_s: float = 0.0) -> Behaviour:
    """Stream the prompt back word by word, then the result."""

    async def run(w: FakeWorker, work: Work) -> None:
        words = work.prompt.split()
        for i, word in enumerate(words):
            if delay_s:
                await asyncio.sleep(delay_s)
            await w.send(Token(guid=work.guid, text=word if i == 0 else " " + word, index=i))
        await w.send(
            WorkResult(
                guid=work.guid,
                text=" ".join(words),
                model=work.model or "fake",
                usage=Usage(completion_tokens=len(words)),
            )
        )

    return run


def fail(retryable: bool = True, code: str = "worker_failed", message: str = "model crashed") -> Behaviour:
    async def run(w: FakeWorker, work: Work) -> None:
        await w.send(Failed(guid=work.guid, code=code, message=message, retryable=retryable))

    return run


def hang() -> Behaviour:
    """Take the job and never answer (until cancelled)."""

    async def run(w: FakeWorker, work: Work) -> None:
        await asyncio.Event().wait()

    return run


class FakeWorker(_Socket):
    """A scriptable worker of /ws/worker; ``behaviour`` decides what each job does
    and can be swapped at any time."""

    def __init__(
        self,
        url: str,
        intents: tuple[str, ...] = ("chat",),
        models: tuple[str, ...] = ("fake",),
        slots: int = 1,
        behaviour: Behaviour | None = None,
        account: Any | None = None,
        name: str = "fake",
        answer_pings: bool = True,
        owner_only: tuple[str, ...] = (),
    ) -> None:
        super().__init__(url, "/ws/worker", server_to_worker_decoder())
        self.owner_only = owner_only  # intents it declares for its own address only
        self.account = account or new_account()
        self.intents = intents
        self.models = models
        self.slots = slots
        self.behaviour = behaviour or echo()
        self.name = name
        self.answer_pings = answer_pings
        self.worker_id: str | None = None
        self.received: list[Work] = []
        self.cancels: list[str] = []
        self.errors: list[Error] = []
        self.running: dict[str, asyncio.Task[None]] = {}
        self.max_running = 0
        self.got_work = asyncio.Event()

    async def start(self) -> FakeWorker:
        await self.open()
        challenge = await self.next_other()
        sig = sign_challenge(self.account.key, challenge.nonce, "worker")
        await self.send(
            Register(
                address=self.account.address,
                signature=sig,
                nonce=challenge.nonce,
                capabilities=[
                    Capability(intent=i, models=list(self.models), owner_only=i in self.owner_only)
                    for i in self.intents
                ],
                slots=self.slots,
                name=self.name,
            )
        )
        welcome = await self.next_other()
        assert welcome.__class__.__name__ == "Welcome", welcome
        self.worker_id = welcome.worker_id
        return self

    async def on_message(self, msg: Any) -> None:
        kind = msg.__class__.__name__
        if kind == "Work":
            self.received.append(msg)
            self.got_work.set()
            task = asyncio.create_task(self._run(msg))
            self.running[msg.guid] = task
            self.max_running = max(self.max_running, len(self.running))
        elif kind == "Cancel":
            self.cancels.append(msg.guid)
            task = self.running.pop(msg.guid, None)
            if task is not None:
                task.cancel()
                await self.send(Failed(guid=msg.guid, code="cancelled", message="cancelled", retryable=False))
        elif kind == "Ping":
            if self.answer_pings:
                await self.send(Pong(nonce=msg.nonce, ts=msg.ts))
        elif kind == "Error":
            self.errors.append(msg)
            await super().on_message(msg)
        else:
            await super().on_message(msg)

    async def _run(self, work: Work) -> None:
        try:
            await self.behaviour(self, work)
        except (ConnectionError, asyncio.CancelledError):
            pass
        finally:
            if self.running.get(work.guid) is asyncio.current_task():
                del self.running[work.guid]

    async def close(self) -> None:
        for task in list(self.running.values()):
            task.cancel()
        await super().close()
