"""The quality check: how often a runtime's top-1 token agrees with full precision.

A quantised model does not need to give the same answer as the original to be
good, and greedy answers part ways for good at the first near-tie, so
comparing generated texts says little. This check instead takes a fixed
reference — greedy continuations of a few prompts by the float32 model in
transformers (:func:`reference`) — feeds prompt and reference through a
runtime (teacher forcing) and counts the positions where the runtime's top-1
next token is the reference's (:func:`agreement`). SmolLM2-135M int8 agrees on
about 95% of the positions; 90% is the bar the tests hold it to.

    python -m worker.quality                      # the default SmolLM2
    python -m worker.quality --model ./model.gguf --precision int4

prints the agreement of the ONNX build beside the float32 model's own (which
should be 100%, proving the reference is what float32 greedy gives).
"""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

PROMPTS = (
    "Computer, tell me a joke",
    "Explain why the sky is blue.",
    "Write a short poem about the sea.",
    "What are three tips for staying healthy?",
)
NEW_TOKENS = 64

Predictor = Callable[[list[int]], list[int]]


def load_transformers(source: str, gguf_file: str | None = None) -> tuple[Any, Any]:
    """A float32 causal LM and its tokenizer on the CPU."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    from worker.models import gguf_parsed_once

    # A GGUF is dequantized to a plain float32 model: the reference is full precision.
    extra: dict[str, Any] = (
        {"gguf_file": gguf_file, "quantization_config": GgufConfig(gguf_file=gguf_file, dequantize=True)}
        if gguf_file
        else {}
    )
    with gguf_parsed_once():
        tokenizer = AutoTokenizer.from_pretrained(source, gguf_file=gguf_file) if gguf_file else AutoTokenizer.from_pretrained(source)
        model = AutoModelForCausalLM.from_pretrained(source, dtype="float32", **extra).eval()
    return model, tokenizer


def reference(model: Any, tokenizer: Any, prompts: tuple[str, ...] = PROMPTS, new_tokens: int = NEW_TOKENS) -> list[dict[str, Any]]:
    """Float32 greedy continuations: ``[{prompt, prompt_ids, ids, text}]``."""
    import torch

    rows = []
    with torch.inference_mode():
        for prompt in prompts:
            encoded = tokenizer.apply_chat_template(
                [{"role": "user", "content": prompt}], add_generation_prompt=True, return_tensors="pt", return_dict=True
            )
            out = model.generate(**encoded, max_new_tokens=new_tokens, do_sample=False)
            prompt_ids = encoded["input_ids"][0].tolist()
            ids = out[0][len(prompt_ids) :].tolist()
            rows.append({"prompt": prompt, "prompt_ids": prompt_ids, "ids": ids, "text": tokenizer.decode(ids)})
    return rows


def transformers_predictor(model: Any) -> Predictor:
    def predict(ids: list[int]) -> list[int]:
        import torch

        with torch.inference_mode():
            logits = model(input_ids=torch.tensor([ids])).logits[0]
        return [int(t) for t in logits.argmax(dim=-1)]

    return predict


def onnx_predictor(folder: Path, threads: int | None = None) -> Predictor:
    from worker.backends.ort_engine import OrtModel

    return OrtModel(folder, threads).predictions


def agreement(predict: Predictor, rows: list[dict[str, Any]]) -> tuple[int, int]:
    """(positions where ``predict``'s top-1 equals the reference, positions compared)."""
    hits = total = 0
    for row in rows:
        prompt, ids = list(row["prompt_ids"]), list(row["ids"])
        best = predict(prompt + ids)
        picks = best[len(prompt) - 1 : len(prompt) - 1 + len(ids)]
        hits += sum(int(a == b) for a, b in zip(picks, ids, strict=True))
        total += len(ids)
    return hits, total


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.quality", description=__doc__.split("\n\n")[0])
    parser.add_argument("--model", default=None, help="a .gguf file, a Hugging Face folder or hub id (default: SmolLM2)")
    parser.add_argument("--precision", default="int8", choices=["int8", "int4", "fp32"])
    parser.add_argument("--json", action="store_true", help="print one JSON object")
    args = parser.parse_args(argv)

    from worker.onnx_build import ensure_onnx_model, resolve_source

    source = resolve_source(args.model)
    path = Path(source.path)
    folder, gguf = (str(path.parent), path.name) if path.suffix == ".gguf" else (source.path, None)
    model, tokenizer = load_transformers(folder, gguf)
    rows = reference(model, tokenizer)
    build = ensure_onnx_model(args.model, precision=args.precision)
    results = {
        "transformers float32": agreement(transformers_predictor(model), rows),
        f"onnx {args.precision}": agreement(onnx_predictor(build), rows),
    }
    if args.json:
        print(json.dumps({name: {"agree": h, "positions": n, "ratio": h / n} for name, (h, n) in results.items()}))
    else:
        for name, (hits, total) in results.items():
            print(f"{name:>22}: top-1 agreement {hits}/{total} = {hits / total:.1%}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
