"""RealmFeed over a broker's client WebSocket, with reconnect and backoff."""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator
from typing import TYPE_CHECKING

from broker.protocol import Error, SubmitQuery

from ..client import RealmClient, RealmError
from .feed import TOPICS, AnswerEvent, ConnectionStatus, FeedEvent

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount


class BrokerFeed:
    """Subscribes to a realm's pushes and submits through one RealmClient.

    A lost connection is reported as ``ConnectionStatus("offline")`` with the
    delay before the next attempt; attempts back off exponentially from
    ``first_retry_s`` to ``max_retry_s`` and reset once a login succeeds.
    """

    def __init__(
        self,
        url: str,
        account: LocalAccount | None = None,
        *,
        topics: list[str] | None = None,
        first_retry_s: float = 0.5,
        max_retry_s: float = 15.0,
        connect_timeout: float = 5.0,
    ) -> None:
        self.url = url
        self._account = account
        self._topics = list(topics or TOPICS)
        self._first_retry_s = first_retry_s
        self._max_retry_s = max_retry_s
        self._connect_timeout = connect_timeout
        self._client: RealmClient | None = None
        self._closed = asyncio.Event()

    @property
    def label(self) -> str:
        return self.url

    async def updates(self) -> AsyncIterator[FeedEvent]:
        delay = self._first_retry_s
        while not self._closed.is_set():
            yield ConnectionStatus("connecting")
            client = RealmClient(self.url, self._account, connect_timeout=self._connect_timeout)
            try:
                await client.connect()
            except RealmError as exc:
                yield ConnectionStatus("offline", exc.message, retry_in=delay)
                await self._sleep(delay)
                delay = min(delay * 2, self._max_retry_s)
                continue
            self._client = client
            delay = self._first_retry_s
            welcome = client.welcome
            yield ConnectionStatus("online", address=welcome.address if welcome else client.address)
            detail = "the connection closed"
            try:
                async for push in client.subscribe(self._topics):
                    yield push
            except RealmError as exc:
                detail = exc.message
            finally:
                self._client = None
                await client.close()
            if self._closed.is_set():
                return
            yield ConnectionStatus("offline", detail, retry_in=delay)
            await self._sleep(delay)
            delay = min(delay * 2, self._max_retry_s)

    async def _sleep(self, seconds: float) -> None:
        try:
            await asyncio.wait_for(self._closed.wait(), seconds)
        except TimeoutError:
            pass

    async def submit(self, query: SubmitQuery) -> AsyncIterator[AnswerEvent]:
        client = self._client
        if client is None:
            yield Error(
                code="disconnected",
                message=f"not connected to the realm at {self.url}",
                hint="wait until the status bar shows online, then press Enter again",
                guid=query.guid,
            )
            return
        try:
            async for event in client.submit(query):
                yield event
        except RealmError as exc:
            yield Error(code=exc.code, message=exc.message, hint=exc.hint, guid=query.guid)

    async def cancel(self, guid: str) -> None:
        if self._client is not None:
            try:
                await self._client.cancel(guid)
            except RealmError:
                pass  # the connection dropped; the submit stream reports that

    async def close(self) -> None:
        self._closed.set()
        if self._client is not None:
            await self._client.close()
