"""Realms that federate: pinned peer realms, signed frames, forwarded intents, receipts and credit.

Public API: :class:`Federation` (the broker part), the realm key
(:class:`RealmKey`, :func:`realm_key_path`) and the federation store that
``mtor federation`` edits (:class:`FederationStore`, :class:`PeerRecord`,
:func:`federation_path`, :class:`FederationError`). docs/federation.md
describes the protocol and what a peer sees. Loaded lazily, so the CLI's
``mtor federation peer list`` does not import the broker's sockets.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = [
    "Federation",
    "FederationError",
    "FederationStore",
    "PeerRecord",
    "RealmKey",
    "federation_path",
    "realm_key_path",
]

_WHERE = {
    "Federation": "broker.federation.federation",
    "RealmKey": "broker.federation.keys",
    "realm_key_path": "broker.federation.keys",
    "FederationError": "broker.federation.store",
    "FederationStore": "broker.federation.store",
    "PeerRecord": "broker.federation.store",
    "federation_path": "broker.federation.store",
}

if TYPE_CHECKING:
    from broker.federation.federation import Federation
    from broker.federation.keys import RealmKey, realm_key_path
    from broker.federation.store import FederationError, FederationStore, PeerRecord, federation_path


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'broker.federation' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
