"""Batched chat through the realm vs one-at-a-time `generate`, in one run.

Starts a BrokerServer and a Worker serving the ChatBackend (continuous
batching) in this process, submits 1, 8 and 32 concurrent chats through the
broker's client socket (streaming on, so every token crosses the bus twice),
and prints the aggregate tokens/s at each concurrency next to the baseline:
the same model and prompts run one after another with transformers'
`model.generate`, greedy, on the same device. Target: >= 8x at 32 concurrent.

The model is Llama-shaped with random weights (TinyLlama's shape, ~1.1B
parameters, 32k word-level vocabulary), built from a config, saved once in a
temporary folder and loaded by the worker like any local model.

    python bench/gpu_chat.py --gpu 0            # on a CUDA machine
    python bench/gpu_chat.py --tiny             # CPU smoke check: tiny model
"""

from __future__ import annotations

import argparse
import asyncio
import os
import random
import statistics
import sys
import tempfile
import time
import uuid
from pathlib import Path
from typing import Any

sys.path.insert(0, str(Path(__file__).resolve().parent.parent))

SHAPES: dict[str, dict[str, int]] = {
    # TinyLlama-1.1B's shape.
    "1b": dict(
        vocab_size=32000,
        hidden_size=2048,
        intermediate_size=5632,
        num_hidden_layers=22,
        num_attention_heads=32,
        num_key_value_heads=4,
    ),
    "tiny": dict(
        vocab_size=2000,
        hidden_size=64,
        intermediate_size=128,
        num_hidden_layers=2,
        num_attention_heads=4,
        num_key_value_heads=2,
    ),
}
SPECIALS = ["<unk>", "<pad>", "<s>", "</s>", "<|user|>", "<|assistant|>", "<|end|>"]
TEMPLATE = (
    "{% for m in messages %}<|{{ m['role'] }}|> {{ m['content'] }} <|end|> {% endfor %}"
    "{% if add_generation_prompt %}<|assistant|> {% endif %}"
)


def build_model(dest: Path, shape: str, dtype: Any) -> Path:
    """A random-weight Llama of ``shape`` with a word-level tokenizer, saved at ``dest``."""
    import torch
    from tokenizers import Tokenizer, models, pre_tokenizers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    dims = SHAPES[shape]
    words = [f"w{i}" for i in range(dims["vocab_size"] - len(SPECIALS))]
    vocab = {tok: i for i, tok in enumerate(SPECIALS + words)}
    raw = Tokenizer(models.WordLevel(vocab=vocab, unk_token="<unk>"))
    raw.pre_tokenizer = pre_tokenizers.Whitespace()
    tokenizer = PreTrainedTokenizerFast(
        tokenizer_object=raw,
        unk_token="<unk>",
        pad_token="<pad>",
        bos_token="<s>",
        eos_token="</s>",
        additional_special_tokens=["<|user|>", "<|assistant|>", "<|end|>"],
    )
    tokenizer.chat_template = TEMPLATE
    config = LlamaConfig(
        **dims,
        max_position_embeddings=2048,
        bos_token_id=vocab["<s>"],
        eos_token_id=vocab["</s>"],
        pad_token_id=vocab["<pad>"],
        tie_word_embeddings=False,
    )
    torch.manual_seed(0)
    device = "cuda" if torch.cuda.is_available() and shape != "tiny" else "cpu"
    with torch.device(device):
        model = LlamaForCausalLM(config).to(dtype).eval()
    model.save_pretrained(dest)
    tokenizer.save_pretrained(dest)
    params = sum(p.numel() for p in model.parameters())
    del model
    if device == "cuda":
        torch.cuda.empty_cache()
    print(f"model: Llama {shape}, {params / 1e6:,.1f} M parameters, random weights, saved to {dest}")
    return dest


def prompts(n: int, words: int, vocab: int, seed: int) -> list[str]:
    rng = random.Random(seed)
    count = vocab - len(SPECIALS)
    return [" ".join(f"w{rng.randrange(count)}" for _ in range(words)) for _ in range(n)]


