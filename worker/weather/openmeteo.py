"""Open-Meteo's geocoding and forecast APIs (free, no key), over aiohttp.

Both base URLs are settings, so a worker can point at a self-hosted
Open-Meteo or, in tests, at a server on 127.0.0.1 that answers in the
documented shapes. Every failure of the network or of the service becomes a
:class:`~worker.backends.base.JobError` with the code
``upstream_unavailable`` within ``timeout_s``: a request never hangs.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Any
from urllib.parse import urlsplit

from worker.backends.base import JobError

GEOCODING_URL = "https://geocoding-api.open-meteo.com/v1/search"
FORECAST_URL = "https://api.open-meteo.com/v1/forecast"
DEFAULT_TIMEOUT_S = 10.0
MAX_DAYS = 16  # the forecast API's own limit

CURRENT = ("temperature_2m", "apparent_temperature", "relative_humidity_2m", "precipitation", "weather_code",
           "wind_speed_10m")  # fmt: skip
DAILY = ("weather_code", "temperature_2m_max", "temperature_2m_min", "precipitation_sum",
         "precipitation_probability_max", "wind_speed_10m_max")  # fmt: skip
UNITS = {
    "metric": {},
    "imperial": {"temperature_unit": "fahrenheit", "wind_speed_unit": "mph", "precipitation_unit": "inch"},
}


@dataclass(frozen=True)
class Place:
    name: str
    latitude: float
    longitude: float
    country: str = ""
    admin1: str = ""  # state, region
    timezone: str = ""

    @property
    def label(self) -> str:
        """How to say it: "Paris, France"; "Paris, Texas, United States" when the region tells them apart."""
        parts = [self.name]
        if self.admin1 and self.admin1 != self.name and self.country in ("United States", "Canada", "Australia"):
            parts.append(self.admin1)
        if self.country:
            parts.append(self.country)
        return ", ".join(parts)

    def to_dict(self) -> dict[str, Any]:
        return {
            "name": self.name,
            "country": self.country,
            "admin1": self.admin1,
            "latitude": self.latitude,
            "longitude": self.longitude,
            "timezone": self.timezone,
        }


@dataclass(frozen=True)
class Forecast:
    place: Place
    units: dict[str, str]  # the API's own unit strings, e.g. {"temperature_2m": "°C"}
    current: dict[str, Any]  # time, temperature_2m, ... as the API names them
    daily: list[dict[str, Any]] = field(default_factory=list)  # one dict a day: time, weather_code, ...


class OpenMeteo:
    """One client per worker; each call opens its own session (the job's loop)."""

    def __init__(
        self, geocoding_url: str = GEOCODING_URL, forecast_url: str = FORECAST_URL, timeout_s: float = DEFAULT_TIMEOUT_S
    ) -> None:
        for name, url in (("geocoding_url", geocoding_url), ("forecast_url", forecast_url)):
            if not url.startswith(("http://", "https://")):
                raise ValueError(f"{name} must be an http(s) URL, got {url!r}")
        self.geocoding_url = geocoding_url
        self.forecast_url = forecast_url
        self.timeout_s = timeout_s

    async def geocode(self, place: str) -> Place:
        """The best match for ``place``; "Paris, Texas" narrows by region or country.

        JobError ``not_found`` when nothing matches.
        """
        name, _, qualifier = (part.strip() for part in place.partition(","))
        payload = await self._get(
            self.geocoding_url, {"name": name, "count": 10 if qualifier else 1, "language": "en", "format": "json"}
        )
        results = [r for r in payload.get("results") or [] if isinstance(r, dict)]
        if qualifier:
            wanted = qualifier.lower()
            results = [
                r
                for r in results
                if wanted in {str(r.get(k, "")).lower() for k in ("country", "country_code", "admin1", "admin2")}
            ]
        if not results:
            raise JobError(
                "not_found",
                f"no place called {place!r} was found",
                "check the spelling, or add the region or country: 'weather in Paris, Texas'",
            )
        best = results[0]
        try:
            return Place(
                name=str(best["name"]),
                latitude=float(best["latitude"]),
                longitude=float(best["longitude"]),
                country=str(best.get("country") or ""),
                admin1=str(best.get("admin1") or ""),
                timezone=str(best.get("timezone") or ""),
            )
        except (KeyError, TypeError, ValueError):
            raise self._unavailable(self.geocoding_url, "answered without coordinates") from None

    async def forecast(self, place: Place, days: int, units: str = "metric") -> Forecast:
        """Current conditions and ``days`` daily forecasts (today first, in the place's time zone)."""
        query: dict[str, Any] = {
            "latitude": place.latitude,
            "longitude": place.longitude,
            "current": ",".join(CURRENT),
            "daily": ",".join(DAILY),
            "timezone": "auto",
            "forecast_days": days,
            **UNITS[units],
        }
        payload = await self._get(self.forecast_url, query)
        try:
            current = dict(payload["current"])
            columns = payload["daily"]
            daily = [{key: columns[key][n] for key in ("time", *DAILY)} for n in range(len(columns["time"]))]
            units_of = {**payload.get("daily_units", {}), **payload.get("current_units", {})}
        except (KeyError, TypeError, IndexError):
            raise self._unavailable(self.forecast_url, "answered in an unexpected shape") from None
        return Forecast(place, {k: str(v) for k, v in units_of.items()}, current, daily)

    async def _get(self, url: str, query: dict[str, Any]) -> dict[str, Any]:
        import aiohttp

        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        try:
            async with aiohttp.ClientSession(timeout=timeout) as session, session.get(url, params=query) as response:
                try:
                    payload = await response.json(content_type=None)
                except ValueError:
                    payload = None
                status = response.status
        except TimeoutError:
            raise self._unavailable(url, f"did not answer within {self.timeout_s:g} s") from None
        except (aiohttp.ClientError, OSError) as exc:
            raise self._unavailable(url, f"cannot be reached ({exc})") from None
        if not isinstance(payload, dict):
            raise self._unavailable(url, f"answered HTTP {status} without JSON")
        if status != 200 or payload.get("error"):
            reason = payload.get("reason") or f"HTTP {status}"
            raise self._unavailable(url, f"refused the request: {reason}")
        return payload

    @staticmethod
    def _unavailable(url: str, what: str) -> JobError:
        host = urlsplit(url).netloc
        return JobError(
            "upstream_unavailable",
            f"the weather service {host} {what}",
            "try again later; if it persists, check the network of the machine running the weather worker "
            "(or its geocoding_url / forecast_url settings)",
        )
