"""A realm's own Ethereum key, and recovering who signed a realm frame.

Each realm signs every frame it sends another realm with one secp256k1 key,
kept beside its journal (``broker.db`` -> ``broker.realm-key.json``, mode
0600, the same format as a user's ``key.json``); its checksummed address is
the realm's id that peers pin. Signing and recovery go straight to
libsecp256k1 (coincurve): about 0.1 ms each, so every frame can be signed.
"""

from __future__ import annotations

import json
import secrets
from pathlib import Path
from typing import Any

from broker.keyfile import write_key_once
from broker.protocol import MtorError


class RealmKeyError(MtorError):
    """The realm's key file exists but cannot be used (code ``bad_key``)."""


def realm_key_path(journal_path: Path) -> Path:
    return journal_path.with_name(journal_path.stem + ".realm-key.json")


def keccak(data: bytes) -> bytes:
    try:
        import sha3  # safe-pysha3: C keccak, imported in milliseconds

        return bytes(sha3.keccak_256(data).digest())
    except ImportError:
        from eth_hash.auto import keccak as eth_keccak

        return bytes(eth_keccak(data))


def checksum(address: str) -> str:
    """EIP-55 mixed-case form of a 0x address."""
    hexpart = address.lower().removeprefix("0x")
    digest = keccak(hexpart.encode()).hex()
    return "0x" + "".join(c.upper() if int(digest[i], 16) >= 8 else c for i, c in enumerate(hexpart))


def is_address(text: str) -> bool:
    body = text.removeprefix("0x")
    return text.startswith("0x") and len(body) == 40 and all(c in "0123456789abcdefABCDEF" for c in body)


def address_of(public_key: bytes) -> str:
    """The checksummed address of a secp256k1 public key (33 or 65 bytes)."""
    from coincurve import PublicKey

    raw = PublicKey(public_key).format(compressed=False)[1:]
    return checksum("0x" + keccak(raw)[-20:].hex())


def recover(digest: bytes, signature: bytes) -> bytes | None:
    """The compressed public key that signed the 32-byte ``digest``, or None."""
    from coincurve import PublicKey

    if len(signature) != 65 or signature[64] > 3:
        return None
    try:
        return bytes(PublicKey.from_signature_and_message(signature, digest, hasher=None).format())
    except Exception:  # coincurve raises ValueError and its own types for bad signatures
        return None


class RealmKey:
    """The realm's signing key."""

    def __init__(self, private_key: bytes) -> None:
        from coincurve import PrivateKey

        self._key: Any = PrivateKey(private_key)
        self.public_key = bytes(self._key.public_key.format())
        self.address = address_of(self.public_key)

    def sign(self, digest: bytes) -> bytes:
        """65 bytes (r, s, recovery id) over a 32-byte digest."""
        return bytes(self._key.sign_recoverable(digest, hasher=None))

    @property
    def secret(self) -> bytes:
        return bytes(self._key.secret)

    @classmethod
    def load_or_create(cls, path: Path) -> RealmKey:
        """The key in ``path``, created (race-free, mode 0600) if the file does not exist."""
        if not path.exists():
            _create(path, secrets.token_bytes(32))
        try:
            data = json.loads(path.read_text())
            return cls(bytes.fromhex(str(data["private_key"]).removeprefix("0x")))
        except (OSError, ValueError, KeyError, TypeError) as exc:
            raise RealmKeyError(
                "bad_key",
                f"cannot read the realm key file {path}: {exc}",
                "restore it from a backup; a new key is a new realm id that every peer must pin again",
            ) from exc


def _create(path: Path, secret: bytes) -> None:
    write_key_once(path, RealmKey(secret).address, secret)
