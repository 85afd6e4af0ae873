"""TLS for the broker: wss:// and https:// when a certificate and key are given."""

from __future__ import annotations

import ssl

from broker.config import BrokerConfig


def server_context(config: BrokerConfig) -> ssl.SSLContext | None:
    """The server's SSL context, or None for plain ws:// (no certificate configured)."""
    if config.tls_cert is None:
        return None
    context = ssl.create_default_context(ssl.Purpose.CLIENT_AUTH)
    context.minimum_version = ssl.TLSVersion.TLSv1_2
    context.load_cert_chain(str(config.tls_cert), None if config.tls_key is None else str(config.tls_key))
    return context
