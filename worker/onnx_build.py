"""Build once: any GGUF or Hugging Face chat model -> an int8 ONNX model, cached.

The ONNX runtime (``worker.backends.ort_engine``) serves a model folder made by
onnxruntime-genai's model builder. :func:`ensure_onnx_model` returns that
folder for whatever a worker is pointed at — the default SmolLM2 GGUF, a
``.gguf`` file, a Hugging Face folder or hub id, or a folder that already is an
ONNX build — building it on first use and reusing it afterwards:

- the cache lives under ``<data dir>/models/onnx/<name>-<precision>-<key>/``;
  ``key`` hashes the source's path, size and modification time, the precision
  and the builder's version, so a changed file or a new builder builds again;
- the build runs in a child process (``python -m worker.onnx_export``: it
  imports torch and transformers, which the serving process never does),
  writing into a staging folder that is renamed into place when complete, so
  an interrupted build never leaves half a model; a file lock makes concurrent
  callers wait for one build instead of racing;
- ``progress(done, total, label)`` follows the child's stages and layers;
- a model the builder cannot take fails with :class:`BuildError` code
  ``unsupported_model`` naming its architecture (checked before any child
  starts when the folder has a ``config.json``).
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from broker.protocol import MtorError
from worker.models import DEFAULT_CHAT_MODEL_NAME, models_dir, smollm2_gguf_path

Progress = Callable[[float, float, str], None]

BUILD_FORMAT = 1  # bump when the layout of a build changes, so old caches rebuild
MARKER = "mtor_build.json"
PRECISIONS = ("int8", "int4", "fp32")
DEFAULT_PRECISION = "int8"
PROGRESS_TOTAL = 100.0


class BuildError(MtorError):
    """A model could not be built: ``unsupported_model``, ``model_not_found``,
    ``build_failed``, ``runtime_missing`` or ``bad_params``."""


@dataclass(frozen=True)
class Source:
    """What to build from: ``path`` is a .gguf file, a folder or a hub id."""

    path: str
    name: str
    gguf_file: str | None = None  # a GGUF inside a folder or hub repo

    @property
    def is_gguf(self) -> bool:
        return self.gguf_file is not None or self.path.endswith(".gguf")


def resolve_source(model: str | None, gguf_file: str | None = None) -> Source:
    """The build source for a worker's ``--model`` (None: the default SmolLM2 GGUF)."""
    if model is None:
        return Source(str(smollm2_gguf_path()), DEFAULT_CHAT_MODEL_NAME)
    path = Path(model).expanduser()
    if path.exists():
        resolved = str(path.resolve())
        name = path.stem if path.suffix == ".gguf" else path.resolve().name
        return Source(resolved, name, gguf_file)
    if model.startswith(("/", ".", "~")) or model.endswith(".gguf"):
        raise BuildError("model_not_found", f"there is no model at {model}", "check the path given as --model")
    return Source(model, model.rstrip("/").rsplit("/", 1)[-1], gguf_file)


def is_onnx_build(path: Path) -> bool:
    """True for a folder the ONNX runtime can load as it is."""
    return (path / "genai_config.json").is_file() and (path / "tokenizer.json").is_file()


def _stamp(source: Source) -> list[Any]:
    """What identifies the source's content without reading it all: sizes and mtimes."""
    path = Path(source.path)
    if path.is_file():
        files = [path]
    elif path.is_dir():
        files = sorted(p for p in path.iterdir() if p.is_file())
    else:
        return [source.path]
    return [[p.name, p.stat().st_size, p.stat().st_mtime_ns] for p in files]


def _builder_version() -> str:
    from importlib.metadata import PackageNotFoundError, version

    try:
        return version("onnxruntime-genai")
    except PackageNotFoundError:
        raise BuildError(
            "runtime_missing",
            "the ONNX runtime (onnxruntime-genai) is not installed",
            "pip install onnxruntime-genai onnx onnx-ir, or serve with runtime=transformers",
        ) from None


def cache_dir(source: Source, precision: str = DEFAULT_PRECISION) -> Path:
    """Where the build of ``source`` lives (whether or not it exists yet)."""
    key = json.dumps(
        [BUILD_FORMAT, source.path, source.gguf_file, _stamp(source), precision, _builder_version()]
    )
    digest = hashlib.sha256(key.encode()).hexdigest()[:12]
    slug = re.sub(r"[^A-Za-z0-9._-]+", "-", source.name).strip("-").lower() or "model"
    return models_dir() / "onnx" / f"{slug}-{precision}-{digest}"


def is_complete(folder: Path) -> bool:
    return (folder / MARKER).is_file() and is_onnx_build(folder)


def build_info(folder: Path) -> dict[str, Any]:
    """The marker a finished build wrote (name, source, precision, seconds ...)."""
    try:
        data = json.loads((folder / MARKER).read_text())
    except (OSError, ValueError):
        return {}
    return data if isinstance(data, dict) else {}


def supported_architectures() -> list[str]:
    """The Hugging Face architectures the installed builder converts.

    Read from the builder's source text (importing it pulls in torch); empty
    when it cannot tell, and then the build itself decides.
    """
    import importlib.util

    spec = importlib.util.find_spec("onnxruntime_genai")
    if spec is None or not spec.submodule_search_locations:
        return []
    builder = Path(next(iter(spec.submodule_search_locations))) / "models" / "builder.py"
    try:
        text = builder.read_text(encoding="utf-8")
    except OSError:
        return []
    return sorted(set(re.findall(r'architectures\[0\]\s*==\s*"(\w+)"', text)))


