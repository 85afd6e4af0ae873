"""Plain HTTP: /healthz, /v1/workers, /v1/stats, /metrics. Shapes in docs/protocol.md."""

from __future__ import annotations

from typing import TYPE_CHECKING

import orjson
from aiohttp import web

if TYPE_CHECKING:
    from broker.server import BrokerServer


def _json(data: object) -> web.Response:
    return web.Response(body=orjson.dumps(data), content_type="application/json")


def routes(broker: BrokerServer) -> list[web.RouteDef]:
    async def healthz(_: web.Request) -> web.Response:
        return _json(broker.health())

    async def workers(_: web.Request) -> web.Response:
        return _json(broker.workers_snapshot())

    async def stats(_: web.Request) -> web.Response:
        return _json(broker.stats())

    async def metrics(_: web.Request) -> web.Response:
        body, content_type = broker.metrics.render()
        return web.Response(body=body, headers={"Content-Type": content_type})

    return [
        web.get("/healthz", healthz),
        web.get("/v1/workers", workers),
        web.get("/v1/stats", stats),
        web.get("/metrics", metrics),
    ]
