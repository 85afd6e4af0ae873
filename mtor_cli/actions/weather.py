"""Weather, on the person's side: their home place and units ride along with the request."""

from __future__ import annotations

from typing import Any

# config key -> the weather worker's parameter
SETTINGS = {"location": "location", "units": "units"}


def prepare(params: dict[str, Any], config: dict[str, Any]) -> dict[str, Any]:
    """``location`` and ``units`` from the config, unless the request sets them."""
    extra = {param: str(config[key]) for key, param in SETTINGS.items() if config.get(key)}
    return {**extra, **params}
