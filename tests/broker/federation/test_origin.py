"""A realm forwarding to a peer that the test plays: what the peer sees, and receipts that fail the audit.

Realm A charges its users through a dict billing (price 100, cost 60) and
pins realm H, which the test serves on a real socket with its own key: H
sees every frame A sends it and answers whatever the test scripts.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Iterator
from typing import Any

import aiohttp
import pytest
from aiohttp import web

from broker.federation import RealmKey
from broker.federation.envelope import Opener, Pinned, Sealer, SeenNonces
from broker.protocol import (
    Ack,
    Capability,
    Forward,
    Msg,
    Ping,
    Pong,
    Pool,
    RealmHello,
    RealmWelcome,
    Receipt,
    Result,
    Token,
    Usage,
    encode,
    origin_decoder,
)
from mtor_cli.client import RealmClient, RealmError, new_guid
from tests.support.billing import PRICE, DictBilling
from tests.support.federation import Grid, pin
from tests.support.peers import new_account
from tests.support.realm import free_port, url_for, wait_until

H = RealmKey(bytes.fromhex("44" * 32))
USER = new_account()


class PeerRealm:
    """Realm H: welcomes A, records what A sends, answers each forward as ``answer`` says."""

    def __init__(self, a_address: str) -> None:
        self.a = a_address
        self.port = free_port()
        self.forwards: list[Forward] = []
        self.acks: list[Ack] = []
        self.answer: Callable[[Forward], list[Msg]] = lambda fwd: []
        self.hellos = 0
        self._runner: web.AppRunner | None = None
        self._decoder = origin_decoder()

    @property
    def url(self) -> str:
        return url_for(self.port)

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/ws/realm", self._socket)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _socket(self, request: web.Request) -> web.WebSocketResponse:
        ws = web.WebSocketResponse()
        await ws.prepare(request)
        opener = Opener(H.address, SeenNonces(60), not_before=0)
        pinned = Pinned(self.a)
        sealer = Sealer(H, self.a)

        async def send(*msgs: Msg) -> None:
            await ws.send_str(sealer.seal([encode(m) for m in msgs]).decode())

        async for frame in ws:
            if frame.type != aiohttp.WSMsgType.TEXT:
                break
            opened = opener.open(frame.data, lambda origin: pinned if origin == self.a else None)  # A signed it
            for raw in opened.frames:
                msg = self._decoder.decode(raw)
                if isinstance(msg, RealmHello):
                    self.hellos += 1
                    pool = Pool(capabilities=[Capability(intent="echo", models=["h-model"])], slots=4, free=4, room=4)
                    await send(RealmWelcome(realm="h", pool=pool))
                elif isinstance(msg, Forward):
                    self.forwards.append(msg)
                    answer = self.answer(msg)
                    if answer:
                        await send(*answer)
                elif isinstance(msg, Ack):
                    self.acks.append(msg)
                elif isinstance(msg, Ping):
                    await send(Pong(nonce=msg.nonce, ts=msg.ts))
        return ws


def served(fwd: Forward, cost: int, seq: int, total: int, receipt_guid: str | None = None) -> list[Msg]:
    """A's forward, done: its text, the result and a receipt for ``cost``."""
    return [
        Token(guid=fwd.guid, text=fwd.prompt),
        Result(guid=fwd.guid, intent=fwd.intent, text=fwd.prompt, model="h-model", worker="h-w1",
               usage=Usage(completion_tokens=2), cost=cost),
        Receipt(guid=receipt_guid or fwd.guid, worker="h-w1", cost=cost, seq=seq, total=total),
    ]


@pytest.fixture(scope="module")
def realm_a(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grid]:
    billing = DictBilling({USER.address: 10_000})
    grid = Grid(tmp_path_factory.mktemp("origin"), "a", billing={"a": billing}).start()
    try:
        yield grid
    finally:
        grid.stop()


@pytest.fixture
async def peer_h(realm_a: Grid) -> AsyncIterator[PeerRealm]:
    h = PeerRealm(realm_a.keys["a"])
    await h.start()
    pin(realm_a.dbs["a"], "h", h.url, H.address)
    try:
        await asyncio.to_thread(realm_a.wait_linked, "a", "h", "echo")
        yield h
    finally:
        from tests.support.federation import unpin

        unpin(realm_a.dbs["a"], "h")
        await asyncio.to_thread(wait_until, lambda: not realm_a.view("a")["peers"], 10, "A to drop H")
        await h.stop()


async def _ask(grid: Grid, **fields: Any) -> Any:
    async with RealmClient(grid.url("a"), USER) as client:
        return await client.ask("hello peer", intent="echo", model="h-model", timeout=10, **fields)


async def test_a_peer_sees_only_what_the_intent_needs_and_is_acknowledged(realm_a: Grid, peer_h: PeerRealm) -> None:
    peer_h.answer = lambda fwd: served(fwd, 60, 1, 60)
    guid = new_guid()
    result = await _ask(realm_a, guid=guid, params={"delay_s": 0.0})
    assert result.text == "hello peer" and result.cost == 60  # A charged its user as usual
    (fwd,) = peer_h.forwards
    assert fwd.guid != guid and len(fwd.guid) == 32  # not the user's guid
    assert (fwd.intent, fwd.prompt, fwd.model, fwd.params) == ("echo", "hello peer", "h-model", {"delay_s": 0.0})
    assert fwd.max_price == PRICE  # the most A pays: what it holds from its user
    assert fwd.user is None  # never the user's address unless they opt in
    await asyncio.to_thread(wait_until, lambda: peer_h.acks, 10, "A's acknowledgement")
    assert (peer_h.acks[-1].seq, peer_h.acks[-1].total, peer_h.acks[-1].disputed) == (1, 60, [])
    owe = realm_a.peer("a", "h")["credit"]["we_owe"]
    assert (owe["accepted"], owe["receipts"], owe["disputed"]) == (60, 1, 0)

    # A user who opts in lets the peer see their address.
    peer_h.answer = lambda fwd: served(fwd, 60, 2, 120)
    await _ask(realm_a, share_address=True)
    assert peer_h.forwards[-1].user == USER.address


async def test_a_receipt_that_fails_the_audit_is_disputed_and_the_peer_quarantined(
    realm_a: Grid, peer_h: PeerRealm
) -> None:
    before = realm_a.peer("a", "h")["credit"]["we_owe"]
    peer_h.answer = lambda fwd: served(fwd, PRICE + 50, 3, 270)  # above the price A offered
    result = await _ask(realm_a)
    assert result.text == "hello peer"  # the user got the work; the charge between realms is disputed

    def disputed() -> dict[str, Any]:
        return realm_a.peer("a", "h")["credit"]["we_owe"]

    await asyncio.to_thread(wait_until, lambda: disputed()["disputed"] == before["disputed"] + 1, 10, "the dispute")
    assert disputed()["accepted"] == before["accepted"]  # left out of what A owes
    await asyncio.to_thread(wait_until, lambda: peer_h.acks and peer_h.acks[-1].disputed, 10, "the disputed ack")
    assert peer_h.acks[-1].disputed == [peer_h.forwards[-1].guid]
    assert realm_a.peer("a", "h")["link"]["health"]["state"] == "quarantined"
    with pytest.raises(RealmError) as refused:
        await _ask(realm_a)
    assert refused.value.code == "no_worker"  # a quarantined peer serves nothing
