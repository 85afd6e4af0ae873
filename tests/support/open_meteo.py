"""A server on 127.0.0.1 that answers like Open-Meteo's geocoding and forecast APIs.

It serves the responses stored in tests/data/open-meteo/ (the documented
shapes, errors included) and checks requests the way the real APIs do: an
unknown variable or a count out of range is HTTP 400 with
``{"error": true, "reason": ...}``. ``forecast_days`` trims the daily columns,
``temperature_unit=fahrenheit`` picks the imperial file. ``stall_s`` makes
every answer wait (a dead upstream); ``failing`` = (file, status) answers
every request with that stored error.
"""

from __future__ import annotations

import asyncio
import json
from pathlib import Path
from typing import Any

from aiohttp import web

from tests.support.realm import free_port

DATA = Path(__file__).resolve().parents[1] / "data" / "open-meteo"
PLACES = {"paris": "geocoding-paris.json", "oslo": "geocoding-oslo.json"}
CURRENT = {"temperature_2m", "apparent_temperature", "relative_humidity_2m", "precipitation", "weather_code",
           "wind_speed_10m", "is_day", "rain", "showers", "snowfall", "cloud_cover"}  # fmt: skip
DAILY = {"weather_code", "temperature_2m_max", "temperature_2m_min", "precipitation_sum",
         "precipitation_probability_max", "wind_speed_10m_max", "sunrise", "sunset"}  # fmt: skip


def stored(name: str) -> dict[str, Any]:
    return json.loads((DATA / name).read_text(encoding="utf-8"))


class OpenMeteoServer:
    def __init__(self) -> None:
        self.port = free_port()
        self.requests: list[tuple[str, dict[str, str]]] = []
        self.stall_s = 0.0
        self.failing: tuple[str, int] | None = None
        self._runner: web.AppRunner | None = None

    @property
    def geocoding_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/search"

    @property
    def forecast_url(self) -> str:
        return f"http://127.0.0.1:{self.port}/v1/forecast"

    async def start(self) -> None:
        app = web.Application()
        app.router.add_get("/v1/search", self.search)
        app.router.add_get("/v1/forecast", self.forecast)
        self._runner = web.AppRunner(app)
        await self._runner.setup()
        await web.TCPSite(self._runner, "127.0.0.1", self.port).start()

    async def stop(self) -> None:
        if self._runner is not None:
            await self._runner.cleanup()

    async def _common(self, request: web.Request) -> web.Response | None:
        self.requests.append((request.path, dict(request.query)))
        if self.stall_s:
            await asyncio.sleep(self.stall_s)
        if self.failing is not None:
            name, status = self.failing
            return web.json_response(stored(name), status=status)
        return None

    async def search(self, request: web.Request) -> web.Response:
        early = await self._common(request)
        if early is not None:
            return early
        count = int(request.query.get("count", "10"))
        if not 1 <= count <= 100:
            return web.json_response(stored("geocoding-error-400.json"), status=400)
        name = request.query.get("name", "").strip().lower()
        payload = stored(PLACES.get(name, "geocoding-no-results.json"))
        if "results" in payload:
            payload["results"] = payload["results"][:count]
        return web.json_response(payload)

    async def forecast(self, request: web.Request) -> web.Response:
        early = await self._common(request)
        if early is not None:
            return early
        query = request.query
        asked = set(query.get("current", "").split(",")) | set(query.get("daily", "").split(","))
        if not asked - {""} <= CURRENT | DAILY:
            return web.json_response(stored("forecast-error-400.json"), status=400)
        city = "oslo" if float(query["latitude"]) > 55 else "paris"
        imperial = query.get("temperature_unit") == "fahrenheit"
        payload = stored(f"forecast-{city}{'-imperial' if imperial else ''}.json")
        days = int(query.get("forecast_days", "7"))
        payload["daily"] = {key: column[:days] for key, column in payload["daily"].items()}
        return web.json_response(payload)
