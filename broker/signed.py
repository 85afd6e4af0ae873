"""Signed REST requests: who is asking, proven per request.

A request that reads or changes someone's data carries ``X-MTOR-Address``,
``X-MTOR-Timestamp`` (unix seconds), ``X-MTOR-Nonce`` (fresh random) and
``X-MTOR-Signature``, an EIP-191 signature of :func:`broker.protocol.request_text`
(method, path with query, timestamp, nonce, SHA-256 of the body). The broker accepts a signature once and
only within ``request_window_s`` of its timestamp, so a captured request
cannot be replayed, and never for another address than the one that signed.
Used nonces are kept in the accounts store until their window has passed, so
a restart of the broker does not open the window again.
"""

from __future__ import annotations

import time

from aiohttp import web

from broker.accounts import AccountStore
from broker.protocol import MtorError, recover_request_signer


class SignatureRefused(MtorError):
    """A signed request the broker does not accept (always `bad_signature`)."""

    def __init__(self, message: str, hint: str) -> None:
        super().__init__("bad_signature", message, hint)


class RequestVerifier:
    def __init__(self, window_s: float, store: AccountStore) -> None:
        self._window = window_s
        self._store = store  # "address:nonce" -> when it may be forgotten, durable
        self._next_prune = 0.0

    async def verify(self, request: web.Request) -> str:
        """The checksummed address that signed ``request``; raises SignatureRefused."""
        address = request.headers.get("X-MTOR-Address", "")
        stamp = request.headers.get("X-MTOR-Timestamp", "")
        nonce = request.headers.get("X-MTOR-Nonce", "")
        signature = request.headers.get("X-MTOR-Signature", "")
        if not (address and stamp and nonce and signature) or len(nonce) > 64:
            raise SignatureRefused(
                "this endpoint needs a signed request",
                "send X-MTOR-Address, X-MTOR-Timestamp, X-MTOR-Nonce and X-MTOR-Signature (mtor does this for you)",
            )
        try:
            ts = int(stamp)
        except ValueError:
            raise SignatureRefused("X-MTOR-Timestamp is not an integer", "send unix seconds") from None
        now = time.time()
        if abs(now - ts) > self._window:
            raise SignatureRefused(
                f"the request's timestamp is {now - ts:+.0f} s off the broker's clock",
                f"sign a fresh request; clocks must agree within {self._window:g} s",
            )
        body = await request.read()
        signer = recover_request_signer(request.method, request.path_qs, ts, nonce, body, signature)
        if signer is None or signer.lower() != address.lower():
            raise SignatureRefused(
                "the signature does not match the address and the request",
                "sign broker.protocol.request_text(...) with the key of X-MTOR-Address",
            )
        await self._prune(now)
        # Good until the timestamp leaves the window on either side.
        if not await self._store.spend_nonce(f"{signer.lower()}:{nonce}", ts + self._window):
            raise SignatureRefused("this signed request was already used", "sign each request afresh")
        return signer

    async def _prune(self, now: float) -> None:
        if now < self._next_prune:
            return
        self._next_prune = now + self._window / 4
        await self._store.forget_nonces(now)
