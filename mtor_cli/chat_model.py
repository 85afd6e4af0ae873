"""Get the chat model ready in the foreground, with a progress bar, before a worker starts.

``mtor ask`` (starting the embedded realm) and ``mtor worker serve`` call
:func:`prepare_chat_model` so that a first run shows what it is doing — building
the int8 ONNX model once (ONNX runtime) or converting the default GGUF once
(transformers) — instead of a worker that silently takes a while to register.
A model that is already built costs a cache lookup and draws nothing.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from typing import Any

from mtor_cli.client import RealmError


@dataclass(frozen=True)
class PreparedModel:
    """What the chat backend should load (``model``) and with which runtime."""

    model: str | None
    runtime: str


class _LazyBar:
    """A note and a rich progress bar on stderr, shown only once there is real work to show."""

    def __init__(self, title: str) -> None:
        self.title = title
        self._bar: Any = None
        self._task: Any = None

    def __call__(self, done: float, total: float, label: str) -> None:
        if self._bar is None:
            if label in ("cached", "ready") and done >= total:
                return
            from rich.progress import BarColumn, Progress, TaskProgressColumn, TextColumn, TimeElapsedColumn

            from mtor_cli.output import err_console, note

            note(f"{self.title} ...")
            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                TaskProgressColumn(),
                TimeElapsedColumn(),
                console=err_console(),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(label, total=total)
        self._bar.update(self._task, completed=done, total=total, description=label)

    def close(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


def prepare_chat_model(model: str | None, runtime: str = "auto", gpu: int | None = None) -> PreparedModel:
    """Build or convert ``model`` (None: the default SmolLM2) for ``runtime``; RealmError if it cannot."""
    from worker.backends.base import Device
    from worker.backends.chat_runtimes import choose_runtime
    from worker.models import ModelUnavailable

    # One progress bar (ours), not transformers' own per-file bars as well.
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")
    try:
        chosen = choose_runtime(runtime, Device("cuda", gpu) if gpu is not None else Device())
    except ValueError as exc:
        raise RealmError("usage", str(exc), "e.g. --runtime onnx") from None
    name = model or "SmolLM2-135M-Instruct"
    try:
        if chosen == "onnx":
            return _build_onnx(model, name, fallback=runtime == "auto")
        if model is not None:
            return PreparedModel(model, "transformers")
        from worker.models import default_chat_model

        bar = _LazyBar(f"converting {name} for transformers (once)")
        try:
            return PreparedModel(str(default_chat_model(progress=bar)), "transformers")
        finally:
            bar.close()
    except ModelUnavailable as exc:
        raise RealmError("realm_failed", exc.message, exc.hint) from exc


def _build_onnx(model: str | None, name: str, *, fallback: bool) -> PreparedModel:
    from mtor_cli.output import note
    from worker.onnx_build import BuildError, ensure_onnx_model

    bar = _LazyBar(f"building {name} for the ONNX runtime (once)")
    try:
        return PreparedModel(str(ensure_onnx_model(model, progress=bar)), "onnx")
    except BuildError as exc:
        if fallback and exc.code in ("unsupported_model", "runtime_missing"):
            note(f"{exc.message}; serving it with transformers instead (slower)")
            return PreparedModel(model, "transformers")
        raise RealmError(exc.code, exc.message, exc.hint) from exc
    finally:
        bar.close()
