"""What a request made with an API key may cost: the one place key spending is decided.

An HTTP client holds a key, not the user's private key, so it cannot sign
anything. The user sets the key's ``limit`` when creating it and, in a paid
realm, signs a spending authorisation that covers it (the gateway's
``create_key``; docs/openai.md); every request made with the key is charged
to the user's address exactly like ``mtor ask`` (hold, capture, release
through the realm's Billing, under that standing authorisation), and this
function keeps the key within its limit: a request whose price is above what the key has left is refused
before it is journaled, and the rest becomes the request's ``max_price``,
which the dispatcher enforces again on its own quote.
"""

from __future__ import annotations

from broker.openai_api.errors import ApiError
from broker.openai_api.keys import ApiKey

DECIMALS = 18  # $9000 base units (the broker does not import the ledger)


def spending_cap(key: ApiKey, price: int, asked: int | None) -> int | None:
    """The ``max_price`` for a request of ``price`` made with ``key``: the client's
    own ``asked`` cap and what the key has left, whichever is lower (None: no cap).
    Raises ApiError ``allowance_exceeded`` when the key's rest does not cover ``price``."""
    left = key.left()
    if left is None:
        return asked
    if price > left:
        raise ApiError(
            "allowance_exceeded",
            f"API key {key.id} has {amount(left)} $9000 left of its limit {amount(key.limit or 0)};"
            f" this request may cost up to {amount(price)}",
            "create a key with a higher --limit (`mtor keys create --limit AMOUNT`)",
            "max_price",
            left=left,
            price=price,
        )
    return left if asked is None else min(asked, left)


def amount(units: int) -> str:
    """Base units as $9000 for people: 1500000000000000000 -> "1.5"."""
    whole, frac = divmod(units, 10**DECIMALS)
    return f"{whole}.{frac:0{DECIMALS}d}".rstrip("0").rstrip(".")
