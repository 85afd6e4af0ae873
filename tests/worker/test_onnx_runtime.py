"""The ONNX runtime on a tiny random Llama built by the real builder: the build-once
cache, stop tokens, a model the builder cannot take, keep-alive unloading.

(Streaming, max_tokens, cancellation and batching equality run on both runtimes
in test_chat_backend.py.)
"""

from __future__ import annotations

import asyncio
import sys
import threading
import time
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.protocol import Work
from tests.support.tiny_models import build_tiny_gpt2_model
from worker import Device, Emitter
from worker.backends.batching import GenRequest, Outcome, SamplingParams
from worker.backends.chat import ChatBackend
from worker.backends.ort_engine import OrtBatchEngine, OrtModel
from worker.chat_tokenizer import ChatTokenizer
from worker.onnx_build import BuildError, build_info, ensure_onnx_model


def work(prompt: str, **params: Any) -> Work:
    return Work(guid=str(uuid.uuid4()), intent="chat", prompt=prompt, params=params)


async def ask(chat: ChatBackend, prompt: str, **params: Any) -> Any:
    job = work(prompt, **params)
    chat.validate(job)
    return await chat.run(job, Emitter(job.guid, [].append))


# --- build once -----------------------------------------------------------------


def test_a_build_shows_its_stages_and_the_next_call_reuses_it(
    tiny_onnx_build: tuple[Path, Path, list[str]], tiny_chat_model: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    home, folder, labels = tiny_onnx_build
    assert labels[-1] == "ready"
    assert {"building the ONNX graph", "quantizing weights", "saving"} <= set(labels)
    assert (folder / "model.onnx").is_file() and (folder / "tokenizer.json").is_file()
    info = build_info(folder)
    assert info["name"] == "tiny-chat-model" and info["precision"] == "int8"
    assert info["architecture"] == "LlamaForCausalLM" and info["seconds"] > 0

    monkeypatch.setenv("MTOR_HOME", str(home))
    again: list[str] = []
    started = time.perf_counter()
    assert ensure_onnx_model(str(tiny_chat_model), progress=lambda d, t, label: again.append(label)) == folder
    assert again == ["cached"] and time.perf_counter() - started < 1.0  # nothing is built again
    builds = [p for p in folder.parent.iterdir() if not p.name.startswith(".")]
    assert builds == [folder]  # no staging folder left behind


def test_a_path_that_is_no_model_is_refused_at_once(tmp_path: Path) -> None:
    with pytest.raises(BuildError) as err:
        ensure_onnx_model(str(tmp_path / "nothing.gguf"))
    assert err.value.code == "model_not_found" and "nothing.gguf" in err.value.message


@pytest.fixture(scope="module")
def gpt2_model(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return build_tiny_gpt2_model(tmp_path_factory.mktemp("tiny-gpt2"))


def test_an_architecture_the_builder_lacks_is_named(gpt2_model: Path) -> None:
    started = time.perf_counter()
    with pytest.raises(BuildError) as err:
        ensure_onnx_model(str(gpt2_model))
    assert err.value.code == "unsupported_model"
    assert "GPT2LMHeadModel" in err.value.message and "LlamaForCausalLM" in err.value.message
    assert "runtime=transformers" in err.value.hint
    assert time.perf_counter() - started < 2.0  # known from config.json before any build starts


def test_the_builder_itself_refusing_gives_the_same_error(gpt2_model: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import worker.onnx_build as onnx_build

    monkeypatch.setattr(onnx_build, "supported_architectures", lambda: [])  # cannot tell ahead: build
    with pytest.raises(BuildError) as err:
        ensure_onnx_model(str(gpt2_model))
    assert err.value.code == "unsupported_model" and "GPT2LMHeadModel" in err.value.message


async def test_auto_serves_such_a_model_with_transformers_and_onnx_refuses_it(gpt2_model: Path) -> None:
    strict = ChatBackend(str(gpt2_model), Device(), runtime="onnx")
    with pytest.raises(BuildError, match="GPT2LMHeadModel"):
        strict.load()
    chat = ChatBackend(str(gpt2_model), Device(), runtime="auto")
    chat.load()
    try:
        assert chat.runtime_name == "transformers"
        assert chat.capability().info["runtime"] == "transformers"
        result = await ask(chat, "tell me a joke", temperature=0, max_tokens=5)
        assert result.usage.completion_tokens >= 1
    finally:
        chat.close()


# --- stop tokens -------------------------------------------------------------------


def test_every_end_token_the_model_declares_stops_it(tiny_onnx_model: Path) -> None:
    tok = ChatTokenizer(tiny_onnx_model)
    # tokenizer eos </s> plus generation_config's [</s>, <|end|>]: both stop, not only the first
    assert tok.eos_ids == {tok.token_id("</s>"), tok.token_id("<|end|>")}


@pytest.fixture(scope="module")
def engine_parts(tiny_onnx_model: Path) -> tuple[OrtModel, ChatTokenizer]:
    return OrtModel(tiny_onnx_model, threads=1), ChatTokenizer(tiny_onnx_model)


async def generate(engine: OrtBatchEngine, ids: list[int], max_tokens: int) -> tuple[Outcome, list[str]]:
    loop = asyncio.get_running_loop()
    done: asyncio.Future[Outcome] = loop.create_future()
    pieces: list[str] = []
    engine.submit(
        GenRequest(
            input_ids=ids,
            params=SamplingParams(max_tokens=max_tokens, temperature=0, top_p=1.0, seed=0),
            loop=loop,
            on_text=pieces.append,
            is_cancelled=lambda: False,
            done=done.set_result,
        )
    )
    return await done, pieces


async def test_generation_ends_at_a_stop_token_which_is_not_shown(
    engine_parts: tuple[OrtModel, ChatTokenizer],
) -> None:
    model, tok = engine_parts
    prompt = tok.encode_chat([{"role": "user", "content": "workers serve models"}])
    free = OrtBatchEngine(model, tok, threading.Lock(), eos_ids=set(), max_context=512)
    free.start()
    try:
        outcome, _ = await generate(free, prompt, 30)
    finally:
        free.stop()
    assert outcome.finish_reason == "length" and outcome.completion_tokens == 30
    words = tok.encode(outcome.text)  # the visible tokens the model chose (specials are not shown)
    cut = next(k for k in range(3, len(words)) if words[k] not in words[:k])  # first seen at position k
    stopping = OrtBatchEngine(model, tok, threading.Lock(), eos_ids={words[cut]}, max_context=512)
    stopping.start()
    try:
        outcome, pieces = await generate(stopping, prompt, 30)
    finally:
        stopping.stop()
    assert outcome.finish_reason == "stop"
    assert outcome.completion_tokens < 30
    assert outcome.text == tok.decode(words[:cut]) == "".join(pieces)


# --- keep-alive ------------------------------------------------------------------


def _wait(condition: Any, timeout: float = 10.0) -> None:
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, "timed out"
        time.sleep(0.02)


@pytest.fixture
def idle_chat(tiny_onnx_model: Path) -> Iterator[ChatBackend]:
    chat = ChatBackend(str(tiny_onnx_model), Device(), keep_alive=0.3)
    chat.load()
    yield chat
    chat.close()


async def test_an_idle_model_is_unloaded_and_the_next_chat_reloads_it(idle_chat: ChatBackend) -> None:
    first = await ask(idle_chat, "hello", temperature=0, max_tokens=12)
    await asyncio.to_thread(_wait, lambda: idle_chat.engine is None)
    assert idle_chat.keep_alive.unloads >= 1 and not idle_chat.keep_alive.loaded
    idle_chat.validate(work("hello"))  # requests are still checked while unloaded
    again = await ask(idle_chat, "hello", temperature=0, max_tokens=12)
    assert again.text == first.text
    assert idle_chat.keep_alive.reloads >= 1 and idle_chat.keep_alive.last_reload_s is not None


async def test_a_model_in_use_is_not_unloaded(idle_chat: ChatBackend) -> None:
    idle_chat.keep_alive.seconds = 0.05
    jobs = [ask(idle_chat, "the realm answers", temperature=0, max_tokens=60) for _ in range(3)]
    results = await asyncio.gather(*jobs)
    assert len({r.text for r in results}) == 1


async def test_keep_alive_zero_keeps_the_model_loaded(tiny_onnx_model: Path) -> None:
    chat = ChatBackend(str(tiny_onnx_model), Device(), keep_alive=0)
    chat.load()
    try:
        await ask(chat, "hello", temperature=0, max_tokens=4)
        await asyncio.sleep(0.5)
        assert chat.engine is not None and chat.keep_alive.unloads == 0
    finally:
        chat.close()


def test_a_negative_keep_alive_is_refused(tiny_onnx_model: Path) -> None:
    with pytest.raises(ValueError, match="keep_alive"):
        ChatBackend(str(tiny_onnx_model), Device(), keep_alive=-1)


def test_the_onnx_path_never_imports_torch(tiny_onnx_model: Path) -> None:
    import subprocess

    code = (
        "import asyncio, sys, uuid\n"
        "from broker.protocol import Work\n"
        "from worker import Device, Emitter\n"
        "from worker.backends.chat import ChatBackend\n"
        f"chat = ChatBackend({str(tiny_onnx_model)!r}, Device())\n"
        "chat.load()\n"
        "job = Work(guid=uuid.uuid4().hex, intent='chat', prompt='hello', params={'max_tokens': 4})\n"
        "chat.validate(job)\n"
        "asyncio.run(chat.run(job, Emitter(job.guid, [].append, asyncio.new_event_loop())))\n"
        "chat.close()\n"
        "print(sorted(m for m in ('torch', 'transformers', 'eth_account') if m in sys.modules))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert out.returncode == 0, out.stderr
    assert out.stdout.strip() == "[]"