def baseline(path: Path, device: Any, texts: list[str], max_tokens: int) -> tuple[float, int, float]:
    """One-at-a-time greedy `generate`: (tokens/s, tokens, seconds)."""
    import torch
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(path)
    model = AutoModelForCausalLM.from_pretrained(path, dtype=device.torch_dtype)
    model.to(device.torch_device).eval()
    encoded = [
        tokenizer.apply_chat_template(
            [{"role": "user", "content": t}],
            add_generation_prompt=True,
            return_tensors="pt",
            return_dict=True,
        ).to(device.torch_device)
        for t in texts
    ]
    kwargs = dict(max_new_tokens=max_tokens, do_sample=False, pad_token_id=tokenizer.pad_token_id)
    with torch.inference_mode():
        model.generate(**encoded[0], **kwargs)  # warm-up
        _sync(device)
        started = time.perf_counter()
        tokens = 0
        for enc in encoded:
            out = model.generate(**enc, **kwargs)
            tokens += out.shape[1] - enc["input_ids"].shape[1]
        _sync(device)
        seconds = time.perf_counter() - started
    del model
    if device.is_cuda:
        torch.cuda.empty_cache()
    return tokens / seconds, tokens, seconds


def _sync(device: Any) -> None:
    if device.is_cuda:
        import torch

        torch.cuda.synchronize()


async def client_session(url: str) -> Any:
    """A signed /ws/client connection, as `mtor ask` opens it."""
    import aiohttp
    from eth_account import Account

    from broker.protocol import Hello, encode_str, server_to_client_decoder, sign_challenge

    account = Account.create()
    session = aiohttp.ClientSession()
    ws = await session.ws_connect(url + "/ws/client", max_msg_size=64 * 1024 * 1024)
    decoder = server_to_client_decoder()
    challenge = decoder.decode((await ws.receive()).data)
    signature = sign_challenge(account.key, challenge.nonce, "client")
    await ws.send_str(
        encode_str(Hello(address=account.address, signature=signature, nonce=challenge.nonce))
    )
    welcome = decoder.decode((await ws.receive()).data)
    assert type(welcome).__name__ == "Welcome", welcome
    return session, ws, decoder


async def realm_round(ws: Any, decoder: Any, texts: list[str], max_tokens: int) -> dict[str, Any]:
    """Submit every text at once; wait for all results; count tokens streamed."""
    from broker.protocol import Error, Result, SubmitQuery, Token, encode_str

    guids = [str(uuid.uuid4()) for _ in texts]
    pending = set(guids)
    streamed = 0
    completion = 0
    first_token: dict[str, float] = {}
    started = time.perf_counter()
    for guid, text in zip(guids, texts, strict=False):
        query = SubmitQuery(
            guid=guid,
            intent="chat",
            prompt=text,
            params={"max_tokens": max_tokens, "temperature": 0},
        )
        await ws.send_str(encode_str(query))
    while pending:
        msg = decoder.decode((await ws.receive()).data)
        if isinstance(msg, Token):
            streamed += 1
            first_token.setdefault(msg.guid, time.perf_counter() - started)
        elif isinstance(msg, Result):
            pending.discard(msg.guid)
            completion += msg.usage.completion_tokens or 0
        elif isinstance(msg, Error):
            raise RuntimeError(f"realm error {msg.code}: {msg.message}")
    seconds = time.perf_counter() - started
    return {
        "tokens": completion,
        "streamed": streamed,
        "seconds": seconds,
        "tok_s": completion / seconds,
        "ttft_median_s": statistics.median(first_token.values()) if first_token else float("nan"),
    }


async def serve_worker(url: str, path: str, gpu: int | None, slots: int) -> None:
    """The worker process: `mtor worker serve` in miniature, until SIGTERM."""
    import signal

    from eth_account import Account

    from worker import Device, Worker, WorkerConfig
    from worker.backends.chat import ChatBackend

    chat = ChatBackend(path, Device.parse(gpu), max_batch=slots)
    worker = Worker(WorkerConfig(broker_url=url, slots=slots), [chat], Account.create())
    loop = asyncio.get_running_loop()
    loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(worker.stop()))
    await worker.run()


async def wait_for_worker(http_url: str, timeout: float) -> dict[str, Any]:
    import aiohttp

    deadline = time.monotonic() + timeout
    async with aiohttp.ClientSession() as session:
        while time.monotonic() < deadline:
            async with session.get(http_url + "/v1/workers") as resp:
                workers = (await resp.json())["workers"]
            if workers:
                return workers[0]
            await asyncio.sleep(0.2)
    raise RuntimeError(f"no worker registered within {timeout:g} s")


