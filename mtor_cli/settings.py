"""Reading and changing the user's config.toml by dotted key ("location", "email.address").

Writes keep the person's own comments and layout (tomlkit), replace the
file atomically and leave it readable by its owner only (mode 0600): it may
hold an email password or an OAuth refresh token.
"""

from __future__ import annotations

import os
import re
from typing import Any

from broker.protocol import MtorError
from mtor_cli.paths import config_file

_KEY = re.compile(r"^[A-Za-z0-9_-]+(?:\.[A-Za-z0-9_-]+)*$")


class SettingsError(MtorError):
    """A bad key, or a config file that cannot be read: a usage error."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__("usage", message, hint)


def _parts(key: str) -> list[str]:
    if not _KEY.match(key):
        raise SettingsError(f"{key!r} is not a config key", "keys are words joined by dots, e.g. email.address")
    return key.split(".")


def _load() -> Any:
    import tomlkit

    path = config_file()
    if not path.exists():
        return tomlkit.document()
    try:
        return tomlkit.parse(path.read_text(encoding="utf-8"))
    except (OSError, ValueError) as exc:
        raise SettingsError(f"cannot read {path}: {exc}", "fix or remove the file") from None


def _save(doc: Any) -> None:
    import tomlkit

    path = config_file()
    tmp = path.with_name(path.name + ".tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w", encoding="utf-8") as fh:
        fh.write(tomlkit.dumps(doc))
    os.chmod(tmp, 0o600)  # an older file may have been group-readable: never again
    tmp.replace(path)


def get_all() -> dict[str, Any]:
    """The whole file as plain Python ({} when there is none)."""
    doc = _load()
    return dict(doc.unwrap())


def get(key: str) -> Any:
    """The value at ``key`` as plain Python, or None when it is not set."""
    node: Any = _load()
    for part in _parts(key):
        if not isinstance(node, dict) or part not in node:
            return None
        node = node[part]
    return node.unwrap() if hasattr(node, "unwrap") else node


def set_value(key: str, value: Any) -> None:
    """Set ``key`` (tables on the way are created), then save."""
    import tomlkit

    parts = _parts(key)
    doc = _load()
    node: Any = doc
    for part in parts[:-1]:
        if part not in node:
            node[part] = tomlkit.table()
        node = node[part]
        if not isinstance(node, dict):
            raise SettingsError(f"{key!r} lies under {part!r}, which is a value, not a table", f"unset {part} first")
    node[parts[-1]] = value
    _save(doc)


def unset(key: str) -> bool:
    """Remove ``key``; True if it was set."""
    parts = _parts(key)
    doc = _load()
    node: Any = doc
    for part in parts[:-1]:
        if not isinstance(node, dict) or part not in node:
            return False
        node = node[part]
    if not isinstance(node, dict) or parts[-1] not in node:
        return False
    del node[parts[-1]]
    _save(doc)
    return True


def update(table: str, values: dict[str, Any]) -> None:
    """Replace the whole table ``table`` with ``values`` in one write (a login's settings)."""
    import tomlkit

    doc = _load()
    fresh = tomlkit.table()
    for name, value in values.items():
        fresh[name] = value
    node: Any = doc
    parts = _parts(table)
    for part in parts[:-1]:
        if part not in node:
            node[part] = tomlkit.table()
        node = node[part]
    node[parts[-1]] = fresh
    _save(doc)
