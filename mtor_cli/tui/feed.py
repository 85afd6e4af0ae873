"""The one interface the TUI takes its data through.

The app never opens a socket itself: it reads pushed updates and submits
intents through a :class:`RealmFeed`. :class:`~mtor_cli.tui.broker_feed.BrokerFeed`
implements it over the client WebSocket; the benchmark's synthetic stream and
the tests' fixed realms implement it too, so the same app code runs on all.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from dataclasses import dataclass
from typing import Literal, Protocol

from broker.protocol import Accepted, Broadcast, Error, Progress, Result, Stats, SubmitQuery, Token

LinkState = Literal["connecting", "online", "offline"]


@dataclass(frozen=True)
class ConnectionStatus:
    """The state of the feed's link to the realm, pushed whenever it changes.

    ``retry_in`` is the backoff delay (seconds) before the next attempt when
    ``state`` is "offline"; ``detail`` says why, in words a person can act on;
    ``address`` is the identity the realm welcomed (known once online).
    """

    state: LinkState
    detail: str = ""
    retry_in: float | None = None
    address: str | None = None


FeedEvent = Stats | Broadcast | ConnectionStatus
AnswerEvent = Accepted | Token | Progress | Result | Error

TOPICS = ["stats", "workers", "queue", "intents", "ledger", "federation"]


class RealmFeed(Protocol):
    """A live view of one realm plus a way to ask it something."""

    @property
    def label(self) -> str:
        """What the status bar names as the realm (usually the broker URL)."""
        ...

    def updates(self) -> AsyncIterator[FeedEvent]:
        """Pushed updates until the app stops; reconnecting is the feed's job."""
        ...

    def submit(self, query: SubmitQuery) -> AsyncIterator[AnswerEvent]:
        """The answer to one query, ending after its ``Result`` or ``Error``."""
        ...

    async def cancel(self, guid: str) -> None:
        """Ask the realm to stop working on ``guid``."""
        ...

    async def close(self) -> None:
        """Release connections; ``updates`` ends."""
        ...