def unsupported(architecture: str, name: str) -> BuildError:
    known = supported_architectures()
    listing = f"; it builds {', '.join(known)}" if known else ""
    return BuildError(
        "unsupported_model",
        f"the ONNX builder cannot convert {name}: architecture {architecture} is not supported{listing}",
        "serve this model with runtime=transformers (e.g. mtor worker serve --runtime transformers)",
    )


def check_supported(source: Source) -> None:
    """Refuse an HF folder whose architecture the builder lacks, before any child starts."""
    config = Path(source.path) / "config.json"
    if source.is_gguf or not config.is_file():
        return
    try:
        architectures = json.loads(config.read_text()).get("architectures") or []
    except (OSError, ValueError):
        return
    known = supported_architectures()
    if architectures and known and architectures[0] not in known:
        raise unsupported(str(architectures[0]), source.name)


@contextmanager
def _lock(path: Path) -> Iterator[None]:
    import fcntl

    path.parent.mkdir(parents=True, exist_ok=True)
    with open(path, "w") as fh:
        fcntl.flock(fh, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(fh, fcntl.LOCK_UN)


def ensure_onnx_model(
    model: str | None,
    *,
    gguf_file: str | None = None,
    precision: str = DEFAULT_PRECISION,
    progress: Progress | None = None,
) -> Path:
    """The ONNX build of ``model`` (None: the default), building it once if needed.

    Raises :class:`BuildError` (``unsupported_model``, ``build_failed``,
    ``runtime_missing``) and ``worker.models.ModelUnavailable``.
    """
    report = progress or (lambda done, total, label: None)
    if model is not None and is_onnx_build(Path(model).expanduser()):
        return Path(model).expanduser()
    if precision not in PRECISIONS:
        raise BuildError("bad_params", f"unknown precision {precision!r}", f"use one of {', '.join(PRECISIONS)}")
    source = resolve_source(model, gguf_file)
    target = cache_dir(source, precision)
    if is_complete(target):
        report(PROGRESS_TOTAL, PROGRESS_TOTAL, "cached")
        return target
    check_supported(source)
    with _lock(target.parent / ".locks" / f"{target.name}.lock"):
        if is_complete(target):  # another process built it while we waited
            report(PROGRESS_TOTAL, PROGRESS_TOTAL, "cached")
            return target
        _build(source, target, precision, report)
    report(PROGRESS_TOTAL, PROGRESS_TOTAL, "ready")
    return target


def _build(source: Source, target: Path, precision: str, report: Progress) -> None:
    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix=f".{target.name}-", dir=target.parent))
    log = staging / "build.log"
    started = time.monotonic()
    cmd = [
        sys.executable, "-m", "worker.onnx_export",
        "--source", source.path, "--out", str(staging), "--precision", precision, "--name", source.name,
    ]  # fmt: skip
    if source.gguf_file:
        cmd += ["--gguf-file", source.gguf_file]
    read_fd, write_fd = os.pipe()
    cmd += ["--progress-fd", str(write_fd)]
    env = dict(os.environ, HF_HUB_DISABLE_PROGRESS_BARS="1", TQDM_DISABLE="1", TOKENIZERS_PARALLELISM="false")
    failure: dict[str, Any] | None = None
    try:
        with open(log, "wb") as out:
            proc = subprocess.Popen(
                cmd, stdin=subprocess.DEVNULL, stdout=out, stderr=subprocess.STDOUT, pass_fds=(write_fd,), env=env
            )
        os.close(write_fd)
        write_fd = -1
        with os.fdopen(read_fd, "r", encoding="utf-8") as events:
            read_fd = -1
            for line in events:
                try:
                    event = json.loads(line)
                except ValueError:
                    continue
                if "error" in event:
                    failure = event["error"]
                else:
                    report(float(event["done"]), PROGRESS_TOTAL, str(event["label"]))
        code = proc.wait()
        if failure is not None:
            raise BuildError(str(failure["code"]), str(failure["message"]), str(failure.get("hint", "")))
        if code != 0 or not is_onnx_build(staging):
            kept = target.with_name(target.name + ".failed.log")
            shutil.copy(log, kept)
            raise BuildError(
                "build_failed",
                f"building the ONNX model of {source.name} failed (exit {code}): {_last_error(log)}",
                f"see {kept}; serve with runtime=transformers meanwhile",
            )
        info = build_info(staging)
        info["seconds"] = round(time.monotonic() - started, 2)
        (staging / MARKER).write_text(json.dumps(info, indent=2))
        if target.exists():
            shutil.rmtree(target)  # incomplete leftovers: a complete one returned above
        staging.rename(target)
    finally:
        for fd in (read_fd, write_fd):
            if fd >= 0:
                os.close(fd)
        shutil.rmtree(staging, ignore_errors=True)


def _last_error(log: Path) -> str:
    try:
        lines = [line.strip() for line in log.read_text(errors="replace").splitlines() if line.strip()]
    except OSError:
        return "no log"
    wanted = [line for line in lines if "Error" in line or "error" in line]
    return (wanted or lines or ["no output"])[-1][:300]
