"""Federated realms for tests: brokers on 127.0.0.1 that pin each other, and a raw peer realm.

    grid = Grid(tmp_path, "abc").start()        # three brokers, each with its realm key
    grid.pin_both("a", "c")                     # a and c pin each other (as `mtor federation peer add` does)
    grid.wait_linked("a", "c")                  # a dialled c and c welcomed it
    grid.realms["c"].add_worker([EchoBackend("only-c", Device())])

    peer = RawPeer(key, grid.keys["a"])         # a realm written by the test, on a real socket
    await peer.connect(grid.realms["a"].url)
    await peer.send([hello])                    # sealed with any timestamp, nonce or tampering
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import aiohttp
import msgspec

from broker.federation import FederationStore, PeerRecord, RealmKey, federation_path, realm_key_path
from broker.federation.envelope import digest
from broker.protocol import Msg, RealmEnvelope, RealmHello, encode, serving_decoder
from tests.support.realm import ThreadRealm, free_port, get_json, url_for, wait_until

ONE = 10**18  # one $9000 in base units


def realm_key(db: Path) -> RealmKey:
    return RealmKey.load_or_create(realm_key_path(db))


def pin(db: Path, name: str, url: str, address: str, *, max_credit: int = 100 * ONE, max_queued: int = 100) -> None:
    """Pin a peer in the realm whose journal is ``db`` (what `mtor federation peer add` writes)."""
    store = FederationStore(federation_path(db))
    try:
        store.add_peer(PeerRecord(name, url, address, max_credit, max_queued, time.time()))
    finally:
        store.close()


def unpin(db: Path, name: str) -> None:
    store = FederationStore(federation_path(db))
    try:
        store.remove_peer(name)
    finally:
        store.close()


class Grid:
    """Realms named by letter: each a ThreadRealm on a port chosen up front, with its realm key."""

    def __init__(self, root: Path, names: str, billing: dict[str, Any] | None = None, **config: Any) -> None:
        self.dbs = {n: root / n / "broker.db" for n in names}
        self.keys: dict[str, str] = {}
        self.realms: dict[str, ThreadRealm] = {}
        for n, db in self.dbs.items():
            db.parent.mkdir(parents=True, exist_ok=True)
            self.keys[n] = realm_key(db).address
            settings = {"heartbeat_s": 0.5, "stats_interval_s": 0.05, "realm": n, "port": free_port(), **config}
            self.realms[n] = ThreadRealm(db, billing=(billing or {}).get(n), **settings)

    def url(self, name: str) -> str:
        return url_for(self.realms[name].config.port)

    def start(self) -> Grid:
        for realm in self.realms.values():
            realm.start()
        return self

    def stop(self) -> None:
        for realm in self.realms.values():
            realm.stop()

    def pin(self, me: str, other: str, **limits: Any) -> None:
        """``me`` pins ``other`` (``limits``: what ``other`` may use of ``me``)."""
        pin(self.dbs[me], other, self.url(other), self.keys[other], **limits)

    def pin_both(self, a: str, b: str, **limits: Any) -> None:
        self.pin(a, b, **limits)
        self.pin(b, a, **limits)

    def view(self, name: str) -> dict[str, Any]:
        return get_json(self.url(name), "/v1/federation") or {}

    def peer(self, me: str, other: str) -> dict[str, Any]:
        """``other`` as ``me``'s /v1/federation shows it."""
        for row in self.view(me).get("peers", []):
            if row["name"] == other:
                return dict(row)
        raise AssertionError(f"{me} has no peer {other}")

    def wait_linked(self, origin: str, serving: str, intent: str | None = None, timeout: float = 30) -> None:
        """``origin`` dialled ``serving`` and was welcomed (and sees ``intent`` in its pool)."""

        def linked() -> bool:
            try:
                link = self.peer(origin, serving)["link"]
            except AssertionError:
                return False
            pool = link.get("pool") or {}
            return link.get("state") == "connected" and (intent is None or intent in pool.get("intents", {}))

        wait_until(linked, timeout, f"{origin} linked to {serving}" + (f" serving {intent}" if intent else ""))


def seal(key: RealmKey, dest: str, frames: Sequence[bytes], ts_ms: int | None = None, nonce: str | None = None) -> bytes:
    """An envelope as a realm seals one, with any timestamp and nonce the test picks."""
    ts = int(time.time() * 1000) if ts_ms is None else ts_ms
    nonce = nonce or secrets.token_hex(8)
    hashes = [hashlib.sha256(f).digest() for f in frames]
    signature = key.sign(digest(key.address, dest, ts, nonce, hashes))
    return encode(
        RealmEnvelope(origin=key.address, dest=dest, ts=ts, nonce=nonce, frames=[msgspec.Raw(f) for f in frames],
                      sig="0x" + signature.hex())
    )


class RawPeer:
    """A peer realm the test writes frame by frame, on a real socket to a realm's /ws/realm."""

    def __init__(self, key: RealmKey, dest: str) -> None:
        self.key = key
        self.dest = dest
        self._http: aiohttp.ClientSession | None = None
        self.ws: aiohttp.ClientWebSocketResponse | None = None
        self._decoder = serving_decoder()

    async def connect(self, url: str) -> RawPeer:
        self._http = aiohttp.ClientSession()
        self.ws = await self._http.ws_connect(url + "/ws/realm")
        return self

    async def send_raw(self, data: bytes) -> None:
        assert self.ws is not None
        await self.ws.send_str(data.decode())

    async def send(self, msgs: Sequence[Msg], **envelope: Any) -> bytes:
        data = seal(self.key, self.dest, [encode(m) for m in msgs], **envelope)
        await self.send_raw(data)
        return data

    async def hello(self) -> list[Any]:
        await self.send([RealmHello(realm="raw")])
        return await self.receive()

    async def receive(self, timeout: float = 10.0) -> list[Any]:
        """The next frame's messages: an envelope's frames (unchecked), or a bare error."""
        assert self.ws is not None
        frame = await asyncio.wait_for(self.ws.receive(), timeout)
        if frame.type != aiohttp.WSMsgType.TEXT:
            return [frame.type]
        if frame.data.startswith('{"type":"realm"'):
            env = msgspec.json.decode(frame.data, type=RealmEnvelope)
            return [self._decoder.decode(f) for f in env.frames]
        return [msgspec.json.decode(frame.data)]

    async def closed(self, timeout: float = 10.0) -> int | None:
        """Wait for the realm to close the socket; its close code."""
        assert self.ws is not None
        deadline = time.monotonic() + timeout
        while not self.ws.closed and time.monotonic() < deadline:
            frame = await asyncio.wait_for(self.ws.receive(), max(0.01, deadline - time.monotonic()))
            if frame.type in (aiohttp.WSMsgType.CLOSE, aiohttp.WSMsgType.CLOSED, aiohttp.WSMsgType.CLOSING):
                break
        return self.ws.close_code

    async def close(self) -> None:
        if self.ws is not None:
            await self.ws.close()
        if self._http is not None:
            await self._http.close()
