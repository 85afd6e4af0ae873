"""Signed frames between realms: sealing, opening, and keeping one as proof.

Every WebSocket frame between two realms is a ``RealmEnvelope``: the inner
frames (each a JSON object kept byte for byte) and a signature by the
sending realm's key over

    sha256("MTOR realm frame\\n" origin "\\n" dest "\\n" ts "\\n" nonce "\\n"
           || sha256(frame 1) || sha256(frame 2) || ...)

so one signature covers every frame an event-loop pass sends, and any one
frame (a receipt, an acknowledgement) can later be shown with the hashes of
its neighbours as proof of who said it (:class:`Proof`). A receiver refuses
an envelope for another realm, from a realm it has not pinned, with a bad
signature, stamped outside ``window_s`` of its clock (or before this process
started, since the nonces seen before it are forgotten), or with a nonce it
has already seen from that realm.
"""

from __future__ import annotations

import hashlib
import itertools
import secrets
import time
from collections import deque
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import msgspec

from broker.federation.keys import RealmKey, address_of, recover
from broker.protocol import MtorError, RealmEnvelope, encode, realm_envelope_decoder

PREFIX = b"MTOR realm frame\n"
WINDOW_S = 60.0
MAX_NONCE_CHARS = 64

_envelopes = realm_envelope_decoder()


class FrameRefused(MtorError):
    """An envelope a realm does not accept; ``code``: invalid_message, not_peer,
    frame_expired, frame_replayed or bad_signature."""


def digest(origin: str, dest: str, ts: int, nonce: str, hashes: Sequence[bytes]) -> bytes:
    h = hashlib.sha256(PREFIX)
    h.update(f"{origin.lower()}\n{dest.lower()}\n{ts}\n{nonce}\n".encode())
    for frame_hash in hashes:
        h.update(frame_hash)
    return h.digest()


class Pinned:
    """A peer realm's pinned address and, once a signature proved it, its public key."""

    __slots__ = ("address", "public_key")

    def __init__(self, address: str) -> None:
        self.address = address
        self.public_key: bytes | None = None

    def signed(self, dig: bytes, signature: bytes) -> bool:
        key = recover(dig, signature)
        if key is None:
            return False
        if self.public_key is None:
            # The first envelope from this peer: derive the address once (keccak),
            # later ones compare the recovered key's bytes.
            if address_of(key) != self.address:
                return False
            self.public_key = key
            return True
        return key == self.public_key


class Sealer:
    """Seals the frames one realm sends another over one connection."""

    def __init__(self, key: RealmKey, dest: str) -> None:
        self._key = key
        self._dest = dest
        self._prefix = secrets.token_hex(6) + "-"  # unpredictable, so nonces never repeat across connections
        self._count = itertools.count(1)

    def seal(self, frames: Sequence[bytes]) -> bytes:
        ts = int(time.time() * 1000)
        nonce = f"{self._prefix}{next(self._count)}"
        hashes = [hashlib.sha256(f).digest() for f in frames]
        signature = self._key.sign(digest(self._key.address, self._dest, ts, nonce, hashes))
        envelope = RealmEnvelope(
            origin=self._key.address,
            dest=self._dest,
            ts=ts,
            nonce=nonce,
            frames=[msgspec.Raw(f) for f in frames],
            sig="0x" + signature.hex(),
        )
        return encode(envelope)


class SeenNonces:
    """Nonces seen per origin realm while their frames are inside the window."""

    def __init__(self, window_s: float) -> None:
        self._window = window_s
        self._seen: dict[str, dict[str, float]] = {}
        self._order: dict[str, deque[tuple[float, str]]] = {}

    def spend(self, origin: str, nonce: str, ts_s: float, now: float) -> bool:
        """Record ``nonce``; False if it was seen already."""
        seen = self._seen.setdefault(origin, {})
        order = self._order.setdefault(origin, deque())
        while order and order[0][0] < now:
            seen.pop(order.popleft()[1], None)
        if nonce in seen:
            return False
        until = max(ts_s, now) + self._window
        seen[nonce] = until
        order.append((until, nonce))
        return True

    def __len__(self) -> int:
        return sum(len(s) for s in self._seen.values())


