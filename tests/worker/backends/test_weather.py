"""The weather intent against a server on 127.0.0.1 that answers like Open-Meteo.

The server (tests/support/open_meteo.py) serves the APIs' documented response
shapes stored in tests/data/open-meteo, errors included; the backend runs in
a real worker behind a real broker, and `mtor ask` is run as a person would.
"""

from __future__ import annotations

import json
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
from typer.testing import CliRunner

from broker.protocol import Work
from mtor_cli.app import build_app
from tests.support.open_meteo import OpenMeteoServer
from tests.support.realm import ThreadRealm, free_port
from worker.backends.base import Device, Emitter, JobError
from worker.backends.weather import WeatherBackend
from worker.weather import parse_request


@pytest.fixture(scope="module")
def weather_realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[ThreadRealm, OpenMeteoServer]]:
    with ThreadRealm(tmp_path_factory.mktemp("realm") / "journal.db") as realm:
        server = OpenMeteoServer()
        realm.call(server.start())
        backend = WeatherBackend(
            None, Device(), geocoding_url=server.geocoding_url, forecast_url=server.forecast_url, timeout_s=1.0
        )
        realm.add_worker([backend], slots=2)
        realm.wait_workers(1, "weather")
        yield realm, server
        realm.call(server.stop())


@pytest.fixture
def server(weather_realm: tuple[ThreadRealm, OpenMeteoServer]) -> Iterator[OpenMeteoServer]:
    _realm, srv = weather_realm
    srv.requests.clear()
    yield srv
    srv.stall_s, srv.failing = 0.0, None


def mtor(*args: str) -> Any:
    result = CliRunner().invoke(build_app(), list(args))
    if result.exception and not isinstance(result.exception, SystemExit):
        raise result.exception
    return result


def ask_weather(realm: ThreadRealm, text: str, *extra: str) -> Any:
    return mtor("ask", "--broker", realm.url, "--intent", "weather", *extra, text)


def test_tomorrow_in_paris_is_said_aloud_and_given_as_numbers(weather_realm: Any, server: OpenMeteoServer) -> None:
    realm, _ = weather_realm
    said = ask_weather(realm, "what's the weather in Paris tomorrow")
    assert said.exit_code == 0, said.stderr
    assert said.stdout.strip() == (
        "Tomorrow in Paris, France: light rain, from 8 to 13 degrees, a 75 percent chance of rain."
    )
    numbers = ask_weather(realm, "what's the weather in Paris tomorrow", "--json")
    assert numbers.exit_code == 0, numbers.stderr
    data = json.loads(numbers.stdout)["data"]
    assert data["place"]["name"] == "Paris" and data["place"]["country"] == "France"
    assert data["units"]["temperature_2m"] == "°C" and data["units"]["system"] == "metric"
    assert [d["date"] for d in data["days"]] == ["2025-03-15"]
    assert data["days"][0]["temperature_max"] == 12.8 and data["days"][0]["precipitation_probability"] == 75
    assert data["current"]["temperature"] == 12.4
    # What went to the APIs: the documented parameters, three days for "tomorrow".
    (_, geo), (_, forecast) = server.requests[-2:]
    assert geo == {"name": "Paris", "count": "1", "language": "en", "format": "json"}
    assert forecast["forecast_days"] == "3" and forecast["timezone"] == "auto"
    assert "precipitation_probability_max" in forecast["daily"].split(",")


def test_will_it_rain_answers_the_question(weather_realm: Any, server: OpenMeteoServer) -> None:
    realm, _ = weather_realm
    now = ask_weather(realm, "will it rain in Oslo")
    assert now.exit_code == 0, now.stderr
    assert now.stdout.strip() == "Yes, it is raining in Oslo, Norway right now: rain."
    friday = ask_weather(realm, "will it rain in Paris on Friday")  # the first day of the stored forecast
    assert friday.stdout.strip() == "Probably not: only a 10 percent chance of rain in Paris, France today."
    tuesday = ask_weather(realm, "do I need an umbrella in Paris on Tuesday")
    assert tuesday.stdout.strip() == (
        "Yes, rain is likely in Paris, France on Tuesday: a 68 percent chance, about 5.1 millimetres."
    )


def test_a_region_picks_the_right_paris(weather_realm: Any, server: OpenMeteoServer) -> None:
    realm, _ = weather_realm
    done = ask_weather(realm, "how cold is it in Paris, Texas", "--json")
    assert done.exit_code == 0, done.stderr
    place = json.loads(done.stdout)["data"]["place"]
    assert (place["admin1"], place["latitude"]) == ("Texas", 33.66094)
    assert "Paris, Texas, United States" in json.loads(done.stdout)["text"]


