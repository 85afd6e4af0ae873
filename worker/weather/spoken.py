"""A forecast as a person would say it aloud, and as numbers for ``--json``.

Numbers are rounded the way people say them ("minus 3 degrees", "about 4
millimetres"); the data keeps the API's values and units.
"""

from __future__ import annotations

from datetime import date
from typing import Any

from .openmeteo import Forecast
from .request import WEEKDAYS, WeatherRequest

# WMO weather interpretation codes, as Open-Meteo documents them.
CONDITIONS = {
    0: "clear sky", 1: "mainly clear", 2: "partly cloudy", 3: "overcast",
    45: "fog", 48: "freezing fog",
    51: "light drizzle", 53: "drizzle", 55: "heavy drizzle", 56: "light freezing drizzle", 57: "freezing drizzle",
    61: "light rain", 63: "rain", 65: "heavy rain", 66: "light freezing rain", 67: "freezing rain",
    71: "light snow", 73: "snow", 75: "heavy snow", 77: "snow grains",
    80: "light rain showers", 81: "rain showers", 82: "violent rain showers",
    85: "light snow showers", 86: "heavy snow showers",
    95: "thunderstorms", 96: "thunderstorms with light hail", 99: "thunderstorms with heavy hail",
}  # fmt: skip
RAIN_CODES = frozenset({51, 53, 55, 56, 57, 61, 63, 65, 66, 67, 80, 81, 82, 95, 96, 99})
SNOW_CODES = frozenset({71, 73, 75, 77, 85, 86})
_SPOKEN_UNITS = {
    "km/h": "kilometres an hour", "mp/h": "miles an hour", "mph": "miles an hour", "m/s": "metres a second",
    "kn": "knots", "mm": "millimetres", "inch": "inches", "cm": "centimetres",
}  # fmt: skip


def conditions(code: Any) -> str:
    return CONDITIONS.get(int(code), "unsettled weather") if isinstance(code, (int, float)) else "unknown conditions"


def number(value: Any) -> str:
    """A value as said aloud: rounded, "minus" for negatives."""
    rounded = round(float(value))
    return f"minus {-rounded}" if rounded < 0 else str(rounded)


def a(figure: str) -> str:
    """The article before a spoken number: "an 80 percent chance", "a 10 percent chance"."""
    return "an" if figure.startswith("8") or figure in ("11", "18") else "a"


def capital(text: str) -> str:
    return text[:1].upper() + text[1:]


def amount(value: Any, unit: str) -> str:
    spoken = _SPOKEN_UNITS.get(unit, unit)
    figure = float(value)
    shown = f"{figure:.1f}".rstrip("0").rstrip(".") if figure < 10 else str(round(figure))
    if shown == "1":
        spoken = spoken.removesuffix("s").replace("inche", "inch")
    return f"{shown} {spoken}"


def day_index(forecast: Forecast, request: WeatherRequest) -> int:
    """Which of the forecast's days the request means (0: today there)."""
    if request.weekday is None:
        return request.day or 0
    for index, day in enumerate(forecast.daily):
        if date.fromisoformat(str(day["time"])).weekday() == request.weekday:
            return index
    return 0


def days_needed(request: WeatherRequest) -> int:
    """How many forecast days to fetch to answer ``request``."""
    first = 6 if request.weekday is not None else (request.day or 0)
    return max(3, first + request.span)


def _day_name(forecast: Forecast, index: int) -> str:
    if index == 0:
        return "today"
    if index == 1:
        return "tomorrow"
    return "on " + WEEKDAYS[date.fromisoformat(str(forecast.daily[index]["time"])).weekday()].capitalize()


def _wind(forecast: Forecast, value: Any) -> str:
    return amount(value, forecast.units.get("wind_speed_10m", "km/h"))


def _day_summary(forecast: Forecast, index: int) -> str:
    day = forecast.daily[index]
    parts = [
        f"{conditions(day['weather_code'])}, from {number(day['temperature_2m_min'])} "
        f"to {number(day['temperature_2m_max'])} degrees"
    ]
    chance = day.get("precipitation_probability_max")
    if chance is not None and chance >= 20:
        what = "snow" if day["weather_code"] in SNOW_CODES else "rain"
        parts.append(f"{a(number(chance))} {number(chance)} percent chance of {what}")
    return ", ".join(parts)


def _now(forecast: Forecast) -> str:
    now = forecast.current
    text = (
        f"Right now in {forecast.place.label}: {conditions(now['weather_code'])}, "
        f"{number(now['temperature_2m'])} degrees"
    )
    feels = now.get("apparent_temperature")
    if feels is not None and round(feels) != round(now["temperature_2m"]):
        text += f", feeling like {number(feels)}"
    if now.get("wind_speed_10m") is not None:
        text += f", with wind at {_wind(forecast, now['wind_speed_10m'])}"
    return text + "."


