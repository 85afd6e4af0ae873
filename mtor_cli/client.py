"""RealmClient: the async client SDK for a realm broker (``/ws/client``).

One WebSocket per client, one reader task that routes every incoming frame to
the request it belongs to by ``guid``, so many requests can run at once on
one connection (the TUI streams several; ``mtor ask`` runs one)::

    async with RealmClient("ws://127.0.0.1:8765", account) as realm:
        result = await realm.ask("tell me a joke", on_token=print)
        async for event in realm.submit(SubmitQuery(guid=new_guid(), prompt="hi")):
            ...  # Accepted, Token, Progress, then Result or Error
        async for push in realm.subscribe(["stats", "workers"]):
            ...  # Stats / Broadcast

Failures are :class:`RealmError` with a stable ``code`` (the broker's
``broker.protocol.ERROR_CODES`` or one of :data:`CLIENT_ERROR_CODES`), a
human ``message`` and a ``hint``. With ``reconnect_s > 0`` a dropped
connection is re-established (for up to that many seconds) and every pending
request is resubmitted under the same guid, which the broker answers from its
journal or by attaching to the still-running intent; text already streamed is
not streamed twice.
"""

from __future__ import annotations

import asyncio
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable, Iterable
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit, urlunsplit

import msgspec

from broker import protocol as p

if TYPE_CHECKING:
    import ssl

    import aiohttp
    from eth_account.signers.local import LocalAccount

    from mtor_cli.keys import Signer

CLIENT_ERROR_CODES: dict[str, str] = {
    "unreachable": "The broker cannot be reached.",
    "handshake_failed": "The broker did not complete the login handshake.",
    "disconnected": "The connection to the broker was lost.",
    "timeout": "No answer arrived in time.",
}

MAX_FRAME_BYTES = 64 * 1024 * 1024  # results may carry images/audio inline

Event = p.Accepted | p.Token | p.Progress | p.Result | p.Error


class RealmError(p.MtorError):
    """A request failed; ``code`` is stable, ``message``/``hint`` are for people,
    ``guid`` names the request it ended."""

    def __init__(
        self,
        code: str,
        message: str,
        hint: str = "",
        guid: str | None = None,
        detail: dict[str, Any] | None = None,
    ) -> None:
        super().__init__(code, message, hint)
        self.detail = dict(detail or {})  # the broker's, whatever its keys
        self.guid = guid

    @classmethod
    def from_error(cls, err: p.Error) -> RealmError:
        return cls(err.code, err.message, err.hint, err.guid, dict(err.detail))


def new_guid() -> str:
    return uuid.uuid4().hex


SCHEMES = ("ws", "wss", "http", "https")


def check_url(url: str) -> tuple[str, str]:
    """(scheme, host:port) of a broker address; RealmError('usage') when it is not one.

    Accepts ``ws://host:port``, ``wss://``, ``http(s)://`` or a bare ``host:port``.
    """
    text = url.strip()
    example = "e.g. --broker ws://127.0.0.1:8765"
    if not text or any(ch.isspace() for ch in text):
        raise RealmError("usage", f"{url!r} is not a broker address", example)
    if "://" not in text:
        text = "ws://" + text
    try:
        parts = urlsplit(text)
        port = parts.port
    except ValueError as exc:
        raise RealmError("usage", f"{url!r} is not a broker address: {exc}", example) from None
    if parts.scheme not in SCHEMES:
        raise RealmError(
            "usage", f"{url!r}: a broker speaks ws://, wss://, http:// or https://, not {parts.scheme}://", example
        )
    if not parts.hostname:
        raise RealmError("usage", f"{url!r} names no host", example)
    if port == 0:
        raise RealmError("usage", f"{url!r}: port 0 is not a port a broker listens on", example)
    return parts.scheme, parts.netloc


def check_urls(urls: str) -> list[str]:
    """The brokers of ``urls``: one address, or several of one realm separated
    by commas (``ws://a:8765,ws://b:8765``), each checked by :func:`check_url`."""
    parts = [part.strip() for part in urls.split(",")]
    if len(parts) > 1 and not all(parts):
        raise RealmError("usage", f"{urls!r} has an empty broker address", "e.g. --broker ws://a:8765,ws://b:8765")
    for part in parts:
        check_url(part)
    return parts


