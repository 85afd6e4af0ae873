"""The client end of one HTTP request's intent, as the dispatcher sees it: a Peer.

The dispatcher, the outbox and the rate limits send a client's frames to a
:class:`broker.peer.Peer`; an HTTP request gets this one, so it goes through
exactly the code a WebSocket client does (journal, SafeQueue, holds,
replays). Its frames are not written to a socket: at the end of each
event-loop pass (after the journal's commit, like every frame) they are
decoded and handed to the request's handler, and the ones that settle money
(``accepted``, ``result``, ``error``) to ``on_event`` even when the handler
has already answered.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable

import msgspec
from aiohttp import web

from broker.peer import Peer, Writer
from broker.protocol import Accepted, Error, Progress, Result, Token

Answer = Token | Result | Error  # what the handler gets
_decoder = msgspec.json.Decoder(Accepted | Token | Progress | Result | Error)


class HttpPeer(Peer):
    def __init__(
        self,
        request: web.Request,
        outbox: Writer,
        address: str,
        guid: str,
        on_event: Callable[[HttpPeer, Accepted | Result | Error], None],
        *,
        retriable: bool = False,
    ) -> None:
        # Not Peer.__init__: there is no WebSocket here. The dispatcher, the
        # outbox and the rate limits use only the attributes set below.
        self.role = "client"
        self.transport = request.transport
        self.remote = request.remote or ""
        self.nonce = ""
        self.nonce_spent = True
        self.address = address
        self.closed = False
        self.queued: list[bytes] = []
        self.marked = False
        self._outbox = outbox
        self.guid = guid
        self.listening = True  # the handler still waits for events
        self.hung_up = False  # the HTTP client went away before the end
        self.retriable = retriable  # sent with an Idempotency-Key: the client may send it again
        self.superseded = False  # a later request with the same Idempotency-Key took the stream
        self.ended = False  # its result or error arrived
        self._on_event = on_event
        self._events: list[Answer] = []
        self._waiter: asyncio.Future[None] | None = None

    def write_queued(self) -> None:
        frames, self.queued = self.queued, []
        for data in frames:
            event = _decoder.decode(data)
            if isinstance(event, (Accepted, Result, Error)):
                if event.guid != self.guid:
                    continue
                if not isinstance(event, Accepted):
                    self.ended = self.closed = True
                self._on_event(self, event)
            # The handler acts on text and on the end; `accepted` and progress
            # (no part of the OpenAI API) would only wake it for nothing.
            if self.listening and isinstance(event, (Token, Result, Error)):
                self._events.append(event)
        if self._events:
            self._wake()

    async def events(self) -> list[Answer]:
        """The events that arrived since the last call, waiting for at least one
        (an empty list when the client hung up)."""
        while not self._events and not self.hung_up and not self.superseded:
            self._waiter = asyncio.get_running_loop().create_future()
            try:
                await self._waiter
            finally:
                self._waiter = None
        events, self._events = self._events, []
        return events

    def hang_up(self) -> None:
        self.hung_up = True
        self.listening = False
        self._wake()

    def supersede(self) -> None:
        self.superseded = True
        self.listening = False
        self._wake()

    def detach(self) -> None:
        """The handler answered: later frames only settle money."""
        self.listening = False
        self._events = []

    def gone(self) -> bool:
        """The HTTP connection is closed."""
        transport = self.transport
        return transport is None or transport.is_closing()

    def _wake(self) -> None:
        waiter = self._waiter
        if waiter is not None and not waiter.done():
            waiter.set_result(None)

    async def close(self, code: int = 1000, message: bytes = b"", *, settle: bool = True) -> None:
        self.closed = True
