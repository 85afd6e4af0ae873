"""Where mtor keeps its files.

``MTOR_HOME`` overrides everything (tests always set it): config lives in
``$MTOR_HOME/config`` and data in ``$MTOR_HOME/data``. Otherwise the
platform's user dirs for "mtor" (``~/.config/mtor``, ``~/.local/share/mtor``
on Linux). Directories are created on first use, private to the user.
"""

from __future__ import annotations

import os
import tomllib
from pathlib import Path
from typing import Any

APP_NAME = "mtor"
ENV_HOME = "MTOR_HOME"
ENV_BROKER = "MTOR_BROKER"


def _ensure(path: Path) -> Path:
    path.mkdir(parents=True, exist_ok=True, mode=0o700)
    return path


def home() -> Path | None:
    """The ``MTOR_HOME`` override, or None when the platform dirs apply."""
    value = os.environ.get(ENV_HOME)
    return Path(value).expanduser() if value else None


def config_dir() -> Path:
    root = home()
    if root is not None:
        return _ensure(root / "config")
    from platformdirs import user_config_path

    return _ensure(user_config_path(APP_NAME))


def data_dir() -> Path:
    root = home()
    if root is not None:
        return _ensure(root / "data")
    from platformdirs import user_data_path

    return _ensure(user_data_path(APP_NAME))


def key_file() -> Path:
    """The user's Ethereum key (see :mod:`mtor_cli.identity`)."""
    return config_dir() / "key.json"


def config_file() -> Path:
    """Optional TOML settings, e.g. ``broker = "ws://realm.example:8765"``."""
    return config_dir() / "config.toml"


def realm_dir() -> Path:
    """State of the embedded default realm: pid file, journal, log."""
    return _ensure(data_dir() / "realm")


def models_dir() -> Path:
    return _ensure(data_dir() / "models")


def load_config() -> dict[str, Any]:
    """The settings in :func:`config_file`, or {} when there is none.

    A broken file is an error the user must see, not silently ignored.
    """
    path = config_file()
    if not path.exists():
        return {}
    with path.open("rb") as fh:
        return tomllib.load(fh)


def configured_broker() -> str | None:
    """The broker named by ``MTOR_BROKER`` or the config file, else None
    (None means: use the embedded default realm)."""
    value = os.environ.get(ENV_BROKER) or load_config().get("broker")
    return str(value) if value else None
