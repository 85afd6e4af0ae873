"""/ws/realm as a peer realm written by the test sees it: pinning, signed frames, caps and credit.

Realm B serves "shared" (one worker that takes a job and sits on it until
released, so the test decides when B is busy) and is pinned with realm C,
which serves "shared" too. The test's own realm X (a RawPeer with its own
key) is pinned in B with a small credit limit and queue cap; B charges
through a dict billing (price 100, cost 60 per intent).
"""

from __future__ import annotations

import asyncio
import sqlite3
import time
from collections.abc import Iterator
from typing import Any

import pytest

from broker.federation import RealmKey
from broker.protocol import Cancel, Error, Forward, RealmHello, RealmWelcome, Receipt, Result, encode
from tests.support.billing import PRICE, DictBilling
from tests.support.federation import Grid, RawPeer, pin, seal
from tests.support.peers import FakeWorker, echo, hang
from tests.support.realm import wait_until
from worker.backends.base import Device
from worker.backends.echo import EchoBackend

X = RealmKey(bytes.fromhex("11" * 32))  # the test's own realms: X with a small credit limit ...
Y = RealmKey(bytes.fromhex("33" * 32))  # ... and Y with a small queue cap
CREDIT = 250
QUEUED = 2


@pytest.fixture(scope="module")
def grid(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Grid]:
    billing = DictBilling({X.address: 10_000, Y.address: 10_000})
    grid = Grid(tmp_path_factory.mktemp("wire"), "bc", billing={"b": billing}).start()
    try:
        grid.billing = billing  # type: ignore[attr-defined]
        grid.worker = grid.realms["b"].call(  # type: ignore[attr-defined]
            FakeWorker(grid.url("b"), intents=("echo",), models=("shared",), slots=1, behaviour=echo()).start()
        )
        grid.realms["c"].add_worker([EchoBackend("shared", Device())], slots=4)
        grid.realms["c"].wait_workers(1)
        grid.pin_both("b", "c")
        pin(grid.dbs["b"], "x", "ws://127.0.0.1:9", X.address, max_credit=CREDIT, max_queued=100)
        pin(grid.dbs["b"], "y", "ws://127.0.0.1:9", Y.address, max_credit=10**9, max_queued=QUEUED)
        grid.wait_linked("b", "c", "echo")
        wait_until(lambda: len(grid.view("b").get("peers", [])) == 3, 10, "B to pin X and Y")
        yield grid
    finally:
        worker = getattr(grid, "worker", None)
        if worker is not None:
            grid.realms["b"].call(worker.close())
        grid.stop()


def _forward(guid: str, prompt: str = "one two", max_price: int | None = PRICE) -> Forward:
    return Forward(guid=guid, intent="echo", prompt=prompt, model="shared", max_price=max_price)


def _bad_frames(url: str) -> dict[str, float]:
    import urllib.request

    text = urllib.request.urlopen(url.replace("ws://", "http://") + "/metrics", timeout=5).read().decode()
    found: dict[str, float] = {}
    for line in text.splitlines():
        if line.startswith('mtor_bad_frames_total{') and 'socket="realm"' in line:
            code = line.split('code="')[1].split('"')[0]
            found[code] = float(line.rsplit(" ", 1)[1])
    return found


async def test_an_unpinned_realm_is_refused(grid: Grid) -> None:
    stranger = RealmKey(bytes.fromhex("22" * 32))
    peer = await RawPeer(stranger, grid.keys["b"]).connect(grid.url("b"))
    try:
        (answer,) = await peer.hello()
        assert answer["type"] == "error" and answer["code"] == "not_peer"
        assert await peer.closed() == 4001
    finally:
        await peer.close()


async def test_a_pinned_realm_is_welcomed_with_a_signed_pool(grid: Grid) -> None:
    peer = await RawPeer(X, grid.keys["b"]).connect(grid.url("b"))
    try:
        frames = await peer.hello()
        welcome = frames[0]
        assert isinstance(welcome, RealmWelcome) and welcome.realm == "b"
        assert [(c.intent, c.models) for c in welcome.pool.capabilities] == [("echo", ["shared"])]  # B's own only
        assert welcome.pool.credit_limit == CREDIT
    finally:
        await peer.close()