def _rain(forecast: Forecast, index: int) -> str:
    day = forecast.daily[index]
    where, when = forecast.place.label, _day_name(forecast, index)
    if index == 0 and forecast.current.get("weather_code") in RAIN_CODES:
        return f"Yes, it is raining in {where} right now: {conditions(forecast.current['weather_code'])}."
    chance = day.get("precipitation_probability_max")
    total = day.get("precipitation_sum") or 0.0
    unit = forecast.units.get("precipitation_sum", "mm")
    expected = f", about {amount(total, unit)}" if total >= 0.1 else ""
    if chance is None:
        chance = 80 if total >= 1 else 0
    if chance >= 60 or day.get("weather_code") in RAIN_CODES:
        return f"Yes, rain is likely in {where} {when}: {a(number(chance))} {number(chance)} percent chance{expected}."
    if chance >= 30:
        return f"Possibly: {a(number(chance))} {number(chance)} percent chance of rain in {where} {when}{expected}."
    return f"Probably not: only {a(number(chance))} {number(chance)} percent chance of rain in {where} {when}."


def _snow(forecast: Forecast, index: int) -> str:
    day = forecast.daily[index]
    where, when = forecast.place.label, _day_name(forecast, index)
    if index == 0 and forecast.current.get("weather_code") in SNOW_CODES:
        return f"Yes, it is snowing in {where} right now: {conditions(forecast.current['weather_code'])}."
    if day.get("weather_code") in SNOW_CODES:
        return f"Yes, snow is expected in {where} {when}: {_day_summary(forecast, index)}."
    return f"No snow is expected in {where} {when}: {_day_summary(forecast, index)}."


def _windy(forecast: Forecast, index: int) -> str:
    day = forecast.daily[index]
    where, when = forecast.place.label, _day_name(forecast, index)
    if index == 0 and forecast.current.get("wind_speed_10m") is not None:
        text = f"The wind in {where} is {_wind(forecast, forecast.current['wind_speed_10m'])} right now. "
        return text + f"Today it reaches up to {_wind(forecast, day['wind_speed_10m_max'])}."
    return f"The wind in {where} {when} reaches up to {_wind(forecast, day['wind_speed_10m_max'])}."


def _temperature(forecast: Forecast, index: int) -> str:
    day = forecast.daily[index]
    span = f"from {number(day['temperature_2m_min'])} to {number(day['temperature_2m_max'])} degrees"
    if index == 0:
        return f"{_now(forecast)} Today: {span}."
    return f"{capital(_day_name(forecast, index))} in {forecast.place.label}: {span}."


_TOPIC_ANSWERS = {"rain": _rain, "snow": _snow, "wind": _windy, "temperature": _temperature}


def describe(forecast: Forecast, request: WeatherRequest) -> str:
    """What to say: the answer to the question asked, in a sentence or three."""
    first = min(day_index(forecast, request), len(forecast.daily) - 1)
    if request.now:
        return _now(forecast)
    if request.span > 1:
        last = min(first + request.span, len(forecast.daily))
        lines = [f"{capital(_day_name(forecast, i))}: {_day_summary(forecast, i)}." for i in range(first, last)]
        return f"The weather in {forecast.place.label}. " + " ".join(lines)
    answer = _TOPIC_ANSWERS.get(request.topic)
    if answer is not None:
        return answer(forecast, first)
    if first == 0:
        return f"{_now(forecast)} Today: {_day_summary(forecast, 0)}."
    return f"{capital(_day_name(forecast, first))} in {forecast.place.label}: {_day_summary(forecast, first)}."


def as_data(forecast: Forecast, request: WeatherRequest, units: str) -> dict[str, Any]:
    """The numbers behind the answer, for ``--json``: the place, now, and the days asked about."""
    first = min(day_index(forecast, request), len(forecast.daily) - 1)
    last = min(first + request.span, len(forecast.daily))
    now = forecast.current
    return {
        "place": forecast.place.to_dict(),
        "units": {"system": units, **forecast.units},
        "asked": {"topic": request.topic, "first_day": first, "days": last - first},
        "current": {
            "time": now.get("time"),
            "temperature": now.get("temperature_2m"),
            "apparent_temperature": now.get("apparent_temperature"),
            "humidity": now.get("relative_humidity_2m"),
            "precipitation": now.get("precipitation"),
            "wind_speed": now.get("wind_speed_10m"),
            "weather_code": now.get("weather_code"),
            "conditions": conditions(now.get("weather_code")),
        },
        "days": [
            {
                "date": day["time"],
                "temperature_min": day["temperature_2m_min"],
                "temperature_max": day["temperature_2m_max"],
                "precipitation_sum": day["precipitation_sum"],
                "precipitation_probability": day["precipitation_probability_max"],
                "wind_speed_max": day["wind_speed_10m_max"],
                "weather_code": day["weather_code"],
                "conditions": conditions(day["weather_code"]),
            }
            for day in forecast.daily[first:last]
        ],
    }
