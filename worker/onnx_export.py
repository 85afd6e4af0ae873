"""The child process of a build: ``python -m worker.onnx_export --source S --out DIR``.

Runs onnxruntime-genai's model builder in this process (torch and
transformers load here, never in the serving process) and reports progress as
JSON lines on ``--progress-fd``: ``{"done": 0..100, "label": "..."}``, or one
``{"error": {"code", "message", "hint"}}`` before exiting with status 2. The
builder's own chatter goes to stdout/stderr, which the parent writes to the
build log.

A GGUF source is dequantized with transformers and handed to the builder in
memory (only its config and tokenizer touch the disk), which saves writing and
re-reading a full-precision copy of the weights.
"""

from __future__ import annotations

import argparse
import json
import logging
import os
import shutil
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Report = Callable[[float, str], None]

# Share of the progress bar per stage (the bar runs 0..100).
GGUF_DONE = 35.0
GRAPH_DONE = 75.0
QUANTIZED_DONE = 95.0


class ExportFailed(Exception):
    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code, self.message, self.hint = code, message, hint


def _reporter(fd: int) -> tuple[Report, Callable[[ExportFailed], None]]:
    stream = os.fdopen(fd, "w", buffering=1, encoding="utf-8") if fd >= 0 else None

    def report(done: float, label: str) -> None:
        if stream is not None:
            stream.write(json.dumps({"done": round(done, 1), "label": label}) + "\n")

    def fail(exc: ExportFailed) -> None:
        if stream is not None:
            stream.write(json.dumps({"error": {"code": exc.code, "message": exc.message, "hint": exc.hint}}) + "\n")

    return report, fail


def _unsupported(architecture: str, name: str) -> ExportFailed:
    from worker.onnx_build import unsupported

    err = unsupported(architecture, name)
    return ExportFailed(err.code, err.message, err.hint)


def _load_gguf(source: Path, gguf_file: str | None, hf_dir: Path, name: str, report: Report) -> Any:
    """Dequantize a GGUF into a torch model; write its config and tokenizer to ``hf_dir``."""
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    from worker.models import gguf_parsed_once

    folder, file = (source, gguf_file) if gguf_file else (source.parent, source.name)
    report(2, "reading the GGUF tokenizer")
    try:
        with gguf_parsed_once():
            tokenizer = AutoTokenizer.from_pretrained(str(folder), gguf_file=file)
            report(10, "dequantizing the GGUF weights")
            model = AutoModelForCausalLM.from_pretrained(
                str(folder), gguf_file=file, quantization_config=GgufConfig(gguf_file=file, dequantize=True)
            )
    except ValueError as exc:  # transformers: "GGUF model with architecture X is not supported yet."
        found = _gguf_architecture(str(exc))
        if found:
            raise _unsupported(found, name) from None
        raise
    hf_dir.mkdir(parents=True, exist_ok=True)
    model.config.architectures = [type(model).__name__]  # model.save_pretrained would set it
    model.config.save_pretrained(hf_dir)
    model.generation_config.save_pretrained(hf_dir)
    tokenizer.save_pretrained(hf_dir)
    return model


def _gguf_architecture(message: str) -> str | None:
    import re

    match = re.search(r"architecture (\S+?) is not supported", message)
    return match.group(1) if match else None


def _architecture(hf: str) -> str:
    try:
        return str((json.loads((Path(hf) / "config.json").read_text()).get("architectures") or ["unknown"])[0])
    except (OSError, ValueError):
        return "unknown"


class _QuantizeProgress(logging.Handler):
    """Counts the builder's per-MatMul "complete quantization" log lines."""

    def __init__(self, total: int, report: Report) -> None:
        super().__init__(logging.INFO)
        self.total, self.done, self.report = max(total, 1), 0, report

    def emit(self, record: logging.LogRecord) -> None:
        if "complete quantization" in record.getMessage():
            self.done += 1
            share = min(self.done / self.total, 1.0)
            self.report(GRAPH_DONE + (QUANTIZED_DONE - GRAPH_DONE) * share, "quantizing weights")


