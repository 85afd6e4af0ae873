"""keccak-256, the Ethereum hash, as fast as this machine allows.

The Merkle trees of settlement and the audit hash every receipt three times:
safe-pysha3's C keccak is ~4x faster than eth_hash's pycryptodome backend
(2.6 against 11 us for a receipt leaf here). eth_hash stays the fallback for a
platform without a safe-pysha3 wheel.
"""

from __future__ import annotations

from collections.abc import Callable

keccak: Callable[[bytes], bytes]

try:
    from sha3 import keccak_256

    def keccak(data: bytes) -> bytes:
        return keccak_256(data).digest()

except ImportError:  # no wheel for this platform: the portable one
    from eth_hash.auto import keccak  # noqa: F401  (the module exports it)
