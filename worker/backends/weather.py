"""The weather intent: current conditions and the next days, from Open-Meteo (no key).

The request names the place and the day ("what's the weather in Paris
tomorrow", "will it rain in Oslo"); a request that names no place ("check
the weather") uses ``params.location``, which ``mtor ask`` fills from
``mtor config set location ...``. The answer is text to say aloud; the
numbers ride in ``data``.

Params (declared in ``PARAMS``): place, location, day (0 today .. 15),
days (how many), units (metric or imperial). Options: geocoding_url, forecast_url (Open-Meteo's by
default; a self-hosted instance or a test server otherwise) and timeout_s.
"""

from __future__ import annotations

import time
from typing import Any

from broker.protocol import Usage, Work, WorkResult
from worker.backends.base import Backend, BadInput, Device, Emitter
from worker.backends.params import Param, Params
from worker.weather import (
    FORECAST_URL,
    GEOCODING_URL,
    MAX_DAYS,
    UNITS,
    OpenMeteo,
    WeatherRequest,
    as_data,
    days_needed,
    describe,
    parse_request,
)
from worker.weather.openmeteo import DEFAULT_TIMEOUT_S

MAX_PROMPT_CHARS = 500
MAX_PLACE_CHARS = 100


def _place(value: str) -> str | None:
    return value.strip() or None


class WeatherBackend(Backend):
    """Answer weather questions from Open-Meteo's geocoding and forecast APIs."""

    intent = "weather"
    PARAMS = Params(
        "weather",
        Param("place", (str,), "the place, when the words name none", max_chars=MAX_PLACE_CHARS,
              example='e.g. place="Oslo"', convert=_place),
        Param("location", (str,), "the asker's home place, for a request that names none",
              max_chars=MAX_PLACE_CHARS, convert=_place),
        Param("day", (int,), "the first day, in days from today (0 today)", low=0, high=MAX_DAYS - 1,
              integer_text=True),
        Param("days", (int,), "how many days", low=1, high=MAX_DAYS, integer_text=True),
        Param("units", (str,), "metric or imperial", default="metric", pattern="|".join(UNITS),
              pattern_means="metric or imperial", example="e.g. units=imperial"),
    )  # fmt: skip

    def __init__(self, model: str | None, device: Device, **options: Any) -> None:
        super().__init__(model, device, **options)
        self.client = OpenMeteo(
            str(options.get("geocoding_url") or GEOCODING_URL),
            str(options.get("forecast_url") or FORECAST_URL),
            float(options.get("timeout_s", DEFAULT_TIMEOUT_S)),
        )

    @property
    def model_name(self) -> str:
        return self.model or "open-meteo"

    def info(self) -> dict[str, Any]:
        return {"max_days": MAX_DAYS, "source": self.client.forecast_url}

    def _request(self, work: Work) -> tuple[WeatherRequest, str]:
        """The parsed request (params override the text) and the unit system."""
        params = self.params.parse(work.params)
        if len(work.prompt) > MAX_PROMPT_CHARS:
            raise BadInput("prompt_too_long", f"the request is {len(work.prompt)} characters", "ask in a sentence")
        request = parse_request(work.prompt)
        day, days = params["day"], params["days"]
        if day is not None:
            request = WeatherRequest(request.place, day, None, request.span, request.topic)
        if days is not None:
            request = WeatherRequest(request.place, request.day or 0, request.weekday, days, request.topic)
        if days_needed(request) > MAX_DAYS:
            raise BadInput("bad_params", "that is too far ahead", f"the forecast reaches {MAX_DAYS} days ahead")
        place = params["place"] or request.place or params["location"]
        if not place:
            raise BadInput(
                "not_configured",
                "the request names no place and no home location is set",
                "name one ('weather in Paris'), or set yours: mtor config set location Paris",
            )
        asked = WeatherRequest(place, request.day, request.weekday, request.span, request.topic, request.now)
        return asked, params["units"]

    def validate(self, work: Work) -> None:
        self._request(work)

    async def run(self, work: Work, out: Emitter) -> WorkResult:
        request, units = self._request(work)
        assert request.place is not None  # _request refuses a request without one
        started = time.perf_counter()
        await out.progress(0, 2, f"looking up {request.place}")
        place = await self.client.geocode(request.place)
        await out.progress(1, 2, f"fetching the forecast for {place.label}")
        forecast = await self.client.forecast(place, days_needed(request), units)
        text = describe(forecast, request)
        await out.token(text)
        return WorkResult(
            guid=work.guid,
            text=text,
            model=self.model_name,
            data=as_data(forecast, request, units),
            timings={"run_s": time.perf_counter() - started},
            usage=Usage(),
        )
