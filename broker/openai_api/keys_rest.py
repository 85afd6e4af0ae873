"""API key management: signed requests (broker/signed.py), like every account action.

``POST /v1/keys {name, limit, authorisation}`` creates one (the secret is in
this answer only; a paid realm needs ``authorisation``, the user's signed
``Spend`` covering the key's limit, and answers 402 ``bad_authorisation`` with
what to sign), ``GET /v1/keys`` lists yours, ``DELETE /v1/keys/{id}`` revokes one and
ends its running requests (their holds are released). Errors are
``{"error": {code, message, hint}}``. Shapes in docs/openai.md.
"""

from __future__ import annotations

from aiohttp import web

from broker.openai_api.keys import KeyRefused
from broker.parts import Parts
from broker.protocol import Authorisation, MtorError, loads, rest_json

DEFAULT_LIMIT = 10 * 10**18  # base units: what a key may spend in a paid realm unless its creator says
_STATUS = {"bad_signature": 401, "bad_authorisation": 402, "exit_pending": 402, "unknown_key": 404}


def _json(data: object, status: int = 200) -> web.Response:
    """Amounts in base units past 2**53 go out as decimal strings (broker.protocol.rest_json)."""
    return web.Response(body=rest_json(data), status=status, content_type="application/json")


def _limit(value: object, field: str = "limit") -> int | None:
    """``limit``: base units of $9000, as a JSON integer or a string of digits."""
    if value is None:
        return None
    if isinstance(value, str) and value.isdigit() and len(value) <= 78:
        return int(value)
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value < 10**78:
        return value
    raise KeyRefused("bad_params", f"`{field}` must be base units of $9000, >= 0",
                     '{"limit": "5000000000000000000"} for 5 $9000')


def _authorisation(value: object) -> Authorisation | None:
    """``authorisation``: ``{"total": base units (integer or digits), "signature": "0x…"}``."""
    if value is None:
        return None
    if isinstance(value, dict) and isinstance(value.get("signature"), str):
        total = _limit(value.get("total"), "authorisation.total")
        if total is not None and len(value["signature"]) <= 132:
            return Authorisation(total=total, signature=value["signature"])
    raise KeyRefused("bad_params", "`authorisation` must be {total, signature}: your signed Spend(payer, total)",
                     "`mtor keys create` signs it by itself; see docs/openai.md")


def routes(parts: Parts) -> list[web.RouteDef]:
    gw, verifier = parts.openai, parts.verifier
    keys = gw.keys

    async def signed(request: web.Request) -> str:
        return await verifier.verify(request)

    async def create(request: web.Request) -> web.Response:
        try:
            who = await signed(request)
            try:
                data = loads(await request.read() or b"{}")
            except ValueError:
                raise KeyRefused("invalid_json", "the body is not JSON", "send a JSON object") from None
            if not isinstance(data, dict):
                raise KeyRefused("invalid_message", "the body must be a JSON object", '{"name": "laptop"}')
            name = data.get("name", "")
            if not isinstance(name, str):
                raise KeyRefused("invalid_message", "`name` must be a string", '{"name": "laptop"}')
            limit = _limit(data.get("limit"))
            if limit is None and gw.paid:
                limit = DEFAULT_LIMIT
            key, secret = gw.create_key(who, name, limit, _authorisation(data.get("authorisation")))
        except MtorError as exc:
            return _error(exc)
        return _json({**key.to_dict(), "secret": secret, "paid": gw.paid, "realm": gw.realm})

    async def listing(request: web.Request) -> web.Response:
        try:
            who = await signed(request)
        except MtorError as exc:
            return _error(exc)
        return _json({"address": who, "paid": gw.paid, "keys": [k.to_dict() for k in keys.of(who)]})

    async def revoke(request: web.Request) -> web.Response:
        try:
            who = await signed(request)
            key, ended = await gw.revoke(who, request.match_info["key_id"])
        except MtorError as exc:
            return _error(exc)
        return _json({**key.to_dict(), "requests_ended": ended})

    return [
        web.post("/v1/keys", create),
        web.get("/v1/keys", listing),
        web.delete("/v1/keys/{key_id}", revoke),
    ]


def _error(exc: MtorError) -> web.Response:
    return _json({"error": exc.to_dict()}, _STATUS.get(exc.code, 400))
