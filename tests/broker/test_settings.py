"""The asker's settings ride by intent: only the chosen intent's become its params.

A client cannot know which intent the realm will choose, so it sends its
settings for every intent that takes some; the broker applies the chosen
one's (the request's own params win) and drops the rest, so no worker, and
no journal, sees another intent's settings.
"""

from __future__ import annotations

from typing import Any

from broker.protocol import Result
from tests.support.peers import FakeWorker, TestClient

SETTINGS = {"weather": {"location": "Oslo", "units": "imperial"}, "email": {"x": "never sent"}}


async def test_the_chosen_intents_settings_become_its_params(broker: Any) -> None:
    weather = await FakeWorker(broker.url, intents=("weather",)).start()
    chat = await FakeWorker(broker.url, intents=("chat",)).start()
    async with TestClient(broker.url) as client:
        routed = await client.collect(await client.submit("Computer, check the weather", settings=SETTINGS))
        forced = await client.collect(
            await client.submit("weather", intent="weather", params={"units": "metric"}, settings=SETTINGS)
        )
        other = await client.collect(await client.submit("tell me a joke", settings=SETTINGS))
    assert all(isinstance(msgs[-1], Result) for msgs in (routed, forced, other))
    assert [w.params for w in weather.received] == [
        {"location": "Oslo", "units": "imperial"},
        {"location": "Oslo", "units": "metric"},  # the request's own params win
    ]
    assert [w.params for w in chat.received] == [{}]  # chat never sees the home location
    await weather.close()
    await chat.close()