def ws_url(url: str, path: str = "/ws/client") -> str:
    """Normalise a broker address to its WebSocket endpoint.

    Accepts ``ws://host:port``, ``http://host:port``, ``host:port`` or a full
    endpoint URL; a bare realm address gets ``path`` appended. Raises
    RealmError('usage') for anything else (see :func:`check_url`).
    """
    check_url(url)
    if "://" not in url:
        url = "ws://" + url
    parts = urlsplit(url.strip())
    scheme = {"http": "ws", "https": "wss"}.get(parts.scheme, parts.scheme)
    route = parts.path if parts.path not in ("", "/") else path
    return urlunsplit((scheme, parts.netloc, route, parts.query, ""))


def broker_urls(urls: str | Iterable[str]) -> list[str]:
    """The WebSocket endpoints of a realm's brokers: ``ws://a:8765,ws://b:8765``
    (or a list) gives each; one URL gives one. (A DNS name with several
    addresses is one URL: the connection tries each address in turn.)"""
    return [ws_url(u) for u in (check_urls(urls) if isinstance(urls, str) else urls)]


def http_url(url: str, path: str = "") -> str:
    """The HTTP address of a broker (for /healthz, /v1/workers, /v1/stats); of
    several brokers of a realm, the first."""
    url = check_urls(url)[0]
    if "://" not in url:
        url = "ws://" + url
    parts = urlsplit(url.strip())
    scheme = {"ws": "http", "wss": "https"}.get(parts.scheme, parts.scheme)
    return urlunsplit((scheme, parts.netloc, path, "", ""))


CA_ENV = "MTOR_CA_FILE"  # a CA bundle to trust for wss:// and https:// brokers (a self-signed realm's cert)


def tls_context(url: str) -> ssl.SSLContext | None:
    """The TLS context for a broker URL: the system store plus $MTOR_CA_FILE."""
    import os
    import ssl

    if not url.startswith(("wss:", "https:")):
        return None
    return ssl.create_default_context(cafile=os.environ.get(CA_ENV))


def http_get_json(url: str, path: str, timeout: float = 3.0) -> Any:
    """GET a broker's JSON endpoint synchronously; raises RealmError('unreachable').
    Given several brokers of a realm (comma-separated), the first that answers."""
    import urllib.error
    import urllib.request

    failures = []
    for one in check_urls(url):
        target = http_url(one, path)
        try:
            with urllib.request.urlopen(target, timeout=timeout, context=tls_context(target)) as resp:
                return p.loads(resp.read())
        except (urllib.error.URLError, OSError, ValueError) as exc:
            failures.append(f"{target}: {getattr(exc, 'reason', exc)}")
    raise RealmError(
        "unreachable",
        "cannot reach the broker at " + "; ".join(failures),
        "check the address, or start one with `mtor broker serve`",
    )


def _unreachable(url: str, exc: BaseException) -> RealmError:
    reason = str(exc) or type(exc).__name__
    return RealmError(
        "unreachable",
        f"cannot reach the broker at {url}: {reason}",
        "check --broker / MTOR_BROKER, or start one with `mtor broker serve`",
    )


def _retry_after(exc: Any) -> float:
    """The server's Retry-After (seconds) with some jitter, so refused clients do not come back together."""
    import random

    try:
        seconds = float((exc.headers or {}).get("Retry-After", 1))
    except ValueError:
        seconds = 1.0
    return min(max(seconds, 0.05), 5.0) * random.uniform(0.1, 1.0)


