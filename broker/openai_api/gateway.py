"""The OpenAI-compatible API's part of the broker: keys in, intents through the dispatcher, events out.

An HTTP request is an intent like any other. It is authenticated by its API
key (the key's address is the user), checked against bans and the key's
spending limit, then submitted through the same entry points a WebSocket
client's ``submit_query`` takes: :meth:`Limits.allow` and
:meth:`Dispatcher.submit`, with an :class:`HttpPeer` as its client. So it is
journaled, queued fairly in SafeQueue against everyone else's intents,
held, charged and released by the realm's Billing, replayed for a repeated
``Idempotency-Key``, and listed in the user's history.

A client that hangs up before its answer cancels the intent (the worker is
told to stop and the hold is released): a write to a closed stream notices at
once, and :meth:`OpenAIGateway.sweep` checks the waiting requests' connections
every ``HANGUP_CHECK_S``. A request sent with an ``Idempotency-Key`` gets
``RETRY_GRACE_S`` for its retry to take the answer over first.
"""

from __future__ import annotations

import asyncio
import hashlib
import secrets
from typing import TYPE_CHECKING

from aiohttp import web

from broker.openai_api.allowance import spending_cap
from broker.openai_api.catalogue import Offer, declared, offers
from broker.openai_api.errors import ApiError
from broker.openai_api.http_peer import Answer, HttpPeer
from broker.openai_api.keys import ApiKey, KeyStore
from broker.openai_api.translate import Plan
from broker.protocol import Accepted, Authorisation, Error, Result, SubmitQuery

if TYPE_CHECKING:
    from broker.accounts import AccountStore
    from broker.background import Background
    from broker.billing import Billing
    from broker.dispatch import Dispatcher
    from broker.peer import Writer
    from broker.ratelimit import Limits
    from broker.registry import WorkerRegistry

HANGUP_CHECK_S = 0.25
RETRY_GRACE_S = 10.0  # how long a hung-up request with an Idempotency-Key waits for its retry
MAX_IDEMPOTENCY_KEY = 255


class ClientGone(Exception):
    """The HTTP client hung up before its answer; its intent was cancelled."""


