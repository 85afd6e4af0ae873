"""A key file written once: private, never seen half-written, first writer wins.

Users' identities (mtor_cli.identity) and realm keys (broker.federation.keys)
are both stored this way.
"""

from __future__ import annotations

import json
import os
from pathlib import Path


def write_key_once(path: Path, address: str, secret: bytes) -> None:
    """Store ``{address, private_key}`` at ``path`` (mode 0600) unless a key is there already."""
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    body = json.dumps({"address": address, "private_key": "0x" + secret.hex()})
    # A private temp file linked into place: never visible half-written or
    # world-readable, and if another process won the race its key is kept.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    try:
        with os.fdopen(fd, "w") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        try:
            os.link(tmp, path)
        except FileExistsError:
            pass
    finally:
        tmp.unlink(missing_ok=True)
