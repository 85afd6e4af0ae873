"""The user's identity: one Ethereum key, created on first use.

The key file (``config/key.json``, mode 0600) holds the private key in hex;
the user id everywhere in the realm is its checksummed address. Creation is
race-free: two ``mtor`` processes starting at once end up with the same key.
"""

from __future__ import annotations

import json
import os
from pathlib import Path
from typing import TYPE_CHECKING

from broker.protocol import MtorError, sane_recursion_limit
from mtor_cli import paths

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount


class IdentityError(MtorError):
    """The key file exists but cannot be used (code ``bad_key``)."""


def load_or_create_account(path: Path | None = None) -> LocalAccount:
    """The account stored at ``path`` (default: the config dir's key.json),
    creating it with a fresh random key if the file does not exist."""
    from eth_account import Account

    sane_recursion_limit()  # py_ecc raised it at import (see broker.protocol)
    path = path or paths.key_file()
    if not path.exists():
        _create(path, Account.create())
    try:
        data = json.loads(path.read_text())
        account = Account.from_key(data["private_key"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IdentityError(
            "bad_key",
            f"cannot read the key file {path}: {exc}",
            "move it away to create a new identity (its address loses its balance)",
        ) from exc
    return account


def _create(path: Path, account: LocalAccount) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = json.dumps(
        {"address": account.address, "private_key": "0x" + account.key.hex().removeprefix("0x")}
    )
    # Write a private temp file, then link it into place: the key is never
    # visible half-written or world-readable, and if another process won the
    # race its key is kept and ours is dropped.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)


def address(path: Path | None = None) -> str:
    """The user id: the checksummed address of the local key."""
    return load_or_create_account(path).address