def test_check_the_weather_uses_the_configured_location_and_units(weather_realm: Any, server: OpenMeteoServer) -> None:
    realm, _ = weather_realm
    unset = ask_weather(realm, "Computer, check the weather")
    assert unset.exit_code == 1
    assert unset.stderr.strip().splitlines()[-1] == (
        "mtor: the request names no place and no home location is set [not_configured]"
        " - hint: name one ('weather in Paris'), or set yours: mtor config set location Paris"
    )
    assert mtor("config", "set", "location", "Oslo").exit_code == 0
    assert mtor("config", "get", "location").stdout == "Oslo\n"
    home = ask_weather(realm, "Computer, check the weather")
    assert home.exit_code == 0, home.stderr
    assert home.stdout.startswith("Right now in Oslo, Norway: rain, 3 degrees, feeling like minus 1")
    routed = mtor("ask", "--broker", realm.url, "Computer, check the weather")  # the realm chooses weather
    assert routed.exit_code == 0, routed.stderr
    assert routed.stdout == home.stdout
    assert mtor("config", "set", "units", "imperial").exit_code == 0
    paris = ask_weather(realm, "weather in Paris", "--json")  # a named place beats the home location
    data = json.loads(paris.stdout)["data"]
    assert data["place"]["name"] == "Paris" and data["units"]["temperature_2m"] == "°F"
    assert server.requests[-1][1]["temperature_unit"] == "fahrenheit"
    assert "miles an hour" in json.loads(paris.stdout)["text"]


def test_a_place_that_does_not_exist_is_not_found(weather_realm: Any, server: OpenMeteoServer) -> None:
    realm, _ = weather_realm
    done = ask_weather(realm, "what's the weather in Atlantis")
    assert done.exit_code == 1
    assert done.stderr.strip().splitlines()[-1].startswith("mtor: no place called 'Atlantis' was found [not_found]")


def test_the_apis_error_responses_are_upstream_unavailable(weather_realm: Any, server: OpenMeteoServer) -> None:
    realm, _ = weather_realm
    server.failing = ("forecast-error-429.json", 429)
    limited = ask_weather(realm, "weather in Oslo")
    assert limited.exit_code == 1
    line = limited.stderr.strip().splitlines()[-1]
    assert line.startswith(
        "mtor: the weather service 127.0.0.1:"
    ) and "refused the request: Minutely API request limit exceeded" in line
    assert "[upstream_unavailable] - hint: try again later" in line
    server.failing = ("forecast-error-400.json", 400)
    bad = ask_weather(realm, "weather in Oslo")
    assert "Cannot initialize WeatherVariable" in bad.stderr and "[upstream_unavailable]" in bad.stderr


def test_a_stalled_api_fails_in_time_instead_of_hanging(weather_realm: Any, server: OpenMeteoServer) -> None:
    realm, _ = weather_realm
    server.stall_s = 5.0
    started = time.monotonic()
    done = ask_weather(realm, "weather in Oslo")
    waited = time.monotonic() - started
    assert done.exit_code == 1
    assert "did not answer within 1 s [upstream_unavailable]" in done.stderr
    assert waited < server.stall_s  # the worker gave up; it did not wait the upstream out
    server.stall_s = 0.0
    assert ask_weather(realm, "weather in Oslo").exit_code == 0  # and it still serves


async def test_an_unreachable_api_is_upstream_unavailable() -> None:
    dead = f"http://127.0.0.1:{free_port()}/v1"
    backend = WeatherBackend(None, Device(), geocoding_url=dead + "/search", forecast_url=dead + "/forecast")
    sent: list[Any] = []
    with pytest.raises(JobError) as caught:
        await backend.run(Work(guid="g1", intent="weather", prompt="weather in Oslo"), Emitter("g1", sent.append))
    assert caught.value.code == "upstream_unavailable"
    assert "cannot be reached" in caught.value.message and caught.value.hint


def test_bad_params_are_refused_before_any_request(weather_realm: Any, server: OpenMeteoServer) -> None:
    realm, _ = weather_realm
    done = ask_weather(realm, "weather in Oslo", "--param", "days=40")
    assert done.exit_code == 1 and "[bad_params]" in done.stderr
    assert server.requests == []


@pytest.mark.parametrize(
    ("text", "place", "day", "weekday", "span", "topic"),
    [
        ("what's the weather in Paris tomorrow", "Paris", 1, None, 1, "general"),
        ("will it rain in Oslo", "Oslo", None, None, 1, "rain"),
        ("Computer, check the weather", None, None, None, 1, "general"),
        ("how cold is it outside", None, None, None, 1, "temperature"),
        ("Paris weather tomorrow", "Paris", 1, None, 1, "general"),
        ("weather in New York this weekend", "New York", None, 5, 2, "general"),
        ("what's the forecast for the next three days in Rome", "Rome", 0, None, 3, "general"),
        ("do I need an umbrella in London on Friday", "London", None, 4, 1, "rain"),
        ("is it going to snow in Denver tonight", "Denver", 0, None, 1, "snow"),
        ("will it be warm in St. Petersburg, Florida tomorrow afternoon?", "St. Petersburg, Florida", 1, None, 1,
         "temperature"),
        ("weather in Frankfurt am Main the day after tomorrow", "Frankfurt am Main", 2, None, 1, "general"),
        ("what's the temperature here", None, None, None, 1, "temperature"),
    ],
)
def test_requests_are_read_for_place_day_and_topic(
    text: str, place: str | None, day: int | None, weekday: int | None, span: int, topic: str
) -> None:
    got = parse_request(text)
    assert (got.place, got.day, got.weekday, got.span, got.topic) == (place, day, weekday, span, topic)


def test_worker_intents_lists_weather_email_and_embed(tmp_path: Path) -> None:
    done = mtor("worker", "intents", "--json")
    assert {"weather", "email", "embed"} <= set(json.loads(done.stdout)["intents"])
