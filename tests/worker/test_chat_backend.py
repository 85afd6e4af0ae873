"""The chat backend on a tiny random Llama, on both runtimes: streaming, params, cancel, batching.

``onnx`` serves the model built by the real ONNX builder (the CPU default);
``transformers`` serves the same weights as they are (what GPU workers run).
"""

from __future__ import annotations

import asyncio
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.protocol import Token, Work, WorkResult
from worker import BadInput, Device, Emitter
from worker.backends.chat import ChatBackend


@pytest.fixture(scope="module", params=["onnx", "transformers"])
def chat(request: pytest.FixtureRequest, tiny_chat_model: Path, tiny_onnx_model: Path) -> Iterator[ChatBackend]:
    model = tiny_onnx_model if request.param == "onnx" else tiny_chat_model
    backend = ChatBackend(str(model), Device.parse(None), max_batch=16, runtime=request.param)
    backend.load()
    assert backend.runtime_name == request.param
    yield backend
    backend.close()


def work(prompt: str, **params: Any) -> Work:
    return Work(guid=str(uuid.uuid4()), intent="chat", prompt=prompt, params=params)


async def ask(chat: ChatBackend, prompt: str, **params: Any) -> tuple[WorkResult, list[Token]]:
    sent: list[Any] = []
    job = work(prompt, **params)
    chat.validate(job)
    result = await chat.run(job, Emitter(job.guid, sent.append))
    return result, [m for m in sent if isinstance(m, Token)]


async def test_streamed_tokens_concatenate_to_the_result(chat: ChatBackend) -> None:
    result, tokens = await ask(chat, "tell me a joke", temperature=0)
    assert result.text and len(tokens) > 3
    assert "".join(t.text for t in tokens) == result.text
    assert [t.index for t in tokens] == list(range(len(tokens)))
    assert result.model == chat.model_name
    assert result.usage.prompt_tokens > 0
    assert result.usage.completion_tokens >= len(tokens)
    assert "<|" not in result.text  # special tokens are not shown


async def test_max_tokens_bounds_the_answer(chat: ChatBackend) -> None:
    result, _ = await ask(chat, "workers serve models", temperature=0, max_tokens=5)
    assert result.usage.completion_tokens == 5
    assert 1 <= len(result.text.split()) <= 5  # special tokens count but are not shown


async def test_same_seed_same_text_other_seed_other_text(chat: ChatBackend) -> None:
    a, _ = await ask(chat, "the realm", temperature=1.0, seed=7, max_tokens=40)
    b, _ = await ask(chat, "the realm", temperature=1.0, seed=7, max_tokens=40)
    c, _ = await ask(chat, "the realm", temperature=1.0, seed=8, max_tokens=40)
    assert a.text == b.text
    assert a.text != c.text


async def test_system_prompt_and_history_go_through_the_chat_template(chat: ChatBackend) -> None:
    plain, _ = await ask(chat, "hello", temperature=0, max_tokens=3)
    longer, _ = await ask(
        chat,
        "hello",
        temperature=0,
        max_tokens=3,
        system="answer briefly",
        history=[{"role": "user", "content": "hi"}, {"role": "assistant", "content": "yes"}],
    )
    # <|system|> answer briefly <|end|> <|user|> hi <|end|> <|assistant|> yes <|end|> = 10 more
    assert longer.usage.prompt_tokens == plain.usage.prompt_tokens + 10


@pytest.mark.parametrize(
    ("params", "needle"),
    [
        ({"max_tokens": 0}, "max_tokens"),
        ({"max_tokens": 100_000}, "max_tokens"),
        ({"max_tokens": "ten"}, "max_tokens"),
        ({"temperature": -0.1}, "temperature"),
        ({"temperature": 3}, "temperature"),
        ({"top_p": 0}, "top_p"),
        ({"top_p": 1.5}, "top_p"),
        ({"seed": -1}, "seed"),
        ({"seed": 1.5}, "seed"),
        ({"system": 5}, "system"),
        ({"history": [{"role": "robot", "content": "x"}]}, "history"),
        ({"history": "hi"}, "history"),
        ({"temprature": 0.5}, "temprature"),
    ],
)
def test_bad_params_are_refused_before_the_model_runs(
    chat: ChatBackend, params: dict[str, Any], needle: str
) -> None:
    with pytest.raises(BadInput) as err:
        chat.validate(work("hello", **params))
    assert err.value.code == "bad_params"
    assert needle in err.value.message
    assert err.value.hint


def test_empty_prompt_is_refused(chat: ChatBackend) -> None:
    with pytest.raises(BadInput, match="empty"):
        chat.validate(work("   "))


def test_prompt_longer_than_the_context_is_refused(chat: ChatBackend) -> None:
    with pytest.raises(BadInput) as err:
        chat.validate(work("hello " * 600))
    assert err.value.code == "prompt_too_long"
    assert "511" in err.value.message


async def test_cancel_stops_generation_mid_stream(chat: ChatBackend) -> None:
    full, _ = await ask(chat, "workers serve models", temperature=0)
    assert full.usage.completion_tokens > 20

    sent: list[Any] = []
    job = work("workers serve models", temperature=0)

    def send(msg: Any) -> None:
        sent.append(msg)
        if len(sent) == 3:
            out.cancel()  # as the worker loop does on a broker `cancel`

    out = Emitter(job.guid, send)
    result = await chat.run(job, out)
    assert out.cancelled
    assert len(sent) == 3
    # The engine stops the row at its next step after it sees the cancel. Its steps run on
    # a thread that may be a few tokens ahead of their delivery on a busy machine, so the
    # user-visible promise is that the answer stops well short of the full one.
    assert result.usage.completion_tokens <= full.usage.completion_tokens // 2
    assert full.text.startswith(result.text)


async def test_concurrent_chats_are_batched_and_match_one_at_a_time(chat: ChatBackend) -> None:
    prompts = [
        "hello",
        "tell me a joke",
        "what is in this picture",
        "workers serve models",
        "imagine a cat sitting on a red chair",
        "the realm answers every intent a person types or says",
    ]
    alone = [(await ask(chat, p, temperature=0, max_tokens=40))[0].text for p in prompts]
    rows_before = chat.engine.max_rows_seen
    chat.engine.max_rows_seen = 0
    together = await asyncio.gather(*(ask(chat, p, temperature=0, max_tokens=40) for p in prompts))
    assert chat.engine.max_rows_seen > 1  # forward passes served several chats at once
    chat.engine.max_rows_seen = max(rows_before, chat.engine.max_rows_seen)
    for prompt, single, (result, tokens) in zip(prompts, alone, together, strict=False):
        assert result.text == single, prompt
        assert "".join(t.text for t in tokens) == result.text


async def test_a_chat_joins_a_running_batch_and_both_stay_correct(chat: ChatBackend) -> None:
    long_prompt = "the realm answers every intent a person types or says"
    alone_long = (await ask(chat, long_prompt, temperature=0, max_tokens=60))[0].text
    alone_short = (await ask(chat, "hello", temperature=0, max_tokens=60))[0].text

    first_tokens = asyncio.Event()
    sent: list[Any] = []

    def send(msg: Any) -> None:
        sent.append(msg)
        if len(sent) == 5:
            first_tokens.set()

    job = work(long_prompt, temperature=0, max_tokens=60)
    running = asyncio.create_task(chat.run(job, Emitter(job.guid, send)))
    await first_tokens.wait()  # the long chat is mid-generation with a longer cache
    short, _ = await ask(chat, "hello", temperature=0, max_tokens=60)
    long = await running
    assert long.text == alone_long
    assert short.text == alone_short