async def test_forged_replayed_and_out_of_window_frames_are_refused(grid: Grid) -> None:
    before = _bad_frames(grid.url("b"))
    b = grid.keys["b"]
    hello = encode(RealmHello(realm="x"))

    async def refused(data: bytes) -> str:
        peer = await RawPeer(X, b).connect(grid.url("b"))
        try:
            await peer.send_raw(data)
            (answer,) = await peer.receive()
            assert await peer.closed() == 4001
            return str(answer["code"])
        finally:
            await peer.close()

    now = int(time.time() * 1000)
    assert await refused(seal(X, b, [hello], ts_ms=now - 61_000)) == "frame_expired"
    assert await refused(seal(X, b, [hello], ts_ms=now + 61_000)) == "frame_expired"
    assert await refused(seal(X, X.address, [hello])) == "not_peer"  # for another realm
    forged = seal(X, b, [hello]).replace(b'"realm":"x"', b'"realm":"y"')
    assert await refused(forged) == "bad_signature"

    # A replayed hello: the same envelope again, on a new connection.
    first = await RawPeer(X, b).connect(grid.url("b"))
    try:
        data = seal(X, b, [hello])
        await first.send_raw(data)
        assert isinstance((await first.receive())[0], RealmWelcome)
        assert await refused(data) == "frame_replayed"
        # A forged forward on a welcomed connection ends it, and nothing runs.
        forward = seal(X, b, [encode(_forward("f" * 32, prompt="forged prompt"))])
        await first.send_raw(forward.replace(b"forged prompt", b"evil! prompt!"))
        errors: list[Error] = []
        while not errors:  # the refusal is signed now: B knows who it talks to
            errors += [m for m in await first.receive() if isinstance(m, Error)]
        assert errors[0].code == "bad_signature"
        assert await first.closed() == 4001
    finally:
        await first.close()
    with sqlite3.connect(grid.dbs["b"]) as conn:
        prompts = [q for (q,) in conn.execute("SELECT query FROM intents")]
    assert not any("forged" in q or "evil" in q for q in prompts)
    after = _bad_frames(grid.url("b"))
    for code, more in (("frame_expired", 2), ("not_peer", 1), ("bad_signature", 2), ("frame_replayed", 1)):
        assert after.get(code, 0) - before.get(code, 0) == more, (code, before, after)


async def _release(worker: FakeWorker, peer: RawPeer) -> None:
    """Close the peer's connection: B cancels its intents and the worker lets go of them."""
    worker.behaviour = echo()
    await peer.close()
    wait_until(lambda: not worker.running, 10, "B's worker to let go of the closed peer's intents")


async def test_a_peer_counts_as_one_user_within_its_credit(grid: Grid) -> None:
    worker: FakeWorker = grid.worker  # type: ignore[attr-defined]
    billing: DictBilling = grid.billing  # type: ignore[attr-defined]
    worker.behaviour = hang()  # B's only worker holds the first job: the next waits in B's queue
    peer = await RawPeer(X, grid.keys["b"]).connect(grid.url("b"))
    answers: dict[str, list[Any]] = {}

    async def read(*guids: str) -> None:
        while not all(any(isinstance(m, (Result, Error)) for m in answers.get(g, [])) for g in guids):
            for msg in await peer.receive():
                guid = getattr(msg, "guid", None)
                if guid and not isinstance(msg, Receipt):
                    answers.setdefault(guid, []).append(msg)

    try:
        await peer.hello()
        ids = [f"{i:032x}" for i in range(1, 5)]
        # Two in flight at price 100 each: 200 of X's credit of 250; a third would pass it.
        await peer.send([_forward(ids[0]), _forward(ids[1])])
        wait_until(lambda: len(worker.running) == 1, 10, "B's worker to take the first forward")
        await peer.send([_forward(ids[2])])
        await read(ids[2])
        refused = answers[ids[2]][0]
        assert isinstance(refused, Error) and refused.code == "peer_credit_exceeded"
        assert refused.detail["limit"] == CREDIT and refused.detail["used"] == 2 * PRICE

        # X cancels the held one (never charged); the other runs, and its receipt follows.
        worker.behaviour = echo()
        await peer.send([Cancel(guid=ids[0])])
        await read(ids[0], ids[1])
        assert answers[ids[0]][-1].code == "cancelled"
        result = next(m for m in answers[ids[1]] if isinstance(m, Result))
        assert result.text == "one two" and result.guid == ids[1]
        receipts: list[Receipt] = []
        while not receipts:
            receipts += [m for m in await peer.receive() if isinstance(m, Receipt)]
        assert [(r.guid, r.cost, r.seq, r.total) for r in receipts] == [(ids[1], 60, 1, 60)]

        # The same forward again (a retry): the stored result and the same receipt, never a second charge.
        await peer.send([_forward(ids[1])])
        again: list[Any] = []
        while not any(isinstance(m, Receipt) for m in again):
            again += await peer.receive()
        assert [m.replayed for m in again if isinstance(m, Result)] == [True]
        assert [(r.seq, r.total) for r in again if isinstance(r, Receipt)] == [(1, 60)]
        assert [c for c in billing.calls if c[0] == "capture" and c[1] == ids[1]] == [
            ("capture", ids[1], worker.account.address, "echo")
        ]
    finally:
        await _release(worker, peer)
    owed = grid.peer("b", "x")["credit"]["owed_to_us"]
    assert owed["charged"] == 60 and owed["in_flight"] == 0 and owed["used"] == 60


