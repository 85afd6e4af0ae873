"""Checking a peer's signed answer to its connection's challenge."""

from __future__ import annotations

from broker.peer import Peer
from broker.protocol import Error, recover_signer

BAD_SIGNATURE_CLOSE = 4001


def verify(peer: Peer, address: str, nonce: str, signature: str, role: str) -> str | None:
    """The checksummed address if the signature is good for this connection's
    nonce; None otherwise. Either way the nonce is spent: one try per connection."""
    fresh = not peer.nonce_spent and nonce == peer.nonce
    peer.nonce_spent = True
    if not fresh:
        return None
    signer = recover_signer(nonce, role, signature)
    if signer is None or signer.lower() != address.lower():
        return None
    return signer


def bad_signature(peer: Peer, reused: bool) -> Error:
    if reused:
        message = "the challenge nonce is not this connection's, or was already used"
        hint = "sign the nonce of the `challenge` this connection received, once"
    else:
        message = "the signature does not match the address and the challenge"
        hint = "sign the challenge text with the key of the address you send (broker.protocol.sign_challenge)"
    return Error(code="bad_signature", message=message, hint=hint)