class _Restream:
    """Keeps a request's stream exact across reconnects, retries and restarts.

    The broker numbers every token by ``run`` (a retry on another worker or a
    broker restart starts a new run) and ``offset`` (characters of that run's
    text before it). A reconnecting client resubmits with the run and offset
    it has (:meth:`resume`) and the broker sends what it missed, so the same
    run simply continues. A new run starts over from offset 0: its text up to
    what was already passed on is swallowed and only new text goes through.
    If a new run diverges from the old text, nothing more is streamed: the
    Result, which is authoritative, tells the caller (``streamed !=
    result.text``).
    """

    def __init__(self) -> None:
        self._passed: list[str] = []  # text handed to the caller so far, in pieces
        self._passed_len = 0
        self._run = 0  # the run followed now (0: none yet)
        self._have = 0  # characters of that run received
        self._catching: str | None = None  # a new run's text while it catches up with what was passed
        self._passed_text = ""  # the passed text, joined while catching up
        self.diverged = False

    @property
    def passed(self) -> str:
        return "".join(self._passed)

    def rest_of(self, final: str | None) -> str:
        """What of the final text the caller has not seen, if the stream so far is its start."""
        passed = self.passed
        if self.diverged or not final or len(final) <= len(passed) or not final.startswith(passed):
            return ""
        self._passed, self._passed_len = [final], len(final)
        return final[len(passed) :]

    def resume(self) -> tuple[int, int]:
        """(run, offset) to resubmit with after a reconnect."""
        return self._run, self._have

    def feed(self, token: p.Token) -> str:
        """The part of ``token`` to pass on ("" for none)."""
        if token.run != self._run:
            self._run, self._have = token.run, 0
            if self._passed_len:
                self._catching, self._passed_text = "", self.passed
        if token.offset > self._have:  # frames lost in between: this stream cannot be trusted
            self.diverged = True
        if self.diverged or token.offset + len(token.text) <= self._have:
            return ""
        new = token.text[self._have - token.offset :]
        self._have += len(new)
        if self._catching is not None:
            self._catching += new
            caught = self._catching
            if len(caught) <= self._passed_len:
                self.diverged = not self._passed_text.startswith(caught)
                return ""
            if not caught.startswith(self._passed_text):
                self.diverged = True
                return ""
            new, self._catching, self._passed_text = caught[self._passed_len :], None, ""
        self._passed.append(new)
        self._passed_len += len(new)
        return new


_RESIGN = 20  # authorisations re-signed for one query (the realm's ledger may still be deploying)
_LEDGER_WAIT_S = 0.5  # between tries while it is


class _Spending:
    """The account's cumulative spending authorisations for a paid realm.

    Each query is sent with "the realm may take up to ``total`` from my
    deposit, in all", total = what the realm says is committed (spent and
    held, at the Welcome) + what this client has sent since + this query's
    price (its ``max_price``, else the last price held for its intent, else
    the realm's quote for it with default parameters). The
    realm can never take more than the highest total signed, which exceeds
    what it charged by at most the holds still open. When the estimate falls
    short (another client of the same key spent meanwhile, an unknown price)
    the realm answers ``bad_authorisation`` with what it ``needs``, and that
    exact amount is signed and sent again.
    """

    def __init__(self, terms: p.LedgerTerms | None) -> None:
        self.terms = terms
        self.committed = terms.committed if terms is not None else 0
        self.prices: dict[str, int] = {}  # intent -> the last price held
        self.open: dict[str, int] = {}  # guid -> what it may still cost

    def _sign(self, account: Any, query: p.SubmitQuery, total: int) -> p.SubmitQuery:
        import msgspec

        from ledger.authorisation import Terms, sign

        assert self.terms is not None
        terms = Terms(self.terms.chain_id, self.terms.contract)
        signed = p.Authorisation(total=total, signature=sign(account.key, terms, account.address, total))
        return msgspec.structs.replace(query, authorisation=signed)

    def authorise(self, account: Any, query: p.SubmitQuery) -> p.SubmitQuery:
        return self._sign(account, query, self.committed + sum(self.open.values()) + self._price(query))

    def _price(self, query: p.SubmitQuery) -> int:
        if query.max_price is not None:
            return query.max_price
        intent = query.intent or "chat"  # what the realm's recogniser picks for most prompts
        if intent in self.prices:
            return self.prices[intent]
        quotes = self.terms.quotes if self.terms is not None else {}
        return quotes.get(intent, quotes.get("default", 0))

    async def resign(self, account: Any, query: p.SubmitQuery, refusal: p.Error) -> p.SubmitQuery | None:
        detail = refusal.detail
        if "chain_id" not in detail:
            await asyncio.sleep(_LEDGER_WAIT_S)  # no contract yet: the realm is deploying it
            return query
        if not isinstance(detail.get("needed"), int):
            return None  # a bad signature, not a low total: signing again would not help
        quotes = self.terms.quotes if self.terms is not None else {}
        self.terms = p.LedgerTerms(
            chain_id=int(detail["chain_id"]), contract=str(detail["contract"]), quotes=quotes
        )
        self.committed = int(detail.get("committed", self.committed))
        return self._sign(account, query, int(detail["needed"]))

    def sent(self, guid: str, estimate: int) -> None:
        self.open[guid] = estimate

    def seen(self, event: object) -> None:
        if isinstance(event, p.Accepted):
            self.prices[event.intent] = event.price_held
            self.open[event.guid] = event.price_held
        elif isinstance(event, p.Result):
            self.committed += event.cost
            self.open.pop(event.guid, None)
        elif isinstance(event, p.Error):
            self.open.pop(event.guid or "", None)

    def done(self, guid: str) -> None:
        self.open.pop(guid, None)