class OpenAIGateway:
    def __init__(
        self,
        dispatcher: Dispatcher,
        limits: Limits,
        registry: WorkerRegistry,
        accounts: AccountStore,
        keys: KeyStore,
        outbox: Writer,
        billing: Billing | None,
        realm: str,
        background: Background,
    ) -> None:
        """``billing``: the realm's (None: a free realm). It learns what the keys may still
        spend, which every authorisation of their owner must cover (docs/openai.md)."""
        self._dispatcher = dispatcher
        self._limits = limits
        self._registry = registry
        self._accounts = accounts
        self.keys = keys
        self._outbox = outbox
        self._billing = billing
        self._background = background  # cancels of hung-up requests, which nothing waits for
        self.realm = realm
        self.paid = billing is not None
        if billing is not None:
            billing.set_reserved(keys.reserved)
        self._waiting: set[HttpPeer] = set()  # requests whose handler waits for events
        self._seen: set[str] = set()  # models some worker offered since the broker started

    # --- who asks ---------------------------------------------------------

    def authenticate(self, authorization: str | None) -> ApiKey:
        """The key of an ``Authorization: Bearer <key>`` header; 401 or 403 otherwise."""
        scheme, _, secret = (authorization or "").partition(" ")
        if scheme.lower() != "bearer" or not secret.strip():
            raise ApiError(
                "invalid_api_key", "send your API key as `Authorization: Bearer <key>`",
                "create one with `mtor keys create`",
            )
        key = self.keys.find(secret.strip())
        if key is None:
            raise ApiError("invalid_api_key", "this realm never issued that API key", "create one with `mtor keys create`")
        if key.revoked is not None:
            raise ApiError("revoked_api_key", f"API key {key.id} was revoked", "create a new one with `mtor keys create`")
        ban = self._accounts.banned(key.address)
        if ban is not None:
            raise ApiError(
                "banned", f"this address is banned from the realm: {ban.reason}", "ask the realm's sysop to lift the ban",
            )
        return key

    def create_key(
        self, address: str, name: str, limit: int | None, authorisation: Authorisation | None
    ) -> tuple[ApiKey, str]:
        """A new key for ``address``. In a paid realm ``authorisation`` must be the user's
        signature of everything it committed, its other keys' unspent limits and this key's
        ``limit``: PaymentRefused ``bad_authorisation`` (with ``needed``) otherwise."""
        self.keys.check(address, name, limit)
        signed = None
        if self._billing is not None:
            self._billing.authorise(address, authorisation, limit or 0)
            assert authorisation is not None  # authorise refuses a missing one
            signed = (authorisation.total, authorisation.signature)
        return self.keys.create(address, name, limit, signed)

    async def revoke(self, address: str, key_id: str) -> tuple[ApiKey, int]:
        """Revoke ``address``'s key and end its running requests (holds released); the key and how many ended."""
        key = self.keys.revoke(address, key_id)
        ended = 0
        for guid in list(key.live):
            why = f"API key {key.id} was revoked"
            ended += await self._dispatcher.terminate(guid, "cancelled", why, "the hold was released")
        return key, ended

    # --- what the realm offers ---------------------------------------------

    def models(self) -> dict[str, Offer]:
        found = offers(self._registry)
        self._seen.update(found)
        return found

    def offer(self, model: str) -> Offer:
        """The live offer of ``model``: 404 if no worker ever offered it, 503 if none does now."""
        found = offers(self._registry, only=model).get(model)
        if found is not None:
            self._seen.add(model)
            return found
        if model in self._seen:
            raise ApiError(
                "no_worker", f"no connected worker serves model {model!r} now", "try again later", "model",
            )
        raise ApiError(
            "model_not_found", f"this realm has no model {model!r}", "GET /v1/models lists the models it serves now",
            "model",
        )

    def declared(self, intent: str) -> set[str]:
        """The parameters every connected ``intent`` backend declares (for a request naming no model)."""
        return declared(self._registry, intent, None) or set()

    # --- submitting ---------------------------------------------------------

    async def submit(
        self,
        request: web.Request,
        key: ApiKey,
        plan: Plan,
        *,
        stream: bool,
        max_price: int | None,
    ) -> HttpPeer:
        """Submit ``plan`` as ``key``'s user; the returned peer receives its events."""
        idempotency_key = request.headers.get("Idempotency-Key")
        guid = _guid(key.address, idempotency_key)
        price = 0
        authorisation = None
        if self._billing is not None:
            price = self._billing.quote(key.address, plan.intent, plan.model, plan.params)
            authorisation = self._standing(key)
        cap = spending_cap(key, price, max_price)
        query = SubmitQuery(
            guid=guid,
            prompt=plan.prompt,
            intent=plan.intent,
            model=plan.model,
            attachments=plan.attachments,
            params=plan.params,
            stream=stream,
            max_price=cap,
            authorisation=authorisation,
        )

        def settle(peer: HttpPeer, event: Accepted | Result | Error) -> None:
            self._settle(key, peer, event)

        peer = HttpPeer(request, self._outbox, key.address, guid, settle, retriable=idempotency_key is not None)
        key.live[guid] = price  # until its `accepted` says what is held
        self.keys.used(key)
        self._waiting.add(peer)
        if await self._limits.allow(peer, query):
            await self._dispatcher.submit(peer, query)
        return peer

    def _standing(self, key: ApiKey) -> Authorisation:
        """The authorisation a paid request of ``key`` is held under: its owner's highest valid
        one, whether signed with a key or with a query. A key without a signed limit (made in
        the realm while it was free) may spend nothing."""
        assert self._billing is not None
        if key.limit is None or key.authorisation is None:
            raise ApiError(
                "authorisation_exhausted",
                f"API key {key.id} has no spending limit its owner signed for this paid realm",
                "create a new key with `mtor keys create --limit AMOUNT` (it signs one)",
            )
        standing = self.keys.authorisation(key.address) or key.authorisation
        latest = self._billing.standing(key.address)
        if latest is not None and latest[0] > standing[0]:
            standing = latest
        return Authorisation(total=standing[0], signature=standing[1])

    def _settle(self, key: ApiKey, peer: HttpPeer, event: Accepted | Result | Error) -> None:
        """Keep the key's own books: what its running requests hold and what it spent."""
        if isinstance(event, Accepted):
            key.live[peer.guid] = event.price_held
            return
        key.live.pop(peer.guid, None)
        if isinstance(event, Result) and not event.replayed:
            self.keys.charged(key, event.cost)

    # --- waiting for answers --------------------------------------------------

    async def events(self, peer: HttpPeer) -> list[Answer]:
        """The next events of ``peer``'s intent; ClientGone if its client hung up,
        ApiError if a later request with the same Idempotency-Key took its stream."""
        events = await peer.events()
        if peer.hung_up:
            raise ClientGone(peer.guid)
        if peer.superseded and not events:
            raise ApiError(
                "duplicate_guid", "a later request with the same Idempotency-Key took over this one's answer",
                "read the answer from the later request", "Idempotency-Key",
            )
        return events

    async def result(self, peer: HttpPeer, prompt_field: str) -> Result:
        """Wait for the intent's result; ApiError for its error, ClientGone on a hang-up."""
        try:
            while True:
                for event in await self.events(peer):
                    if isinstance(event, Result):
                        return event
                    if isinstance(event, Error):
                        raise ApiError.from_frame(event, prompt_field)
        finally:
            self.done(peer)

    def done(self, peer: HttpPeer) -> None:
        """The handler answered (or gave up): stop delivering events to it."""
        self._waiting.discard(peer)
        peer.detach()

    def hang_up(self, peer: HttpPeer) -> None:
        """The client went away: cancel the intent if it still runs for this request
        (its hold is released). A request sent with an Idempotency-Key may be sent
        again to pick up its answer, so it is cancelled only if no retry took it
        over within RETRY_GRACE_S."""
        self._waiting.discard(peer)
        if peer.hung_up:
            return
        peer.hang_up()
        if peer.ended:
            return
        if peer.retriable:
            asyncio.get_running_loop().call_later(RETRY_GRACE_S, self._cancel, peer)
        else:
            self._cancel(peer)

    def _cancel(self, peer: HttpPeer) -> None:
        job = self._dispatcher.jobs.get(peer.guid)
        if job is not None and job.client is peer:
            self._background.run("http-cancel", self._dispatcher.cancel(peer, peer.guid))

    def sweep(self) -> None:
        """Cancel the intents of waiting requests whose connection closed, and end
        the ones a later request with the same Idempotency-Key took over."""
        jobs = self._dispatcher.jobs
        for peer in list(self._waiting):
            if peer.gone():
                self.hang_up(peer)
                continue
            job = jobs.get(peer.guid)
            if job is not None and job.client is not peer and not peer.ended:
                self._waiting.discard(peer)
                peer.supersede()


def _guid(address: str, idempotency_key: str | None) -> str:
    """The intent's guid: derived from the user and the Idempotency-Key (so a
    repeat is recognised, and two users' keys never collide), else random."""
    if idempotency_key is None:
        return "http-" + secrets.token_hex(16)
    if not 1 <= len(idempotency_key) <= MAX_IDEMPOTENCY_KEY:
        raise ApiError(
            "bad_params", f"Idempotency-Key must be 1..{MAX_IDEMPOTENCY_KEY} characters", "send a UUID",
            "Idempotency-Key",
        )
    return "http-" + hashlib.sha256(f"{address.lower()}\n{idempotency_key}".encode()).hexdigest()[:40]