def export(args: argparse.Namespace, report: Report) -> None:
    out = Path(args.out)
    source = Path(args.source)
    hf_dir = out / ".hf"
    cache = out / ".cache"
    in_memory: Any = None
    is_gguf = args.gguf_file is not None or args.source.endswith(".gguf")
    if is_gguf:
        in_memory = _load_gguf(source, args.gguf_file, hf_dir, args.name, report)
        hf = str(hf_dir)
    else:
        hf = args.source
    report(GGUF_DONE if is_gguf else 5, "loading the model builder")
    import importlib

    from onnxruntime_genai.models import builder  # its package puts the builder's folder on sys.path

    # The builder imports its classes as the top-level module `builders`, not
    # through the package: hook that copy.
    base = importlib.import_module("builders.base")

    make_layer = base.Model.make_layer
    load_weights = base.Model.load_weights
    start = GGUF_DONE if is_gguf else 10.0

    def traced_make_layer(self: Any, layer_id: int, layer: Any) -> Any:
        share = (layer_id + 1) / max(int(getattr(self, "num_layers", layer_id + 1)), 1)
        report(start + (GRAPH_DONE - start) * share, "building the ONNX graph")
        return make_layer(self, layer_id, layer)

    def weights(self: Any, input_path: str) -> Any:
        return in_memory if in_memory is not None else load_weights(self, input_path)

    base.Model.make_layer = traced_make_layer
    base.Model.load_weights = weights
    is_dir = os.path.isdir(hf)
    model_name, input_path = (None, hf) if is_dir else (hf, "")
    counter: _QuantizeProgress | None = None
    try:
        extra = builder.parse_extra_options(model_name, input_path, str(out), args.precision, "cpu", str(cache), [])
        config = extra["hf_details"]["hf_config"]
        layers = int(getattr(config, "num_hidden_layers", 0) or 0)
        counter = _QuantizeProgress(layers * 5 + 1, report)
        logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").addHandler(counter)
        builder.create_model(model_name, input_path, str(out), args.precision, "cpu", str(cache), **extra)
    except NotImplementedError:
        raise _unsupported(_architecture(hf) if is_dir else "unknown", args.name) from None
    finally:
        if counter is not None:
            logging.getLogger("onnxruntime.quantization.matmul_nbits_quantizer").removeHandler(counter)
    report(QUANTIZED_DONE, "saving")
    generation = Path(hf) / "generation_config.json"
    if is_dir and generation.is_file():
        shutil.copy(generation, out / "generation_config.json")
    marker = {
        "name": args.name,
        "source": args.source,
        "gguf_file": args.gguf_file,
        "precision": args.precision,
        "architecture": _architecture(hf) if is_dir else "unknown",
        "builder": _version("onnxruntime-genai"),
    }
    (out / "mtor_build.json").write_text(json.dumps(marker, indent=2))
    shutil.rmtree(hf_dir, ignore_errors=True)
    shutil.rmtree(cache, ignore_errors=True)


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m worker.onnx_export")
    parser.add_argument("--source", required=True, help="a .gguf file, a Hugging Face folder or hub id")
    parser.add_argument("--out", required=True, help="the folder to write the ONNX model to")
    parser.add_argument("--precision", default="int8", choices=["int8", "int4", "fp32"])
    parser.add_argument("--name", default="model", help="the model's name, for messages")
    parser.add_argument("--gguf-file", default=None, help="the GGUF file inside --source (a folder)")
    parser.add_argument("--progress-fd", type=int, default=-1, help="write JSON progress lines to this fd")
    args = parser.parse_args(argv)
    report, fail = _reporter(args.progress_fd)
    try:
        export(args, report)
    except ExportFailed as exc:
        fail(exc)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
