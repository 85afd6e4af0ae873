"""Plain HTTP: /healthz, /v1/workers, /v1/stats, /v1/brokers, /metrics. Shapes in docs/protocol.md."""

from __future__ import annotations

from aiohttp import web

from broker.parts import Parts
from broker.protocol import rest_json


def _json(data: object) -> web.Response:
    return web.Response(body=rest_json(data), content_type="application/json")


def routes(parts: Parts) -> list[web.RouteDef]:
    views = parts.views

    async def healthz(_: web.Request) -> web.Response:
        return _json(views.health())

    async def workers(_: web.Request) -> web.Response:
        return _json(views.workers())

    async def stats(_: web.Request) -> web.Response:
        return _json(views.stats())

    async def brokers(_: web.Request) -> web.Response:
        return _json(views.brokers())

    async def metrics(_: web.Request) -> web.Response:
        body, content_type = parts.metrics.render(views.live())
        return web.Response(body=body, headers={"Content-Type": content_type})

    return [
        web.get("/healthz", healthz),
        web.get("/v1/workers", workers),
        web.get("/v1/stats", stats),
        web.get("/v1/brokers", brokers),
        web.get("/metrics", metrics),
    ]
