"""Weather from Open-Meteo: the request parsed, the APIs called, the answer said."""

from __future__ import annotations

from .openmeteo import FORECAST_URL, GEOCODING_URL, MAX_DAYS, UNITS, Forecast, OpenMeteo, Place
from .request import WeatherRequest, parse_request
from .spoken import as_data, days_needed, describe

__all__ = [
    "FORECAST_URL",
    "GEOCODING_URL",
    "MAX_DAYS",
    "UNITS",
    "Forecast",
    "OpenMeteo",
    "Place",
    "WeatherRequest",
    "as_data",
    "days_needed",
    "describe",
    "parse_request",
]
