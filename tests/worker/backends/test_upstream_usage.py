"""Usage from an upstream that sends none (llama.cpp's server): counted with the model's tokenizer.

The server started here speaks the OpenAI streaming subset as llama.cpp's does:
``data:`` chunks and ``data: [DONE]``, no usage chunk, and ``/v1/models``
listing the model by its path on disk.
"""

from __future__ import annotations

import asyncio
import json
import logging
import uuid
from collections.abc import AsyncIterator
from pathlib import Path
from typing import Any

import pytest
from aiohttp import web

from broker.protocol import Work
from tests.support.realm import free_port
from worker.backends.base import Device, Emitter
from worker.backends.upstream import UpstreamChatBackend
from worker.chat_tokenizer import ChatTokenizer

ANSWER = ["the", " realm", " answers", " every", " intent"]


class NoUsageServer:
    def __init__(self, model_id: str) -> None:
        self.model_id = model_id
        self.port = free_port()
        self.runner: web.AppRunner | None = None

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

    async def models(self, request: web.Request) -> web.Response:
        return web.json_response({"object": "list", "data": [{"id": self.model_id, "object": "model"}]})

    async def chat(self, request: web.Request) -> web.StreamResponse:
        response = web.StreamResponse(headers={"Content-Type": "text/event-stream"})
        await response.prepare(request)
        for piece in ANSWER:
            chunk = {"choices": [{"index": 0, "delta": {"content": piece}}]}
            await response.write(f"data: {json.dumps(chunk)}\n\n".encode())
        await response.write(b"data: [DONE]\n\n")
        return response


@pytest.fixture
async def server(tiny_chat_model: Path) -> AsyncIterator[NoUsageServer]:
    upstream = NoUsageServer(str(tiny_chat_model))  # as llama.cpp lists it: the model's path
    await upstream.start()
    yield upstream
    assert upstream.runner is not None
    await upstream.runner.cleanup()


async def run(backend: UpstreamChatBackend, prompt: str, **params: Any) -> Any:
    await asyncio.to_thread(backend.load)
    job = Work(guid=uuid.uuid4().hex, intent="chat", prompt=prompt, params=params)
    backend.validate(job)
    return await backend.run(job, Emitter(job.guid, [].append))


async def test_the_model_named_by_its_path_counts_usage(server: NoUsageServer, tiny_chat_model: Path) -> None:
    backend = UpstreamChatBackend(None, Device(), upstream=server.url)
    result = await run(backend, "tell me a joke", system="be brief")
    tok = ChatTokenizer(tiny_chat_model)
    messages = [{"role": "system", "content": "be brief"}, {"role": "user", "content": "tell me a joke"}]
    assert result.text == "the realm answers every intent"
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (len(tok.encode_chat(messages)), 5)
    assert result.usage.prompt_tokens > 5  # the template's tokens count too


async def test_a_tokenizer_option_counts_for_a_model_known_by_name(
    server: NoUsageServer, tiny_onnx_model: Path
) -> None:
    server.model_id = "tiny"
    backend = UpstreamChatBackend("tiny", Device(), upstream=server.url, tokenizer=str(tiny_onnx_model))
    result = await run(backend, "hello world")
    tok = ChatTokenizer(tiny_onnx_model)
    assert result.usage.prompt_tokens == len(tok.encode_chat([{"role": "user", "content": "hello world"}]))
    assert result.usage.completion_tokens == tok.count("the realm answers every intent") == 5


async def test_without_a_tokenizer_the_worker_says_so(
    server: NoUsageServer, caplog: pytest.LogCaptureFixture
) -> None:
    server.model_id = "tiny"
    backend = UpstreamChatBackend("tiny", Device(), upstream=server.url)
    with caplog.at_level(logging.WARNING, logger="mtor.worker.upstream"):
        result = await run(backend, "hello world")
    assert "no tokenizer for tiny" in caplog.text
    assert (result.usage.prompt_tokens, result.usage.completion_tokens) == (0, len(ANSWER))  # stream chunks


def test_a_tokenizer_that_cannot_load_fails_at_start(tmp_path: Path) -> None:
    from worker.chat_tokenizer import load_chat_tokenizer

    with pytest.raises(ValueError, match="cannot load a tokenizer"):
        load_chat_tokenizer(str(tmp_path / "missing"))
