"""Intents that act on the asker's own accounts (email) reach only the asker's own worker.

A stranger's worker serving email must never see anyone else's email
request, and a person's email worker must never serve anyone else: the
broker routes such an intent only to a worker registered by the same
address as the person asking. Intents are owner-only by the realm's
setting (email by default) or by their capability's declaration (a plugin).
"""

from __future__ import annotations

from typing import Any

from broker.protocol import Error, Result
from tests.broker.conftest import get_json
from tests.support.peers import FakeWorker, TestClient, new_account


async def ask(client: TestClient, intent: str, prompt: str = "read my latest emails") -> Any:
    return (await client.collect(await client.submit(prompt, intent=intent)))[-1]


async def test_email_goes_only_to_the_askers_own_worker(broker: Any) -> None:
    alice, mallory, bob = new_account(), new_account(), new_account()
    # Both workers serve email and neither declares anything: the realm's rule applies.
    alices = await FakeWorker(broker.url, intents=("email", "chat"), account=alice, slots=4).start()
    mallorys = await FakeWorker(broker.url, intents=("email", "chat"), account=mallory, slots=4).start()
    async with TestClient(broker.url, alice) as as_alice, TestClient(broker.url, bob) as as_bob:
        served = [await ask(as_alice, "email") for _ in range(6)]
        assert all(isinstance(r, Result) and r.worker == alices.worker_id for r in served)
        refused = await ask(as_bob, "email")
        assert isinstance(refused, Error) and refused.code == "no_worker"
        assert refused.message == "no worker of yours serves intent 'email'"
        assert "runs only on a worker registered with your own key" in refused.hint
        # Everything else is shared as before: Bob's chat may go to either worker.
        chats = {(await ask(as_bob, "chat", "hi")).worker for _ in range(8)}
        assert chats <= {alices.worker_id, mallorys.worker_id}
    assert all(w.intent != "email" for w in mallorys.received)  # the stranger saw no one's mail request
    workers = {w["id"]: w for w in (await get_json(broker, "/v1/workers"))["workers"]}
    caps = {c["intent"]: c["owner_only"] for c in workers[alices.worker_id]["capabilities"]}
    assert caps == {"email": True, "chat": False}
    await alices.close()
    await mallorys.close()


async def test_a_plugin_intent_declared_owner_only_is_kept_to_its_owner(broker: Any) -> None:
    alice, bob = new_account(), new_account()
    worker = await FakeWorker(broker.url, intents=("calendar",), account=alice, owner_only=("calendar",)).start()
    async with TestClient(broker.url, alice) as as_alice, TestClient(broker.url, bob) as as_bob:
        mine = await ask(as_alice, "calendar", "what is on today")
        assert isinstance(mine, Result) and mine.worker == worker.worker_id
        theirs = await ask(as_bob, "calendar", "what is on today")
        assert isinstance(theirs, Error) and theirs.code == "no_worker"
    assert [w.prompt for w in worker.received] == ["what is on today"]
    await worker.close()


async def test_a_queued_email_waits_for_its_owners_worker(broker: Any) -> None:
    alice, mallory = new_account(), new_account()
    busy = await FakeWorker(broker.url, intents=("email",), account=alice, slots=1).start()
    strangers = await FakeWorker(broker.url, intents=("email",), account=mallory, slots=4).start()
    import asyncio

    from tests.support.peers import echo

    busy.behaviour = echo(delay_s=0.05)
    async with TestClient(broker.url, alice) as as_alice:
        guids = [await as_alice.submit("read my mail", intent="email") for _ in range(3)]
        results = await asyncio.gather(*(as_alice.collect(g) for g in guids))
    # One slot at a time on Alice's worker; Mallory's free slots were never used.
    assert all(r[-1].worker == busy.worker_id for r in results)
    assert strangers.received == []
    await busy.close()
    await strangers.close()