async def test_a_peer_over_its_queue_cap_is_told_queue_full(grid: Grid) -> None:
    worker: FakeWorker = grid.worker  # type: ignore[attr-defined]
    worker.behaviour = hang()
    peer = await RawPeer(Y, grid.keys["b"]).connect(grid.url("b"))
    try:
        await peer.hello()
        ids = [f"{i:032x}" for i in range(100, 104)]
        await peer.send([_forward(i) for i in ids])  # one runs, two wait (Y's cap), one is refused
        refusals: list[Error] = []
        while not refusals:
            refusals += [m for m in await peer.receive() if isinstance(m, Error) and m.guid]
        assert [(e.guid, e.code, e.detail.get("scope")) for e in refusals] == [(ids[3], "queue_full", "peer")]
        assert grid.peer("b", "y")["served"]["live"] == 3
    finally:
        await _release(worker, peer)
    # Y's connection closed: its intents at B were cancelled and their holds released.
    owed = grid.peer("b", "y")["credit"]["owed_to_us"]
    assert owed["in_flight"] == 0 and owed["charged"] == 0


async def test_an_intent_from_a_peer_never_goes_to_another_peer(grid: Grid) -> None:
    worker: FakeWorker = grid.worker  # type: ignore[attr-defined]
    worker.behaviour = hang()
    peer = await RawPeer(Y, grid.keys["b"]).connect(grid.url("b"))
    try:
        await peer.hello()
        await peer.send([_forward(f"{200:032x}"), _forward(f"{201:032x}")])
        wait_until(lambda: grid.peer("b", "y")["served"]["live"] == 2, 10, "both forwards at B")
        await asyncio.sleep(1.0)  # C, B's peer, has free slots for "shared" all along
        with sqlite3.connect(grid.dbs["c"]) as conn:
            from_b = conn.execute("SELECT count(*) FROM intents WHERE user = ?", (grid.keys["b"],)).fetchone()[0]
        assert from_b == 0
        assert grid.peer("b", "y")["served"]["live"] == 2
    finally:
        await _release(worker, peer)


async def test_an_ack_not_signed_on_chain_by_the_peer_for_this_realm_is_ignored(grid: Grid) -> None:
    from broker.federation import FederationStore, federation_path
    from broker.federation.settlement import Escrow, sign_ack
    from broker.protocol import Ack

    b, c = grid.keys["b"], grid.keys["c"]
    escrow = Escrow(31337, "0x" + "ab" * 20)
    forged = sign_ack(Ack(seq=0, total=0), Y, b, escrow)  # Y's word, not X's
    elsewhere = sign_ack(Ack(seq=0, total=0), X, c, escrow)  # X's word, but to C
    genuine = sign_ack(Ack(seq=0, total=0), X, b, escrow)
    bad_acks = grid.peer("b", "x")["served"]["traffic"].get("bad_acks", 0)
    peer = await RawPeer(X, b).connect(grid.url("b"))
    try:
        await peer.hello()
        await peer.send([forged, elsewhere])
        await peer.send([genuine])

        def kept() -> bool:
            store = FederationStore(federation_path(grid.dbs["b"]))
            try:
                ack = store.signed_ack(X.address)
            finally:
                store.close()
            return ack is not None and ack.signature == genuine.signature

        wait_until(kept, 10, "B to keep X's genuine ack")
        assert grid.peer("b", "x")["served"]["traffic"].get("bad_acks", 0) == bad_acks + 2
    finally:
        await peer.close()
