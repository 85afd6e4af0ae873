"""RealmClient against a real broker and echo workers on 127.0.0.1."""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from pathlib import Path

import pytest

from broker import protocol as p
from mtor_cli.client import RealmClient, RealmError, _Restream, http_url, new_guid, ws_url
from mtor_cli.identity import load_or_create_account
from tests.support.proxy import CutProxy
from tests.support.realm import ThreadRealm, free_port, url_for
from worker import Device
from worker.backends.echo import EchoBackend


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadRealm]:
    root = tmp_path_factory.mktemp("client-realm")
    with ThreadRealm(root / "journal.db", stats_interval_s=0.05) as realm:
        realm.add_worker([EchoBackend(None, Device())], slots=8)
        realm.wait_workers(1, "echo")
        yield realm


def test_url_normalisation() -> None:
    assert ws_url("127.0.0.1:8765") == "ws://127.0.0.1:8765/ws/client"
    assert ws_url("http://h:1/") == "ws://h:1/ws/client"
    assert ws_url("wss://h/ws/client") == "wss://h/ws/client"
    assert http_url("ws://h:1/ws/client", "/healthz") == "http://h:1/healthz"


async def test_handshake_signs_as_the_local_identity(realm: ThreadRealm) -> None:
    async with RealmClient(realm.url) as client:
        assert client.welcome is not None
        assert client.welcome.address == load_or_create_account().address


async def test_stream_order_and_text(realm: ThreadRealm) -> None:
    prompt = "one two three four five"
    query = p.SubmitQuery(guid=new_guid(), prompt=prompt, intent="echo")
    async with RealmClient(realm.url) as client:
        events = [event async for event in client.submit(query)]
    kinds = [type(e).__name__ for e in events]
    assert kinds[0] == "Accepted" and kinds[-1] == "Result"
    assert set(kinds[1:-1]) == {"Token"}
    tokens = "".join(e.text for e in events if isinstance(e, p.Token))
    result = events[-1]
    assert isinstance(result, p.Result)
    assert tokens == result.text == prompt
    assert result.guid == query.guid and result.intent == "echo" and result.worker


async def test_many_requests_multiplex_on_one_connection(realm: ThreadRealm) -> None:
    prompts = [f"request {n} says {'hi ' * n}".strip() for n in range(6)]
    streamed: dict[int, str] = {n: "" for n in range(6)}
    async with RealmClient(realm.url) as client:

        async def one(n: int) -> p.Result:
            def on_token(text: str) -> None:
                streamed[n] += text

            return await client.ask(prompts[n], intent="echo", params={"delay_s": 0.01}, on_token=on_token)

        results = await asyncio.gather(*(one(n) for n in range(6)))
    assert [r.text for r in results] == prompts
    assert [streamed[n] for n in range(6)] == prompts


async def test_cancel_a_running_request(realm: ThreadRealm) -> None:
    query = p.SubmitQuery(guid=new_guid(), prompt="a b c d e f g h", intent="echo", params={"delay_s": 0.3})
    async with RealmClient(realm.url) as client:
        seen: list[object] = []
        async for event in client.submit(query):
            seen.append(event)
            if isinstance(event, p.Token) and len(seen) == 2:
                await client.cancel(query.guid)
        last = seen[-1]
        assert isinstance(last, p.Error) and last.code == "cancelled"
        # the connection stays usable
        assert (await client.ask("still here", intent="echo")).text == "still here"


async def test_timeout_cancels_and_connection_survives(realm: ThreadRealm) -> None:
    async with RealmClient(realm.url) as client:
        with pytest.raises(RealmError) as caught:
            await client.ask("slow slow slow slow", intent="echo", params={"delay_s": 0.5}, timeout=0.3)
        assert caught.value.code == "timeout"
        assert "0.3s" in caught.value.message
        assert (await client.ask("after", intent="echo")).text == "after"


@pytest.mark.parametrize(
    ("intent", "params", "codes", "named"),
    [
        ("chat", {}, {"no_worker"}, "chat"),
        # The worker refuses it; the broker reports the worker's code or wraps it.
        ("echo", {"bogus": 1}, {"bad_params", "worker_failed"}, "bogus"),
        ("no-such-intent", {}, {"unknown_intent"}, "no-such-intent"),
    ],
)
async def test_rejections_carry_code_message_and_hint(
    realm: ThreadRealm, intent: str, params: dict[str, object], codes: set[str], named: str
) -> None:
    async with RealmClient(realm.url) as client:
        with pytest.raises(RealmError) as caught:
            await client.ask("hello", intent=intent, params=params)
        assert (await client.ask("fine", intent="echo")).text == "fine"
    assert caught.value.code in codes
    assert named in caught.value.message
    assert caught.value.hint


async def test_unreachable_broker_is_a_clear_error() -> None:
    url = url_for(free_port())
    with pytest.raises(RealmError) as caught:
        async with RealmClient(url, connect_timeout=3):
            pass
    assert caught.value.code == "unreachable"
    assert "127.0.0.1" in caught.value.message
    assert "mtor broker serve" in caught.value.hint


async def test_subscribe_receives_stats(realm: ThreadRealm) -> None:
    async with RealmClient(realm.url) as client:
        stream = client.subscribe(["stats"])
        push = await asyncio.wait_for(anext(stream), 10)
        await stream.aclose()
    assert isinstance(push, p.Stats) and push.topic == "stats"
    assert "workers" in push.data


