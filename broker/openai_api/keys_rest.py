"""API key management: signed requests (broker/signed.py), like every account action.

``POST /v1/keys {name, limit}`` creates one (the secret is in this answer
only), ``GET /v1/keys`` lists yours, ``DELETE /v1/keys/{id}`` revokes one and
ends its running requests (their holds are released). Errors are
``{"error": {code, message, hint}}``. Shapes in docs/openai.md.
"""

from __future__ import annotations

from typing import Any

import orjson
from aiohttp import web

from broker.openai_api.keys import KeyRefused
from broker.parts import Parts
from broker.protocol import MtorError

DEFAULT_LIMIT = 10 * 10**18  # base units: what a key may spend in a paid realm unless its creator says
_STATUS = {"bad_signature": 401, "unknown_key": 404}


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=orjson.dumps(data), status=status, content_type="application/json")


def _amount(value: int | None) -> str | None:
    """Amounts go out as decimal strings of base units: JSON numbers lose digits past 2**53."""
    return None if value is None else str(value)


def routes(parts: Parts) -> list[web.RouteDef]:
    gw, verifier = parts.openai, parts.verifier
    keys = gw.keys

    def view(data: dict[str, Any]) -> dict[str, Any]:
        return {**data, "limit": _amount(data["limit"]), "spent": _amount(data["spent"])}

    async def signed(request: web.Request) -> str:
        return await verifier.verify(request)

    async def create(request: web.Request) -> web.Response:
        try:
            who = await signed(request)
            data = orjson.loads(await request.read() or b"{}")
            if not isinstance(data, dict):
                raise KeyRefused("invalid_message", "the body must be a JSON object", '{"name": "laptop"}')
            name = data.get("name", "")
            limit = data.get("limit")
            if not isinstance(name, str):
                raise KeyRefused("invalid_message", "`name` must be a string", '{"name": "laptop"}')
            if limit is not None and not (isinstance(limit, str) and limit.isdigit() and len(limit) <= 78):
                raise KeyRefused("bad_params", "`limit` must be base units of $9000 as a string of digits",
                                 '{"limit": "5000000000000000000"} for 5 $9000')
            if limit is None and gw.paid:
                limit = DEFAULT_LIMIT
            key, secret = keys.create(who, name, None if limit is None else int(limit))
        except orjson.JSONDecodeError:
            return _error(KeyRefused("invalid_json", "the body is not JSON", "send a JSON object"))
        except MtorError as exc:
            return _error(exc)
        return _json({**view(key.to_dict()), "secret": secret, "paid": gw.paid, "realm": gw.realm})

    async def listing(request: web.Request) -> web.Response:
        try:
            who = await signed(request)
        except MtorError as exc:
            return _error(exc)
        return _json({"address": who, "paid": gw.paid, "keys": [view(k.to_dict()) for k in keys.of(who)]})

    async def revoke(request: web.Request) -> web.Response:
        try:
            who = await signed(request)
            key, ended = gw.revoke(who, request.match_info["key_id"])
        except MtorError as exc:
            return _error(exc)
        return _json({**view(key.to_dict()), "requests_ended": ended})

    return [
        web.post("/v1/keys", create),
        web.get("/v1/keys", listing),
        web.delete("/v1/keys/{key_id}", revoke),
    ]


def _error(exc: MtorError) -> web.Response:
    return _json({"error": exc.to_dict()}, _STATUS.get(exc.code, 400))
