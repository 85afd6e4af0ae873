"""HTTP for accounts and sysops: history, realm totals, profiles, sysop actions.

Everything that reads or changes one address's data is a signed request
(broker/signed.py); errors are ``{"error": {code, message, hint}}`` with a
stable code. Shapes are in docs/sysop.md.
"""

from __future__ import annotations

from typing import Any

from aiohttp import web

from broker.accounts import AccountError
from broker.parts import Parts
from broker.protocol import MtorError, loads, rest_json

_STATUS = {"bad_signature": 401, "forbidden": 403, "unknown_guid": 404, "nickname_taken": 409}


def _json(data: object, status: int = 200) -> web.Response:
    return web.Response(body=rest_json(data), status=status, content_type="application/json")


def _error(exc: MtorError) -> web.Response:
    return _json({"error": exc.to_dict()}, _STATUS.get(exc.code, 400))


def routes(parts: Parts) -> list[web.RouteDef]:
    """The accounts and sysop routes, working on ``parts``."""
    store, history, verifier, roles, sysop = parts.accounts, parts.history, parts.verifier, parts.roles, parts.sysop

    def signed(handler: Any) -> Any:
        async def wrapped(request: web.Request) -> web.Response:
            try:
                who = await verifier.verify(request)
                return await handler(request, who)
            except MtorError as exc:
                return _error(exc)

        return wrapped

    async def body(request: web.Request) -> dict[str, Any]:
        try:
            data = loads(await request.read() or b"{}")
        except ValueError:
            raise AccountError("invalid_json", "the body is not JSON", "send a JSON object") from None
        if not isinstance(data, dict):
            raise AccountError("invalid_message", "the body must be a JSON object", 'e.g. {"address": "0x..."}')
        return data

    def text(data: dict[str, Any], key: str, required: bool = True) -> str:
        value = data.get(key, "")
        if not isinstance(value, str) or (required and not value):
            raise AccountError("invalid_message", f"`{key}` must be a non-empty string", f'send {{"{key}": "..."}}')
        return value

    def limit_of(request: web.Request, default: int) -> int:
        try:
            return max(1, int(request.query.get("limit", default)))
        except ValueError:
            raise AccountError("bad_params", "limit must be an integer", "e.g. ?limit=20") from None

    @signed
    async def my_history(request: web.Request, who: str) -> web.Response:
        return _json({"address": who, "history": await history.of_user(who, limit_of(request, 20))})

    @signed
    async def show(request: web.Request, who: str) -> web.Response:
        guid = request.match_info["guid"]
        found = await history.show(guid)
        if found is None or (found[0].lower() != who.lower() and not roles.is_sysop(who)):
            raise AccountError("unknown_guid", f"you have no intent {guid!r}", "list yours with `mtor history`")
        return _json(found[1])

    async def totals(_: web.Request) -> web.Response:
        data = await history.totals()
        now = parts.views.totals_now()
        data["users"]["connected"] = now["connected_users"]
        data["workers"] = now["workers"]
        data["tokens"]["streamed"] = now["tokens_streamed"]
        return _json(data)

    @signed
    async def profile(_: web.Request, who: str) -> web.Response:
        ban = store.banned(who)
        return _json(
            {
                "address": who,
                "nickname": store.nickname(who),
                "sysop": roles.is_sysop(who),
                "operator": roles.is_operator(who),
                "banned": None if ban is None else ban.reason,
            }
        )

    @signed
    async def set_nickname(request: web.Request, who: str) -> web.Response:
        nickname = text(await body(request), "nickname")
        await store.set_nickname(who, nickname)
        return _json({"address": who, "nickname": nickname})

    @signed
    async def sysop_action(request: web.Request, who: str) -> web.Response:
        action = request.match_info["action"]
        data = await body(request)
        if action == "grant":
            return _json(await sysop.grant(who, text(data, "address")))
        if action == "revoke":
            return _json(await sysop.revoke(who, text(data, "address")))
        if action == "ban":
            return _json(await sysop.ban(who, text(data, "address"), text(data, "reason", required=False)))
        if action == "unban":
            return _json(await sysop.unban(who, text(data, "address")))
        if action == "terminate":
            return _json(await sysop.terminate(who, text(data, "guid"), text(data, "reason", required=False)))
        if action == "broadcast":
            return _json(await sysop.broadcast(who, text(data, "message")))
        if action in ("pause", "resume", "remove"):
            return _json(await sysop.worker(who, action, text(data, "id"), text(data, "reason", required=False)))
        raise AccountError(
            "unknown_type", f"unknown sysop action {action!r}",
            "grant, revoke, ban, unban, terminate, broadcast, pause, resume, remove",
        )

    @signed
    async def sysop_workers(_: web.Request, who: str) -> web.Response:
        return _json({"workers": await sysop.workers(who)})

    @signed
    async def sysop_audit(request: web.Request, who: str) -> web.Response:
        return _json({"audit": await sysop.audit_log(who, limit_of(request, 50))})

    return [
        web.get("/v1/history", my_history),
        web.get("/v1/history/{guid}", show),
        web.get("/v1/totals", totals),
        web.get("/v1/profile", profile),
        web.put("/v1/profile/nickname", set_nickname),
        web.get("/v1/sysop/workers", sysop_workers),
        web.get("/v1/sysop/audit", sysop_audit),
        web.post("/v1/sysop/{action}", sysop_action),
    ]
