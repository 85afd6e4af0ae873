"""A paid realm's ledger over plain HTTP, for anyone: what to sign for, the upkeep's state,
a worker's earnings proof, each epoch's published receipts. Shapes in docs/protocol.md.

The proof and receipts handlers read files: they run in a worker thread, never on the loop.
"""

from __future__ import annotations

import asyncio

from aiohttp import web

from broker.parts import Parts
from broker.protocol import rest_json

ADDRESS_CHARS = 42


def _json(data: object, status: int = 200) -> web.Response:
    """Amounts past 2**53 as decimal strings, as every REST body (docs/protocol.md)."""
    return web.Response(body=rest_json(data), status=status, content_type="application/json")


def _error(status: int, code: str, message: str, hint: str = "") -> web.Response:
    return _json({"code": code, "message": message, "hint": hint}, status)


def routes(parts: Parts) -> list[web.RouteDef]:
    billing = parts.billing

    def free() -> web.Response:
        return _error(404, "free_realm", f"the realm {parts.config.realm} is free: it has no ledger")

    async def terms(_: web.Request) -> web.Response:
        if billing is None:
            return free()
        found = billing.public_terms()
        if found is None:
            return _error(503, "not_deployed", "the realm's contracts are being deployed", "retry in a moment")
        return _json(found)

    async def status(_: web.Request) -> web.Response:
        return free() if billing is None else _json(billing.status())

    async def proof(request: web.Request) -> web.Response:
        if billing is None:
            return free()
        address = request.match_info["address"]
        if len(address) != ADDRESS_CHARS or not address.startswith("0x"):
            return _error(400, "bad_params", f"{address!r} is not an address", "0x and 40 hex digits")
        try:
            found = await asyncio.to_thread(billing.proof, address)
        except Exception as exc:  # a ledger error names itself; anything else is ours
            return _error(500, getattr(exc, "code", "internal"), str(exc), getattr(exc, "hint", ""))
        if found is None:
            return _error(404, "not_settled", "the realm has settled no epoch yet", "wait for the next settlement")
        return _json(found)

    async def receipts(request: web.Request) -> web.Response:
        if billing is None:
            return free()
        try:
            epoch = int(request.match_info["epoch"])
        except ValueError:
            return _error(400, "bad_params", "the epoch is a number", "e.g. /v1/ledger/epochs/1")
        body = await asyncio.to_thread(billing.receipts, epoch)
        if body is None:
            return _error(404, "unknown_epoch", f"no epoch {epoch} has been closed", "see /v1/ledger/status")
        return web.Response(body=body, content_type="application/json")

    return [
        web.get("/v1/ledger/terms", terms),
        web.get("/v1/ledger/status", status),
        web.get("/v1/ledger/proof/{address}", proof),
        web.get("/v1/ledger/epochs/{epoch}", receipts),
    ]