@dataclass(frozen=True, slots=True)
class Proof:
    """An envelope's signed header and frame hashes: shows who said any one of its frames."""

    origin: str
    dest: str
    ts: int
    nonce: str
    sig: str
    hashes: tuple[bytes, ...]

    def to_json(self) -> str:
        return msgspec.json.encode(
            {
                "origin": self.origin,
                "dest": self.dest,
                "ts": self.ts,
                "nonce": self.nonce,
                "sig": self.sig,
                "hashes": [h.hex() for h in self.hashes],
            }
        ).decode()

    @classmethod
    def from_json(cls, text: str) -> Proof:
        data = msgspec.json.decode(text)
        return cls(
            data["origin"], data["dest"], data["ts"], data["nonce"], data["sig"],
            tuple(bytes.fromhex(h) for h in data["hashes"]),
        )

    def shows(self, frame: bytes, signer: str) -> bool:
        """True if ``signer`` signed an envelope holding exactly ``frame``."""
        if hashlib.sha256(frame).digest() not in self.hashes:
            return False
        try:
            signature = bytes.fromhex(self.sig.removeprefix("0x"))
        except ValueError:
            return False
        key = recover(digest(self.origin, self.dest, self.ts, self.nonce, self.hashes), signature)
        return key is not None and self.origin.lower() == signer.lower() and address_of(key) == signer


@dataclass(frozen=True, slots=True)
class Opened:
    origin: str
    frames: list[msgspec.Raw]
    proof: Proof


class Opener:
    """Checks the envelopes one realm receives."""

    def __init__(self, me: str, nonces: SeenNonces, window_s: float = WINDOW_S, not_before: float | None = None) -> None:
        """``not_before`` (unix seconds, default now): envelopes stamped earlier
        are refused, since this process has not seen the nonces used before it."""
        self._me = me.lower()
        self._nonces = nonces
        self._window = window_s
        self._not_before_ms = int((time.time() if not_before is None else not_before) * 1000)

    def open(self, data: str | bytes, pinned: Callable[[str], Pinned | None]) -> Opened:
        """The envelope's frames if ``pinned(origin)`` signed it for this realm, fresh; else FrameRefused."""
        try:
            env: RealmEnvelope = _envelopes.decode(data)
        except (msgspec.DecodeError, msgspec.ValidationError) as exc:
            raise FrameRefused("invalid_message", f"not a realm envelope: {exc}", "send signed realm envelopes") from None
        if env.dest.lower() != self._me:
            raise FrameRefused("not_peer", "the envelope is addressed to another realm", "check the peer's pinned key")
        peer = pinned(env.origin)
        if peer is None:
            raise FrameRefused(
                "not_peer",
                f"realm {env.origin} is not a pinned peer here",
                "both realms must add each other: `mtor federation peer add URL --key ADDRESS`",
            )
        now_ms = time.time() * 1000
        if abs(now_ms - env.ts) > self._window * 1000 or env.ts < self._not_before_ms:
            raise FrameRefused(
                "frame_expired",
                f"the envelope is stamped {(env.ts - now_ms) / 1000:+.1f} s off this realm's clock"
                + (" (before this broker started)" if env.ts < self._not_before_ms else ""),
                f"realm clocks must agree within {self._window:g} s",
            )
        if not env.nonce or len(env.nonce) > MAX_NONCE_CHARS:
            raise FrameRefused("invalid_message", "the envelope's nonce is empty or too long", "")
        try:
            signature = bytes.fromhex(env.sig.removeprefix("0x"))
        except ValueError:
            signature = b""
        hashes = tuple(hashlib.sha256(f).digest() for f in env.frames)
        if not peer.signed(digest(env.origin, env.dest, env.ts, env.nonce, hashes), signature):
            raise FrameRefused(
                "bad_signature",
                f"the envelope is not signed by realm {peer.address}",
                "sign each envelope with the realm key the peer pinned",
            )
        if not self._nonces.spend(peer.address, env.nonce, env.ts / 1000, now_ms / 1000):
            raise FrameRefused("frame_replayed", f"nonce {env.nonce!r} was already used", "never resend an envelope")
        return Opened(peer.address, env.frames, Proof(peer.address, env.dest, env.ts, env.nonce, env.sig, hashes))
