"""The upstream backend against a small OpenAI-compatible server started here.

The server speaks the subset of the OpenAI API that Ollama, vLLM and the
llama.cpp server share: ``GET /v1/models`` and ``POST /v1/chat/completions``
streaming ``data:`` chunks, with a final usage chunk and ``data: [DONE]``. It
answers deterministically from the request so tests can see what arrived.
"""

from __future__ import annotations

import base64
import io
import json
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web
from eth_account import Account
from PIL import Image
from typer.testing import CliRunner

from broker.protocol import SubmitQuery, Token, Usage
from mtor_cli.app import build_app
from mtor_cli.client import RealmClient, RealmError, new_guid
from tests.support.realm import ThreadRealm, free_port, log_of, spawn_worker, stop_process, wait_until, workers
from tests.support.tiny_media_models import png_bytes
from worker.backends.base import Device
from worker.backends.upstream import UpstreamChatBackend, UpstreamVisionBackend, upstream_backend_class

MODELS = ["tiny-llama", "tiny-llava"]


class OpenAIServer:
    """Streams back ``[N messages] you said: <last text>`` word by word (or the image's size)."""

    def __init__(self) -> None:
        self.requests: list[dict[str, Any]] = []
        self.runner: web.AppRunner | None = None
        self.port = free_port()

    @property
    def url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/models", self.models)
        app.router.add_post("/v1/chat/completions", self.chat)
        self.runner = web.AppRunner(app)
        await self.runner.setup()
        await web.TCPSite(self.runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        assert self.runner is not None
        await self.runner.cleanup()

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": m, "object": "model"} for m in MODELS]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        body = await request.json()
        self.requests.append(body)
        messages = body["messages"]
        content = messages[-1]["content"]
        if isinstance(content, list):  # vision: text part + image_url part
            url = next(p["image_url"]["url"] for p in content if p["type"] == "image_url")
            header, data = url.split(",", 1)
            with Image.open(io.BytesIO(base64.b64decode(data))) as img:
                said = f"an image of {img.width}x{img.height} ({header})"
        else:
            said = content
        if said == "please fail":
            return web.json_response({"error": {"message": "model crashed"}}, status=500)
        words = f"[{len(messages)} messages] you said: {said}".split(" ")[: body["max_tokens"]]
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        await response.write(b": keep-alive comment\n\n")
        for n, word in enumerate(words):
            chunk = {"choices": [{"index": 0, "delta": {"content": word if n == 0 else " " + word}}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        usage = {"prompt_tokens": 7, "completion_tokens": len(words), "total_tokens": 7 + len(words)}
        await response.write(f"data: {json.dumps({'choices': [], 'usage': usage})}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response


@pytest.fixture(scope="module")
def upstream_realm(module_home: Path, tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ThreadRealm, OpenAIServer]]:
    with ThreadRealm(tmp_path_factory.mktemp("realm") / "journal.db") as realm:
        server = OpenAIServer()
        realm.call(server.start())
        cpu = Device()
        realm.add_worker(
            [
                UpstreamChatBackend("tiny-llama", cpu, upstream=server.url),
                UpstreamVisionBackend("tiny-llava", cpu, upstream=server.url),
            ],
            slots=4,
        )
        wait_until(lambda: workers(realm.url, "vision"), 60, "the upstream worker to register")
        yield realm, server
        realm.call(server.stop())


def mtor(*args: str) -> Any:
    result = CliRunner().invoke(build_app(), list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def test_chat_through_the_upstream(upstream_realm: Any) -> None:
    realm, server = upstream_realm
    res = mtor("ask", "--broker", realm.url, "--intent", "chat", "tell me a joke")
    assert res.exit_code == 0, res.stderr
    assert res.stdout.strip() == "[1 messages] you said: tell me a joke"
    assert server.requests[-1]["model"] == "tiny-llama" and server.requests[-1]["stream"] is True


async def test_tokens_stream_one_chunk_at_a_time(upstream_realm: Any) -> None:
    realm, server = upstream_realm
    async with RealmClient(realm.url, Account.create()) as client:
        query = SubmitQuery(
            guid=new_guid(),
            prompt="one two three",
            intent="chat",
            params={"system": "be brief", "history": [{"role": "user", "content": "hi"}], "max_tokens": 6},
        )
        events = [e async for e in client.submit(query)]
    tokens = [e.text for e in events if isinstance(e, Token)]
    result = events[-1]
    assert tokens == ["[3", " messages]", " you", " said:", " one", " two"]
    assert result.text == "".join(tokens)
    assert result.usage == Usage(prompt_tokens=7, completion_tokens=6)
    sent = server.requests[-1]
    assert [m["role"] for m in sent["messages"]] == ["system", "user", "user"]
    assert sent["max_tokens"] == 6


def test_vision_sends_the_image_as_a_data_uri(upstream_realm: Any, tmp_path: Path) -> None:
    realm, _ = upstream_realm
    photo = tmp_path / "photo.png"
    photo.write_bytes(png_bytes(48, 40))
    res = mtor("ask", "--broker", realm.url, "--intent", "vision", "--image", str(photo), "what is this?")
    assert res.exit_code == 0, res.stderr
    assert "an image of 48x40 (data:image/png;base64)" in res.stdout


def test_corrupt_image_never_reaches_the_upstream(upstream_realm: Any, tmp_path: Path) -> None:
    realm, server = upstream_realm
    before = len(server.requests)
    bad = tmp_path / "bad.png"
    bad.write_bytes(b"\x89PNG\r\n\x1a\nnot really")
    res = mtor("ask", "--broker", realm.url, "--intent", "vision", "--image", str(bad), "what is this?")
    assert res.exit_code == 1
    assert "bad.png is not an image" in res.stderr
    assert len(server.requests) == before


async def test_bad_params_never_reach_the_upstream(upstream_realm: Any) -> None:
    realm, server = upstream_realm
    before = len(server.requests)
    async with RealmClient(realm.url, Account.create()) as client:
        with pytest.raises(RealmError) as info:
            await client.ask("hi", intent="chat", params={"temperature": 5})
    assert "temperature=5 is out of range" in info.value.message
    assert "bad_params" in (info.value.code, info.value.detail.get("worker_code"))
    assert len(server.requests) == before


def test_upstream_error_fails_the_job_and_the_worker_keeps_serving(upstream_realm: Any) -> None:
    realm, _ = upstream_realm
    res = mtor("ask", "--broker", realm.url, "--intent", "chat", "please fail")
    assert res.exit_code == 1
    assert "upstream answered HTTP 500" in res.stderr and "model crashed" in res.stderr
    res = mtor("ask", "--broker", realm.url, "--intent", "chat", "still there?")
    assert res.exit_code == 0, res.stderr
    assert "you said: still there?" in res.stdout


def test_load_names_an_unreachable_upstream() -> None:
    backend = UpstreamChatBackend("llama3", Device(), upstream=f"http://127.0.0.1:{free_port()}/v1")
    with pytest.raises(ConnectionError, match="cannot reach the upstream server"):
        backend.load()


def test_load_lists_the_models_an_upstream_serves(upstream_realm: Any) -> None:
    _, server = upstream_realm
    with pytest.raises(ValueError, match="does not serve model 'llama3'; it lists: tiny-llama, tiny-llava"):
        UpstreamChatBackend("llama3", Device(), upstream=server.url).load()
    picked = UpstreamChatBackend(None, Device(), upstream=server.url)
    picked.load()
    assert picked.model_name == "tiny-llama"


def test_upstream_flag_picks_the_backend_for_the_intent() -> None:
    assert upstream_backend_class("chat") is UpstreamChatBackend
    assert upstream_backend_class("vision") is UpstreamVisionBackend
    with pytest.raises(ValueError, match="chat or vision"):
        upstream_backend_class("imagine")
    with pytest.raises(ValueError, match="http"):
        UpstreamChatBackend("m", Device(), upstream="127.0.0.1:11434")


def test_mtor_worker_serve_upstream_end_to_end(tmp_path: Path) -> None:
    """The real command line: `mtor worker serve --upstream URL --model M` as its own process."""
    with ThreadRealm(tmp_path / "journal.db") as realm:
        server = OpenAIServer()
        realm.call(server.start())
        proc = spawn_worker(realm.url, tmp_path / "worker", "chat", "tiny-llama", "--upstream", server.url)
        try:
            (row,) = wait_until(lambda: workers(realm.url, "chat"), 60, "the upstream worker process to register")
            assert row["capabilities"][0]["info"]["upstream"] == server.url
            res = mtor("ask", "--broker", realm.url, "--intent", "chat", "hello upstream")
            assert res.exit_code == 0, res.stderr + log_of(tmp_path / "worker", "worker.log")
            assert res.stdout.strip() == "[1 messages] you said: hello upstream"
        finally:
            assert stop_process(proc) == 0
            realm.call(server.stop())
