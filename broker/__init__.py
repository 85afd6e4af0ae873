"""The MTOR realm broker.

Public API: :class:`BrokerConfig`, :class:`BrokerServer`, :func:`serve`, and
the billing interface (:class:`Billing`, :class:`InsufficientFunds`). Loaded
lazily so that importing ``broker.protocol`` (every peer does) does not pull
in aiohttp's server or SQLite.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

__all__ = ["Billing", "BrokerConfig", "BrokerServer", "InsufficientFunds", "serve"]

_WHERE = {
    "BrokerConfig": "broker.config",
    "BrokerServer": "broker.server",
    "serve": "broker.server",
    "Billing": "broker.billing",
    "InsufficientFunds": "broker.billing",
}

if TYPE_CHECKING:
    from broker.billing import Billing, InsufficientFunds
    from broker.config import BrokerConfig
    from broker.server import BrokerServer, serve


def __getattr__(name: str) -> Any:
    module = _WHERE.get(name)
    if module is None:
        raise AttributeError(f"module 'broker' has no attribute {name!r}")
    import importlib

    return getattr(importlib.import_module(module), name)
