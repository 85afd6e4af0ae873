"""Fast secp256k1 keys for logins: address and EIP-191 personal-sign, nothing else.

Signing a login challenge is all ``mtor ask`` does with its key, and importing
eth_account for it costs about half a second, more than the rest of the ask.
coincurve (libsecp256k1) and pycryptodome's keccak give the same signature,
byte for byte (RFC 6979 nonces, low-s), in about a millisecond of imports.
Anything that builds transactions still uses eth_account (``identity``).
"""

from __future__ import annotations

from dataclasses import dataclass, field

SECP256K1_ORDER = 0xFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFFEBAAEDCE6AF48A03BBFD25E8CD0364141


def keccak256(data: bytes) -> bytes:
    from Crypto.Hash import keccak

    return keccak.new(data=data, digest_bits=256).digest()


def checksum_address(raw: bytes) -> str:
    """EIP-55 mixed-case hex of a 20-byte address."""
    hexaddr = raw.hex()
    digest = keccak256(hexaddr.encode()).hex()
    return "0x" + "".join(c.upper() if int(digest[i], 16) >= 8 else c for i, c in enumerate(hexaddr))


def address_of(private_key: bytes) -> str:
    """The checksummed Ethereum address of a 32-byte private key."""
    from coincurve import PrivateKey

    public = PrivateKey(private_key).public_key.format(compressed=False)[1:]
    return checksum_address(keccak256(public)[-20:])


def personal_sign(private_key: bytes, text: str) -> str:
    """EIP-191 ``personal_sign`` of ``text``: 0x-hex r || s || v, v in {27, 28}."""
    from coincurve import PrivateKey

    message = text.encode()
    digest = keccak256(b"\x19Ethereum Signed Message:\n" + str(len(message)).encode() + message)
    signature = PrivateKey(private_key).sign_recoverable(digest, hasher=None)
    return "0x" + (signature[:64] + bytes([signature[64] + 27])).hex()


def parse_private_key(value: str | bytes) -> bytes:
    """32 key bytes from hex (with or without 0x) or raw bytes; ValueError if not a valid key."""
    raw = bytes.fromhex(value.removeprefix("0x")) if isinstance(value, str) else bytes(value)
    if len(raw) != 32 or not 0 < int.from_bytes(raw, "big") < SECP256K1_ORDER:
        raise ValueError("a private key is 32 bytes in 1..n-1 of secp256k1")
    return raw


@dataclass(frozen=True)
class Signer:
    """A key that can log in: ``address`` and ``key`` like eth_account's LocalAccount."""

    key: bytes = field(repr=False)
    address: str = ""

    @classmethod
    def from_key(cls, private_key: str | bytes) -> Signer:
        raw = parse_private_key(private_key)
        return cls(key=raw, address=address_of(raw))

    def sign_text(self, text: str) -> str:
        return personal_sign(self.key, text)