class _Subscription:
    """One ``subscribe`` call: its request (resent after a reconnect) and its queue."""

    def __init__(self, request: p.Subscribe) -> None:
        self.request = request
        self.queue: asyncio.Queue[Any] = asyncio.Queue()


class RealmClient:
    """An authenticated connection to a broker's ``/ws/client`` endpoint."""

    def __init__(
        self,
        url: str | Iterable[str],
        account: Signer | LocalAccount | None = None,
        *,
        connect_timeout: float = 10.0,
        reconnect_s: float = 0.0,
        client_name: str = "mtor",
        on_broadcast: Callable[[p.Broadcast], None] | None = None,
    ) -> None:
        """``url``: a broker, or several brokers of one realm (comma-separated
        or a list): the client connects to the first that answers and, when
        that one goes away, to the next (see :func:`broker_urls`).
        ``on_broadcast`` sees every sysop broadcast, subscribed or not: a
        person at the CLI must read "the realm restarts in 5 minutes"."""
        self.urls = broker_urls(url)
        self._at = 0  # the broker used now
        self.on_broadcast = on_broadcast
        self._account = account
        self.connect_timeout = connect_timeout
        self.reconnect_s = reconnect_s
        self.client_name = client_name
        self.welcome: p.Welcome | None = None
        self._spending: _Spending | None = None  # a paid realm's authorisations, from its Welcome
        self.reconnects = 0
        self._session: aiohttp.ClientSession | None = None
        self._ws: aiohttp.ClientWebSocketResponse | None = None
        self._reader: asyncio.Task[None] | None = None
        self._routes: dict[str, asyncio.Queue[Any]] = {}
        self._pending: dict[str, p.SubmitQuery] = {}
        self._cancels: set[str] = set()  # asked while the socket was down: sent after a reconnect
        self._streams: dict[str, _Restream] = {}
        self._subscribers: list[_Subscription] = []
        self._closing = False
        self._decoder = p.server_to_client_decoder()
        self.notices: asyncio.Queue[p.Error] = asyncio.Queue()
        """Errors the broker sent without a guid (e.g. about a malformed frame)."""

    # --- lifecycle ------------------------------------------------------

    @property
    def account(self) -> Signer | LocalAccount:
        if self._account is None:
            from mtor_cli.identity import load_signer

            self._account = load_signer()
        return self._account

    @property
    def address(self) -> str:
        return self.account.address

    @property
    def url(self) -> str:
        """The broker this client uses now."""
        return self.urls[self._at]

    async def __aenter__(self) -> RealmClient:
        await self.connect()
        return self

    async def __aexit__(self, *exc: object) -> None:
        await self.close()

    async def connect(self) -> None:
        """Open the socket and log in; raises RealmError('unreachable' or a broker code)."""
        import aiohttp

        if self._session is None:
            self._session = aiohttp.ClientSession()
        try:
            self._ws = await self._open()
        except BaseException:
            await self._session.close()
            self._session = None
            raise
        self._reader = asyncio.create_task(self._read_loop(), name="mtor-client-reader")

    async def _open(self) -> aiohttp.ClientWebSocketResponse:
        """Log in to the first broker, from the current one on, that answers."""
        failures = []
        first = self._at
        for step in range(len(self.urls)):
            self._at = (first + step) % len(self.urls)
            try:
                return await self._open_one(self.url)
            except RealmError as exc:
                if exc.code not in ("unreachable", "handshake_failed", "busy", "unavailable"):
                    raise  # the broker answered (a ban, a bad key): another would say the same
                failures.append(exc)
        if len(failures) == 1:
            raise failures[0]
        raise RealmError(
            "unreachable",
            "none of the realm's brokers answers: " + "; ".join(f.message for f in failures),
            "check --broker / MTOR_BROKER, or start one with `mtor broker serve`",
        )

    async def _open_one(self, url: str) -> aiohttp.ClientWebSocketResponse:
        import aiohttp

        assert self._session is not None
        deadline = time.monotonic() + self.connect_timeout
        while True:
            try:
                ws = await asyncio.wait_for(
                    self._session.ws_connect(
                        url, max_msg_size=MAX_FRAME_BYTES, autoping=True, ssl=tls_context(url) or True
                    ),
                    max(0.001, deadline - time.monotonic()),
                )
                break
            except aiohttp.WSServerHandshakeError as exc:
                # 503: too many logins under way right now (broker/gate.py); come back shortly.
                wait = _retry_after(exc)
                if exc.status != 503 or time.monotonic() + wait > deadline:
                    if exc.status == 503:
                        raise RealmError(
                            "busy", f"the broker at {url} stayed busy for {self.connect_timeout:g}s",
                            "too many connections are logging in; try again shortly",
                        ) from exc
                    raise _unreachable(url, exc) from exc
                await asyncio.sleep(wait)
            except (TimeoutError, aiohttp.ClientError, OSError) as exc:
                raise _unreachable(url, exc) from exc
        try:
            self.welcome = await asyncio.wait_for(self._handshake(ws), self.connect_timeout)
            if self.welcome.ledger is not None:
                self._spending = _Spending(self.welcome.ledger)
        except TimeoutError as exc:
            await ws.close()
            raise RealmError(
                "handshake_failed",
                f"the broker at {url} did not finish the login handshake in "
                f"{self.connect_timeout:g}s",
                "is this address an MTOR broker?",
            ) from exc
        except BaseException:
            await ws.close()
            raise
        return ws

    async def _handshake(self, ws: aiohttp.ClientWebSocketResponse) -> p.Welcome:
        first = await self._receive(ws)
        if isinstance(first, p.Error):
            raise RealmError.from_error(first)
        if not isinstance(first, p.Challenge):
            raise RealmError(
                "handshake_failed",
                f"expected a challenge from the broker, got {type(first).__name__}",
                "is this address an MTOR broker?",
            )
        from mtor_cli.keys import personal_sign

        # The same EIP-191 signature as p.sign_challenge, without importing eth_account.
        signature = personal_sign(bytes(self.account.key), p.challenge_text(first.nonce, "client"))
        hello = p.Hello(
            address=self.account.address,
            signature=signature,
            nonce=first.nonce,
            client=self.client_name,
        )
        await ws.send_str(p.encode_str(hello))
        while True:
            reply = await self._receive(ws)
            if isinstance(reply, p.Welcome):
                return reply
            if isinstance(reply, p.Error):
                raise RealmError.from_error(reply)
            if isinstance(reply, p.Ping):
                await ws.send_str(p.encode_str(p.Pong(nonce=reply.nonce, ts=reply.ts)))

    async def _receive(self, ws: aiohttp.ClientWebSocketResponse) -> Any:
        import aiohttp

        msg = await ws.receive()
        if msg.type in (aiohttp.WSMsgType.TEXT, aiohttp.WSMsgType.BINARY):
            try:
                return self._decoder.decode(msg.data)
            except msgspec.MsgspecError as exc:
                raise RealmError(
                    "handshake_failed",
                    f"the server at {self.url} sent an unreadable login frame: {exc}",
                    "is this address an MTOR broker (same protocol version)?",
                ) from exc
        raise RealmError(
            "handshake_failed",
            f"the broker at {self.url} closed the connection during login",
            "check the broker's log",
        )

    async def close(self) -> None:
        self._closing = True
        if self._ws is not None:
            await self._ws.close()
        if self._reader is not None:
            self._reader.cancel()
            try:
                await self._reader
            except (asyncio.CancelledError, Exception):
                pass
            self._reader = None
        if self._session is not None:
            await self._session.close()
            self._session = None

    # --- the reader -----------------------------------------------------

    async def _read_loop(self) -> None:
        import aiohttp

        try:
            while True:
                ws = self._ws
                assert ws is not None
                async for msg in ws:
                    if msg.type != aiohttp.WSMsgType.TEXT:
                        continue
                    try:
                        event = self._decoder.decode(msg.data)
                    except Exception:  # a newer broker's message this client does not know
                        continue
                    await self._dispatch(event)
                if self._closing or not await self._reconnect():
                    break
        finally:
            lost = RealmError(
                "disconnected",
                f"the connection to the broker at {self.url} was lost",
                "the broker may have stopped; resubmitting the same guid returns its stored result",
            )
            for queue in [*self._routes.values(), *(sub.queue for sub in self._subscribers)]:
                queue.put_nowait(lost)

    async def _dispatch(self, event: Any) -> None:
        if isinstance(event, p.Ping):
            try:
                await self._send(p.Pong(nonce=event.nonce, ts=event.ts))
            except (RealmError, ConnectionError):
                pass  # the socket is going away; the read loop notices
        elif isinstance(event, (p.Stats, p.Broadcast)):
            for sub in self._subscribers:
                sub.queue.put_nowait(event)
            if isinstance(event, p.Broadcast) and self.on_broadcast is not None:
                self.on_broadcast(event)
        elif isinstance(event, p.Error) and not event.guid:
            self.notices.put_nowait(event)
        else:
            guid = getattr(event, "guid", None)
            queue = self._routes.get(guid) if guid else None
            if queue is not None:
                queue.put_nowait(event)

    async def _reconnect(self) -> bool:
        """Re-open the socket within ``reconnect_s``; resubmit pending requests."""
        if self.reconnect_s <= 0:
            return False
        deadline = time.monotonic() + self.reconnect_s
        delay = 0.1
        while time.monotonic() < deadline and not self._closing:
            self._at = (self._at + 1) % len(self.urls)  # the next broker first: this one went away
            try:
                self._ws = await self._open()
            except RealmError:
                await asyncio.sleep(min(delay, max(0.0, deadline - time.monotonic())))
                delay = min(delay * 2, 2.0)
                continue
            self.reconnects += 1
            try:
                for query in list(self._pending.values()):
                    run, offset = self._streams[query.guid].resume()
                    await self._send(msgspec.structs.replace(query, resume_run=run, resume_offset=offset))
                for guid in [g for g in self._cancels if g in self._pending]:
                    await self._send(p.Cancel(guid=guid))
                self._cancels.clear()
                for sub in self._subscribers:
                    await self._send(sub.request)
            except (RealmError, ConnectionError):
                continue  # lost again at once: keep trying until the deadline
            return True
        return False

    async def _send(self, msg: p.Msg) -> None:
        if self._ws is None or self._ws.closed:
            raise RealmError(
                "disconnected",
                f"not connected to the broker at {self.url}",
                "open the client with `async with RealmClient(...)`",
            )
        try:
            await self._ws.send_str(p.encode_str(msg))
        except ConnectionError as exc:  # closing under us
            raise RealmError(
                "disconnected", f"the connection to the broker at {self.url} is closing", "retry", detail={}
            ) from exc

    # --- requests -------------------------------------------------------

    async def submit(self, query: p.SubmitQuery) -> AsyncIterator[Event]:
        """Send ``query`` and yield its events until its Result or Error.

        In a paid realm the query carries the account's signed spending
        authorisation, made here (see :class:`_Spending`); a query the realm
        finds under-authorised is signed again for what it asks and resent,
        so callers never see ``bad_authorisation`` from an honest realm.
        Raises RealmError('disconnected') if the connection is lost for good.
        """
        queue: asyncio.Queue[Any] = asyncio.Queue()
        if query.guid in self._routes:
            raise RealmError(
                "duplicate_guid",
                f"guid {query.guid} is already running on this connection",
                "use a new guid (client.new_guid())",
                query.guid,
            )
        spending = self._spending
        if spending is not None and query.authorisation is None:
            query = spending.authorise(self.account, query)
        self._routes[query.guid] = queue
        self._pending[query.guid] = query
        stream = self._streams[query.guid] = _Restream()
        if spending is not None:
            spending.sent(query.guid, spending._price(query))
        resigned = 0
        try:
            try:
                await self._send(query)
            except RealmError:
                # The socket is going down; with reconnection on, the reader
                # resubmits every pending request once it is back.
                if self.reconnect_s <= 0 or self._closing:
                    raise
            while True:
                event = await queue.get()
                if isinstance(event, RealmError):
                    raise event
                if isinstance(event, p.Error) and event.code == "bad_authorisation" and resigned < _RESIGN:
                    spending = self._spending = self._spending or _Spending(None)
                    again = await spending.resign(self.account, query, event)
                    if again is not None:
                        resigned += 1
                        query = self._pending[query.guid] = again
                        await self._send(query)
                        continue
                if spending is not None:
                    spending.seen(event)
                if isinstance(event, p.Token):
                    text = stream.feed(event)
                    if not text:
                        continue
                    if text != event.text:
                        event = msgspec.structs.replace(event, text=text)
                elif isinstance(event, p.Result) and query.stream:
                    # Tokens sent while this client was away from a run that has
                    # finished since: the Result holds them.
                    rest = stream.rest_of(event.text)
                    if rest:
                        yield p.Token(guid=event.guid, text=rest)
                yield event
                if isinstance(event, (p.Result, p.Error)):
                    return
        finally:
            if spending is not None:
                spending.done(query.guid)
            self._routes.pop(query.guid, None)
            self._pending.pop(query.guid, None)
            self._streams.pop(query.guid, None)

    async def ask(
        self,
        prompt: str,
        *,
        intent: str | None = None,
        model: str | None = None,
        attachments: Iterable[p.Attachment] = (),
        params: dict[str, Any] | None = None,
        stream: bool = True,
        max_price: int | None = None,
        share_address: bool = False,
        guid: str | None = None,
        timeout: float | None = None,
        on_accepted: Callable[[p.Accepted], Awaitable[None] | None] | None = None,
        on_token: Callable[[str], Awaitable[None] | None] | None = None,
        on_progress: Callable[[p.Progress], Awaitable[None] | None] | None = None,
        settings: dict[str, dict[str, Any]] | None = None,
    ) -> p.Result:
        """Submit one request and return its Result; raises RealmError on failure.

        Callbacks may be plain functions or coroutines. On ``timeout`` the
        request is cancelled at the broker and RealmError('timeout') raised.
        ``share_address``: a peer realm that serves the request may see who asked.
        ``settings``: the asker's settings by intent; the broker applies those
        of the intent it chooses as params (weather: the home location).
        """
        query = p.SubmitQuery(
            guid=guid or new_guid(),
            prompt=prompt,
            intent=intent,
            model=model,
            attachments=list(attachments),
            params=dict(params or {}),
            stream=stream,
            max_price=max_price,
            share_address=share_address,
            settings=dict(settings or {}),
        )

        async def run() -> p.Result:
            async for event in self.submit(query):
                if isinstance(event, p.Result):
                    return event
                if isinstance(event, p.Error):
                    raise RealmError.from_error(event)
                callback: Any = {
                    p.Accepted: on_accepted,
                    p.Token: on_token,
                    p.Progress: on_progress,
                }.get(type(event))
                if callback is not None:
                    arg = event.text if isinstance(event, p.Token) else event
                    outcome = callback(arg)
                    if asyncio.iscoroutine(outcome):
                        await outcome
            raise RealmError("disconnected", "the stream ended without a result", "retry")

        try:
            return await asyncio.wait_for(run(), timeout)
        except TimeoutError:
            await self._cancel_quietly(query.guid)
            raise RealmError(
                "timeout",
                f"no answer within {timeout:g}s",
                "raise --timeout, or check the workers with `mtor broker status`",
                query.guid,
            ) from None

    async def _cancel_quietly(self, guid: str) -> None:
        try:
            await self.cancel(guid)
        except (RealmError, ConnectionError):
            pass

    async def cancel(self, guid: str) -> None:
        """Ask the broker to cancel ``guid`` (queued or running).

        The request's own stream then ends with ``error{code: cancelled}``.
        With reconnection on, a cancel asked while the connection is down is
        sent once it is back (after the request is resubmitted).
        """
        try:
            await self._send(p.Cancel(guid=guid))
        except RealmError:
            if self.reconnect_s <= 0 or self._closing or guid not in self._pending:
                raise
            self._cancels.add(guid)

    async def subscribe(self, topics: Iterable[str] | None = None) -> AsyncIterator[p.Stats | p.Broadcast]:
        """Yield the broker's Stats/Broadcast pushes for ``topics`` until closed."""
        request = p.Subscribe() if topics is None else p.Subscribe(topics=list(topics))
        sub = _Subscription(request)
        self._subscribers.append(sub)
        try:
            await self._send(request)
            while True:
                event = await sub.queue.get()
                if isinstance(event, RealmError):
                    raise event
                yield event
        finally:
            self._subscribers.remove(sub)
