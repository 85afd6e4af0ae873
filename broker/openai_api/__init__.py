"""The OpenAI-compatible HTTP API of a realm: API keys, /v1/chat/completions and friends.

Public API: :class:`OpenAIGateway` (the part BrokerServer builds), :class:`KeyStore`
and :func:`keys_path`. The handlers are in ``routes`` and ``keys_rest``.
Reference: docs/openai.md.
"""

from __future__ import annotations

from broker.openai_api.gateway import HANGUP_CHECK_S, OpenAIGateway
from broker.openai_api.keys import KeyStore, keys_path

__all__ = ["HANGUP_CHECK_S", "KeyStore", "OpenAIGateway", "keys_path"]
