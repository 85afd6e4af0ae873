"""The user's identity: one Ethereum key, created on first use.

The key file (``config/key.json``, mode 0600) holds the private key in hex;
the user id everywhere in the realm is its checksummed address. Creation is
race-free: two ``mtor`` processes starting at once end up with the same key.

:func:`load_signer` is all a login needs (address + personal-sign, through
coincurve, no eth_account import); :func:`load_or_create_account` gives the
full eth_account ``LocalAccount`` for whatever signs transactions.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import TYPE_CHECKING

from broker.keyfile import write_key_once
from broker.protocol import MtorError, sane_recursion_limit
from mtor_cli import paths
from mtor_cli.keys import SECP256K1_ORDER, Signer

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount


class IdentityError(MtorError):
    """The key file exists but cannot be used (code ``bad_key``)."""


def load_signer(path: Path | None = None) -> Signer:
    """The key stored at ``path`` (default: the config dir's key.json) as a
    login :class:`~mtor_cli.keys.Signer`, creating the file with a fresh random
    key if it does not exist."""
    path = path or paths.key_file()
    if not path.exists():
        _create(path, _new_key())
    try:
        data = json.loads(path.read_text())
        return Signer.from_key(data["private_key"])
    except (OSError, ValueError, KeyError, TypeError) as exc:
        raise IdentityError(
            "bad_key",
            f"cannot read the key file {path}: {exc}",
            "move it away to create a new identity (its address loses its balance)",
        ) from exc


def load_or_create_account(path: Path | None = None) -> LocalAccount:
    """Like :func:`load_signer`, as an eth_account ``LocalAccount`` (transactions)."""
    from eth_account import Account

    sane_recursion_limit()  # py_ecc raised it at import (see broker.protocol)
    return Account.from_key(load_signer(path).key)


def _new_key() -> Signer:
    while True:
        raw = secrets.token_bytes(32)
        if 0 < int.from_bytes(raw, "big") < SECP256K1_ORDER:
            return Signer.from_key(raw)


def _create(path: Path, account: Signer) -> None:
    write_key_once(path, account.address, account.key)


def address(path: Path | None = None) -> str:
    """The user id: the checksummed address of the local key."""
    return load_or_create_account(path).address