async def realm(
    path: Path, gpu: int | None, levels: list[int], max_tokens: int, words: int, vocab: int
) -> dict[int, dict[str, Any]]:
    from broker import BrokerConfig, BrokerServer

    top = max(levels)
    home = Path(os.environ["MTOR_HOME"])
    broker = BrokerServer(
        BrokerConfig(port=0, db_path=home / "broker.db", default_job_timeout_s=3600, queue_limit=10_000)
    )
    await broker.start()
    # The worker is its own process, as `mtor worker serve` is: its model
    # thread does not share a GIL with the broker's event loop.
    child = await asyncio.create_subprocess_exec(
        sys.executable, __file__, "--serve-worker", broker.url, str(path),
        "--gpu", "-1" if gpu is None else str(gpu), "--slots", str(top),
        *(["--tiny"] if gpu is None else []),
    )
    results: dict[int, dict[str, Any]] = {}
    try:
        await wait_for_worker(broker.http_url, 600)
        session, ws, decoder = await client_session(broker.url)
        try:
            await realm_round(ws, decoder, prompts(2, words, vocab, seed=99), max_tokens)  # warm-up
            for level in levels:
                texts = prompts(level, words, vocab, seed=level)
                results[level] = await realm_round(ws, decoder, texts, max_tokens)
        finally:
            await ws.close()
            await session.close()
    finally:
        if child.returncode is None:
            child.terminate()
        await child.wait()
        await broker.stop()
    return results


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="tiny model on CPU (smoke check)")
    parser.add_argument("--gpu", type=int, default=None, help="CUDA device index (default 0 unless --tiny)")
    parser.add_argument("--concurrency", default="1,8,32", help="comma-separated levels")
    parser.add_argument("--max-tokens", type=int, default=None, help="tokens per request")
    parser.add_argument("--prompt-words", type=int, default=16)
    parser.add_argument("--baseline-requests", type=int, default=3)
    parser.add_argument("--serve-worker", nargs=2, metavar=("URL", "MODEL"), help=argparse.SUPPRESS)
    parser.add_argument("--slots", type=int, default=32, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.tiny:
        import torch

        # A 64-wide model gains nothing from intra-op threads, and on a shared
        # CPU their spin-waits dominate every step.
        torch.set_num_threads(1)
    if args.serve_worker:
        url, model = args.serve_worker
        asyncio.run(serve_worker(url, model, None if args.gpu == -1 else args.gpu, args.slots))
        return

    import torch

    from worker import Device

    gpu = args.gpu if args.gpu is not None else (None if args.tiny else 0)
    if gpu is not None and not torch.cuda.is_available():
        sys.exit("error: no CUDA device here; run with --tiny for the CPU smoke check")
    device = Device.parse(gpu)
    shape = "tiny" if args.tiny else "1b"
    max_tokens = args.max_tokens or (32 if args.tiny else 128)
    levels = [int(x) for x in args.concurrency.split(",")]
    vocab = SHAPES[shape]["vocab_size"]

    with tempfile.TemporaryDirectory(prefix="mtor-bench-") as tmp:
        os.environ["MTOR_HOME"] = tmp
        path = build_model(Path(tmp) / "model", shape, device.torch_dtype)
        print(f"device: {device} ({torch.cuda.get_device_name(device.index) if device.is_cuda else 'CPU'}), "
              f"dtype {device.torch_dtype}, {max_tokens} new tokens a request, greedy")
        base_tok_s, base_tokens, base_s = baseline(
            path, device, prompts(args.baseline_requests, args.prompt_words, vocab, seed=7), max_tokens
        )
        print(f"baseline: one-at-a-time model.generate: {base_tokens} tokens in {base_s:.2f} s = {base_tok_s:.1f} tokens/s")
        results = asyncio.run(realm(path, gpu, levels, max_tokens, args.prompt_words, vocab))

    print()
    print(f"{'concurrent':>10} {'tokens':>7} {'seconds':>8} {'tokens/s':>9} {'vs generate':>11} {'median TTFT':>11}")
    for level, r in results.items():
        print(
            f"{level:>10} {r['tokens']:>7} {r['seconds']:>8.2f} {r['tok_s']:>9.1f} "
            f"{r['tok_s'] / base_tok_s:>10.2f}x {r['ttft_median_s']:>10.3f}s"
        )
    top = max(results)
    ratio = results[top]["tok_s"] / base_tok_s
    print(f"\nthrough the realm at {top} concurrent: {ratio:.2f}x one-at-a-time generate (target >= 8x on a GPU)")


if __name__ == "__main__":
    main()