async def test_reconnect_resumes_a_request_across_a_broker_restart(tmp_path: Path) -> None:
    """The broker restarts mid-stream and its re-run streams on while the
    client's network is still down: the client picks up exactly."""
    with ThreadRealm(tmp_path / "journal.db") as realm:
        realm.add_worker([EchoBackend(None, Device())], slots=2, reconnect_initial_s=0.05)
        realm.wait_workers(1, "echo")
        proxy = await CutProxy(realm.server.port).start()
        prompt = " ".join(f"w{i}" for i in range(40))
        streamed: list[str] = []
        async with RealmClient(proxy.url, reconnect_s=30) as client:
            task = asyncio.create_task(
                client.ask(prompt, intent="echo", params={"delay_s": 0.05}, on_token=streamed.append)
            )
            while len("".join(streamed).split()) < 3:
                await asyncio.sleep(0.005)
            await proxy.cut(for_s=1.5)
            await asyncio.to_thread(realm.restart)
            result = await asyncio.wait_for(task, 60)
            assert client.reconnects >= 1
        await proxy.close()
    assert result.text == prompt
    # Nothing twice, nothing missing: words the re-run streamed while the
    # client was away are caught up.
    assert "".join(streamed) == prompt


async def test_a_dropped_connection_resumes_the_stream_exactly(realm: ThreadRealm) -> None:
    proxy = await CutProxy(int(realm.url.rsplit(":", 1)[1])).start()
    # Long enough that the stream is still running at the third drop on a busy
    # machine, where a reconnect's catch-up can deliver many words at once.
    prompt = " ".join(f"word{i}" for i in range(80))
    streamed: list[str] = []
    async with RealmClient(proxy.url, reconnect_s=30) as client:
        task = asyncio.create_task(
            client.ask(prompt, intent="echo", params={"delay_s": 0.05}, on_token=streamed.append)
        )
        for drop in range(3):  # three drops mid-stream; the worker keeps generating meanwhile
            while len("".join(streamed).split()) < 8 * (drop + 1):
                await asyncio.sleep(0.005)
            await proxy.cut(for_s=0.2)
        result = await asyncio.wait_for(task, 60)
        assert client.reconnects == 3
    await proxy.close()
    assert result.text == prompt and "".join(streamed) == prompt


async def test_a_cancel_while_the_connection_is_down_is_sent_once_it_is_back(realm: ThreadRealm) -> None:
    proxy = await CutProxy(int(realm.url.rsplit(":", 1)[1])).start()
    prompt = " ".join(f"word{i}" for i in range(200))
    streamed: list[str] = []
    async with RealmClient(proxy.url, reconnect_s=30) as client:
        guid = new_guid()
        task = asyncio.create_task(
            client.ask(prompt, intent="echo", params={"delay_s": 0.02}, guid=guid, on_token=streamed.append)
        )
        while len("".join(streamed).split()) < 3:
            await asyncio.sleep(0.005)
        await proxy.cut(for_s=0.5)
        while client._ws is not None and not client._ws.closed:  # the client has seen the drop
            await asyncio.sleep(0.005)
        await client.cancel(guid)  # no error: it goes out after the reconnect
        with pytest.raises(RealmError) as ended:
            await asyncio.wait_for(task, 30)
        assert ended.value.code == "cancelled" and client.reconnects == 1
    await proxy.close()
    assert len("".join(streamed).split()) < 200


def _tokens(stream: _Restream, run: int, *pieces: tuple[int, str]) -> str:
    return "".join(stream.feed(p.Token(guid="g", text=text, offset=offset, run=run)) for offset, text in pieces)


def test_the_same_run_continues_from_its_offset() -> None:
    stream = _Restream()
    assert _tokens(stream, 7, (0, "a "), (2, "b ")) == "a b "
    assert stream.resume() == (7, 4)
    # after a reconnect the broker catches up from offset 4, once
    assert _tokens(stream, 7, (4, "c d "), (8, "e ")) == "c d e "
    assert _tokens(stream, 7, (6, "d e ")) == ""  # overlap: nothing twice
    assert stream.passed == "a b c d e "


def test_a_new_run_is_followed_from_where_the_caller_stopped() -> None:
    stream = _Restream()
    assert _tokens(stream, 1, (0, "a "), (2, "b ")) == "a b "
    # a retry elsewhere (or a broker restart) starts a new run at offset 0
    assert _tokens(stream, 2, (0, "a "), (2, "b "), (4, "c ")) == "c "
    assert _tokens(stream, 2, (0, "a b c d ")) == "d "  # a catch-up of the whole run
    assert stream.passed == "a b c d "


def test_a_diverging_rerun_or_a_gap_stops_the_stream() -> None:
    stream = _Restream()
    assert _tokens(stream, 1, (0, "a "), (2, "b ")) == "a b "
    assert _tokens(stream, 2, (0, "x "), (2, "y ")) == ""
    assert stream.diverged
    gap = _Restream()
    assert _tokens(gap, 1, (0, "a "), (9, "z ")) == "a "
    assert gap.diverged


async def test_a_busy_broker_is_retried_until_a_place_frees_up(tmp_path: Path) -> None:
    import aiohttp

    from broker import BrokerConfig, BrokerServer

    server = BrokerServer(
        BrokerConfig(port=0, db_path=tmp_path / "busy.db", max_unauthenticated_per_ip=2, login_timeout_s=30)
    )
    await server.start()
    try:
        async with aiohttp.ClientSession() as http:
            idle = [await http.ws_connect(server.url + "/ws/client") for _ in range(2)]
            with pytest.raises(RealmError) as info:
                async with RealmClient(server.url, connect_timeout=1.0):
                    pass
            assert info.value.code == "busy" and "try again" in info.value.hint

            async def free_one() -> None:
                await asyncio.sleep(0.5)
                await idle[0].close()

            freeing = asyncio.create_task(free_one())
            async with RealmClient(server.url, connect_timeout=10.0) as client:
                assert client.welcome is not None
            await freeing
            await idle[1].close()
    finally:
        await server.stop()
