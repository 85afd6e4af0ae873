"""The MTOR bus protocol: every message that crosses a WebSocket, in one place.

Frames are JSON text, one message per frame, tagged by ``type``. The client,
the worker and the broker all import this module and nothing else of each
other. Decoding goes through msgspec so that a malformed frame is rejected with
a precise reason (``Expected `str`, got `int` - at `$.prompt` ``) instead of a
KeyError deep inside a handler.

Message names follow the original RENT-A-HAL bus where it had one
(``submit_query``, ``work``, ``result``, ``ping``/``pong``, ``guid``).

The handshake signature scheme lives here too, because both ends of every
socket must agree on it byte for byte: the broker sends ``challenge{nonce}``,
the peer answers with an EIP-191 personal-sign signature of
:func:`challenge_text`, and the broker recovers the address from it.
"""

from __future__ import annotations

import sys
from typing import Annotated, Any, Literal

import msgspec
import orjson

PROTOCOL_VERSION = 1

# Stable error codes. Clients switch on these; never rename one.
ERROR_CODES: dict[str, str] = {
    "invalid_json": "The frame is not valid JSON.",
    "invalid_message": "The frame is JSON but not a valid message (missing or mistyped field).",
    "unknown_type": "The frame's `type` is not a message this socket accepts.",
    "frame_too_large": "The frame is larger than the broker accepts.",
    "binary_frame": "Binary frames are not accepted; send JSON text.",
    "not_authenticated": "Send `hello` (or `register`) with a signed challenge first.",
    "login_timeout": "No signed `hello` (or `register`) arrived in time; the socket is closed.",
    "busy": "Too many connections are logging in (from this address, or in all); retry in a moment.",
    "bad_signature": "The signature does not match the address or the challenge.",
    "unknown_intent": "No such intent.",
    "prompt_too_long": "The prompt is longer than the broker accepts.",
    "bad_attachment": "An attachment is missing, corrupt, of the wrong kind or too large.",
    "bad_params": "A parameter is out of range.",
    "no_worker": "No connected worker can serve this intent or model.",
    "queue_full": "The queue for this intent is full.",
    "duplicate_guid": "That guid belongs to another user or another request.",
    "unknown_guid": "No intent with that guid.",
    "cancelled": "The intent was cancelled.",
    "timeout": "No worker finished the intent in time.",
    "worker_failed": "The worker could not complete the intent.",
    "insufficient_funds": "The balance does not cover the price.",
    "bad_authorisation": "A paid realm needs the payer's signed spending authorisation covering the query.",
    "exit_pending": "The payer started leaving the realm: no new spending until the exit ends.",
    "price_exceeded": "The price is above the request's max_price.",
    "rate_limited": "Too many requests; retry later.",
    "banned": "This address is banned from the realm.",
    "forbidden": "Only a sysop (or the realm's operator) may do that.",
    "maintenance": "The worker is in maintenance: it gets no new work until a sysop resumes it.",
    "worker_stopping": "The worker is shutting down and handed the intent back; another worker runs it.",
    "nickname_taken": "That nickname belongs to another address.",
    "internal": "The broker hit an unexpected error.",
    "unavailable": "The realm's database or engine did not answer; retry in a moment (the same guid is safe).",
    "upstream_unavailable": "A service the worker relies on (a weather API, a mail server) did not answer or refused.",
    "login_failed": "The mail server refused the login.",
    "not_configured": "The intent needs a setting the person has not made yet (an email account, a place).",
    "not_found": "Nothing matches what the request names (a place, a contact).",
    # Between realms (/ws/realm; docs/federation.md).
    "not_peer": "The realm is not a pinned peer of this one (both must add each other), or the frame is for another realm.",
    "frame_expired": "A realm frame's timestamp is outside the accepted window.",
    "frame_replayed": "A realm frame's nonce was already seen.",
    "peer_credit_exceeded": "The peer realm's unsettled charges are at its credit limit: settle, then retry.",
}

# Codes a worker reports for a request it cannot serve as asked. The broker
# passes them to the client as they are (any other failure is worker_failed):
# they tell the person what to change, and no other worker would do better.
REQUEST_ERROR_CODES = frozenset(
    {
        "bad_params",
        "bad_attachment",
        "prompt_too_long",
        "upstream_unavailable",
        "login_failed",
        "not_configured",
        "not_found",
        # A peer realm serving the intent refuses more credit: the asker's realm must settle.
        "peer_credit_exceeded",
    }
)

ATTACHMENT_KINDS = ("image", "audio")

# Frames and bodies from other machines are refused beyond this nesting depth
# before any recursive decoder sees them (orjson's own fixed bound, which it
# checks without recursing in Python).
MAX_NESTING = 1024
# Python's recursion limit for our processes. py_ecc (imported by eth_account)
# raises it to 100000 at import; then recursive C code (msgspec, json) runs
# off the end of the C stack on a deeply nested frame and the process dies
# with SIGSEGV instead of raising RecursionError. ~20,000 levels already fill
# an 8 MiB stack; 10,000 leaves room and is 10x Python's default.
SANE_RECURSION_LIMIT = 10_000


def sane_recursion_limit() -> None:
    """Put Python's recursion limit back to a sane value if an import raised it."""
    if sys.getrecursionlimit() > SANE_RECURSION_LIMIT:
        sys.setrecursionlimit(SANE_RECURSION_LIMIT)


def _eth() -> Any:
    """eth_account's ``Account``, imported with the recursion limit put back."""
    from eth_account import Account

    sane_recursion_limit()
    return Account


def _defunct(text: str) -> Any:
    from eth_account.messages import encode_defunct

    return encode_defunct(text=text)


def check_nesting(data: str | bytes) -> None:
    """Raise ``msgspec.DecodeError`` for JSON nested deeper than MAX_NESTING.

    A frame with no more openers than the bound cannot be nested deeper, so
    nearly every frame costs a length check or two counts, and no parse."""
    if len(data) <= MAX_NESTING:
        return
    openers = data.count("[") + data.count("{") if isinstance(data, str) else data.count(b"[") + data.count(b"{")
    if openers <= MAX_NESTING:
        return
    try:
        orjson.loads(data)
    except orjson.JSONDecodeError as exc:
        raise msgspec.DecodeError(f"invalid or too deeply nested JSON (at most {MAX_NESTING} levels): {exc}") from None


def loads(data: str | bytes) -> Any:
    """JSON from another machine (REST bodies and answers): depth-bounded, and
    integers of any size read exactly. Raises ValueError when it is not JSON."""
    try:
        check_nesting(data)
        return msgspec.json.decode(data)
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ValueError(f"invalid JSON: {exc}") from None


# Above this, a JSON number loses precision in JavaScript (and every client
# that reads numbers as IEEE doubles); REST writes such integers as strings.
MAX_SAFE_INTEGER = 2**53 - 1


def rest_json(data: Any) -> bytes:
    """A REST body: JSON with every integer beyond MAX_SAFE_INTEGER written as a
    decimal string (amounts in base units usually are), so no client loses
    precision; read amounts with int() / BigInt(), which take both forms."""
    return _encoder.encode(_safe_integers(data))


def _safe_integers(value: Any) -> Any:
    if isinstance(value, dict):
        return {k: _safe_integers(v) for k, v in value.items()}
    if isinstance(value, (list, tuple)):
        return [_safe_integers(v) for v in value]
    if isinstance(value, int) and not isinstance(value, bool) and not -MAX_SAFE_INTEGER <= value <= MAX_SAFE_INTEGER:
        return str(value)
    return value


def challenge_text(nonce: str, role: str) -> str:
    """The exact text a peer signs to prove it holds its key.

    ``role`` ("client" or "worker") is part of the text so that a signature
    captured on one socket cannot be replayed on the other.
    """
    return f"MTOR {role} login\nnonce: {nonce}"


def sign_challenge(private_key: bytes | str, nonce: str, role: str) -> str:
    """EIP-191 personal-sign of :func:`challenge_text`; returns 0x-hex."""
    signed = _eth().sign_message(_defunct(challenge_text(nonce, role)), private_key)
    return "0x" + signed.signature.hex().removeprefix("0x")


def recover_signer(nonce: str, role: str, signature: str) -> str | None:
    """The checksummed address that signed the challenge, or None if unreadable."""
    account = _eth()
    try:
        return str(account.recover_message(_defunct(challenge_text(nonce, role)), signature=signature))
    except Exception:  # eth-account raises several types for malformed signatures
        return None


def request_text(method: str, path: str, timestamp: int, nonce: str, body: bytes = b"") -> str:
    """The exact text a signed REST request signs (headers X-MTOR-Address,
    X-MTOR-Timestamp, X-MTOR-Nonce, X-MTOR-Signature): method, path with query,
    unix time, a fresh random nonce and the body's SHA-256, so a signature is
    good for one request only."""
    import hashlib

    digest = hashlib.sha256(body).hexdigest()
    return f"MTOR request\n{method.upper()} {path}\n{timestamp}\n{nonce}\n{digest}"


def sign_request(
    private_key: bytes | str, method: str, path: str, timestamp: int, nonce: str, body: bytes = b""
) -> str:
    """EIP-191 personal-sign of :func:`request_text`; returns 0x-hex."""
    signed = _eth().sign_message(_defunct(request_text(method, path, timestamp, nonce, body)), private_key)
    return "0x" + signed.signature.hex().removeprefix("0x")


def recover_request_signer(
    method: str, path: str, timestamp: int, nonce: str, body: bytes, signature: str
) -> str | None:
    """The checksummed address that signed the request, or None if unreadable."""
    account = _eth()
    try:
        return str(
            account.recover_message(_defunct(request_text(method, path, timestamp, nonce, body)), signature=signature)
        )
    except Exception:  # eth-account raises several types for malformed signatures
        return None


class Msg(msgspec.Struct, tag_field="type", forbid_unknown_fields=False, omit_defaults=True):
    """Base of every message; ``type`` is the tag."""


# --- shared pieces ---------------------------------------------------------


class Attachment(msgspec.Struct, omit_defaults=True):
    """A file riding along with a query or a result, base64 in ``data``."""

    kind: str  # "image" | "audio"
    data: str  # base64
    mime: str = "application/octet-stream"
    name: str | None = None


# What a worker may claim one job used. A count outside these bounds is a bug
# or a lie (a negative count would pay the user, a huge one would bill them
# everything they hold), so a `result` carrying one is refused at the socket
# as `invalid_message` before anything is charged for it.
MAX_TOKENS_USED = 10_000_000  # prompt or completion tokens of one job
MAX_IMAGES_USED = 1_000
MAX_STEPS_USED = 100_000
MAX_PIXELS_USED = 1 << 32  # all images of one job together
MAX_AUDIO_SECONDS_USED = 24 * 3600
MAX_CHARACTERS_USED = 10_000_000

_Tokens = Annotated[int, msgspec.Meta(ge=0, le=MAX_TOKENS_USED)]


class Usage(msgspec.Struct, omit_defaults=True):
    """What one job used, as the worker reports it and the ledger prices it.

    A field a backend does not measure stays None (left out on the wire), so
    "not reported" never reads as "used none". Unknown keys are ignored.
    """

    prompt_tokens: _Tokens | None = None
    completion_tokens: _Tokens | None = None
    images: Annotated[int, msgspec.Meta(ge=0, le=MAX_IMAGES_USED)] | None = None
    steps: Annotated[int, msgspec.Meta(ge=0, le=MAX_STEPS_USED)] | None = None
    pixels: Annotated[int, msgspec.Meta(ge=0, le=MAX_PIXELS_USED)] | None = None
    audio_seconds: Annotated[int, msgspec.Meta(ge=0, le=MAX_AUDIO_SECONDS_USED)] | None = None
    characters: Annotated[int, msgspec.Meta(ge=0, le=MAX_CHARACTERS_USED)] | None = None

    def reported(self) -> dict[str, int]:
        """The fields the worker reported, by name (what `Billing.capture` receives)."""
        return {f: v for f in self.__struct_fields__ if (v := getattr(self, f)) is not None}


class Capability(msgspec.Struct, omit_defaults=True):
    """One intent a worker serves, with the models it has loaded for it.

    ``params`` is a JSON Schema object of the parameters the backend accepts
    (its declared ``Params``); ``info`` holds facts that are not parameters
    (context length, size limits, the device). ``slots``: at most this many
    jobs of this intent at once (a worker serving several intents says it
    per intent; None: the worker's ``slots`` alone bound it)."""

    intent: str
    models: list[str] = []
    params: dict[str, Any] = {}
    info: dict[str, Any] = {}
    slots: int | None = None
    # Serve only the worker's own address: jobs acting on the owner's private
    # accounts (email) must never reach a stranger's worker.
    owner_only: bool = False


# --- client -> broker ------------------------------------------------------


class Hello(Msg, tag="hello"):
    address: str
    signature: str
    nonce: str
    client: str = "mtor"


class Authorisation(msgspec.Struct):
    """A payer's signed cumulative spending authorisation for a paid realm: "the realm may
    take up to ``total`` base units from my deposit, in all", the EIP-712 struct
    ``Spend(address payer, uint256 total)`` under the domain of the realm's RealmLedger
    (``Welcome.ledger``). ``signature`` is 0x-hex of 65 bytes r || s || v. See docs/ledger.md."""

    total: Annotated[int, msgspec.Meta(ge=0)]  # below 2**256: the ledger refuses more
    signature: Annotated[str, msgspec.Meta(max_length=132)]


class SubmitQuery(Msg, tag="submit_query"):
    guid: str
    prompt: str = ""
    intent: str | None = None  # None: the broker's recogniser decides
    model: str | None = None
    attachments: list[Attachment] = []
    params: dict[str, Any] = {}
    stream: bool = True
    max_price: int | None = None  # base units of $9000
    # The asker's settings by intent ({"weather": {"location": "Oslo"}}): once the
    # intent is chosen its own become params and the rest are dropped.
    settings: dict[str, dict[str, Any]] = {}
    # Resubmitting a guid after a reconnect: the run and the characters of its
    # text this client already has, so the stream continues exactly there.
    resume_run: int = 0
    resume_offset: int = 0
    # Let a peer realm that serves this intent see the asker's address (it
    # never does otherwise: docs/federation.md says what a peer sees).
    share_address: bool = False
    authorisation: Authorisation | None = None  # required by a paid realm


class Cancel(Msg, tag="cancel"):
    guid: str


class Subscribe(Msg, tag="subscribe"):
    topics: list[str] = msgspec.field(
        default_factory=lambda: ["stats", "workers", "queue", "intents", "ledger"]
    )


class Ping(Msg, tag="ping"):
    nonce: str = ""
    ts: float = 0.0


class Pong(Msg, tag="pong"):
    nonce: str = ""
    ts: float = 0.0


# --- broker -> client ------------------------------------------------------


class Challenge(Msg, tag="challenge"):
    nonce: str
    realm: str = "mtor"
    protocol: int = PROTOCOL_VERSION


class LedgerTerms(msgspec.Struct):
    """What a paid realm's client signs its authorisations for: the chain and the
    RealmLedger contract (the EIP-712 domain), what the address has already
    committed (spent plus held), which a new authorisation's total must cover,
    and what each intent holds with default parameters, to add for a query."""

    chain_id: int
    contract: str
    committed: int = 0
    quotes: dict[str, int] = {}  # intent -> what it holds with default parameters


class Welcome(Msg, tag="welcome"):
    """Sent after a good hello/register: the identity the broker accepted."""

    address: str
    realm: str = "mtor"
    worker_id: str | None = None
    ledger: LedgerTerms | None = None  # a paid realm's, to clients


class Routing(msgspec.Struct, omit_defaults=True):
    """Why a query that named no intent went where it went (see broker.routing)."""

    source: str  # "rule:imagine:verb", "prototype:vision", "only-chat", "fallback:chat"
    score: float = 1.0  # 1 for a rule; the nearest prototype's similarity otherwise
    prototype: str | None = None  # the nearest prototype phrasing, when the embedding stage ran
    recognised: str | None = None  # what recognition chose, when the query went elsewhere (a fallback)
    note: str = ""  # for the person, e.g. "no worker serves tts in this realm, so chat answers instead"


class Accepted(Msg, tag="accepted"):
    guid: str
    intent: str
    position: int = 0
    price_held: int = 0
    routing: Routing | None = None  # set when the broker chose the intent


class Token(Msg, tag="token"):
    """A piece of streamed text. ``index`` numbers a worker's tokens; the broker
    adds ``run`` (which run of the intent produced it: a retry elsewhere or a
    broker restart starts a new run, from offset 0) and ``offset`` (characters
    of that run's text before this piece), so a client can resume exactly."""

    guid: str
    text: str
    index: int = 0
    offset: int = 0
    run: int = 0


class Progress(Msg, tag="progress"):
    guid: str
    step: int
    total: int
    message: str = ""
    preview: Attachment | None = None


class Result(Msg, tag="result"):
    guid: str
    intent: str
    text: str | None = None
    attachments: list[Attachment] = []
    worker: str | None = None
    model: str | None = None
    timings: dict[str, float] = {}
    usage: Usage = msgspec.field(default_factory=Usage)
    finish_reason: str | None = None  # "stop" | "length" | "cancelled" where the backend says
    cost: int = 0
    replayed: bool = False  # True when served from the journal for a resubmitted guid
    data: dict[str, Any] = {}  # the answer as numbers and fields (weather, email), beside the spoken text


class Error(Msg, tag="error"):
    code: str
    message: str
    hint: str = ""
    guid: str | None = None
    detail: dict[str, Any] = {}
    retry_after: float | None = None  # seconds, with `rate_limited`


class Stats(Msg, tag="stats"):
    """A pushed snapshot or change for subscribers (the TUI)."""

    topic: str
    data: dict[str, Any] = {}


class Broadcast(Msg, tag="broadcast"):
    message: str
    sender: str = "sysop"


# --- worker -> broker ------------------------------------------------------


class Register(Msg, tag="register"):
    address: str
    signature: str
    nonce: str
    capabilities: list[Capability]
    slots: int = 1
    name: str = ""
    version: str = ""


class WorkResult(Msg, tag="result"):
    guid: str
    text: str | None = None
    attachments: list[Attachment] = []
    model: str | None = None
    timings: dict[str, float] = {}
    usage: Usage = msgspec.field(default_factory=Usage)
    finish_reason: str | None = None  # why generation ended: "stop" (end of text) or "length" (max_tokens)
    data: dict[str, Any] = {}


class Failed(Msg, tag="failed"):
    guid: str
    code: str
    message: str
    retryable: bool = True
    hint: str = ""


class Drain(Msg, tag="drain"):
    """The worker is shutting down: send it no new work. It finishes what it
    runs, or hands an intent back with `failed{code: "worker_stopping"}`;
    neither counts against it."""


# --- broker -> worker ------------------------------------------------------


class Work(Msg, tag="work"):
    guid: str
    intent: str
    prompt: str = ""
    model: str | None = None
    attachments: list[Attachment] = []
    params: dict[str, Any] = {}
    stream: bool = True


# --- realm <-> realm (/ws/realm; docs/federation.md) -----------------------
#
# Every frame between realms is a RealmEnvelope: the inner frames (JSON
# objects, kept byte for byte) signed by the sending realm's key over its
# origin, destination, timestamp and nonce (broker.federation.envelope).
# The realm that dials is the origin: it forwards intents; the realm it dials
# serves them from its pool and answers with results and signed receipts.


class RealmEnvelope(Msg, tag="realm"):
    origin: str  # the sender's realm address
    dest: str  # the receiver's realm address
    ts: int  # unix milliseconds
    nonce: str
    frames: list[msgspec.Raw]
    sig: str  # 0x + 65 bytes: r, s, recovery id


class RealmHello(Msg, tag="realm_hello"):
    """Origin -> serving realm, the first frame of a connection."""

    realm: str  # the origin's name
    protocol: int = PROTOCOL_VERSION
    version: str = ""


class Pool(Msg, tag="pool"):
    """Serving realm -> origin: what its pool serves and how much of it the origin may use now."""

    capabilities: list[Capability] = []
    slots: int = 0  # every healthy local worker's slots
    free: int = 0  # free slots now
    room: int = 0  # intents of the origin's it takes now without refusing (free slots + queue room)
    credit_limit: int = 0  # base units the origin may owe unsettled
    credit_used: int = 0  # what it owes unsettled, with intents in flight


class RealmWelcome(Msg, tag="realm_welcome"):
    realm: str  # the serving realm's name
    pool: Pool = msgspec.field(default_factory=Pool)


class Forward(Msg, tag="forward"):
    """An intent the origin forwards: only what the intent needs."""

    guid: str  # the origin's forward id (not its user's guid)
    intent: str
    prompt: str = ""
    model: str | None = None
    attachments: list[Attachment] = []
    params: dict[str, Any] = {}
    stream: bool = True
    max_price: int | None = None  # the most the origin pays for it (base units)
    user: str | None = None  # the asker's address, only when the asker opted in


class Receipt(Msg, tag="receipt"):
    """Serving realm -> origin, after a forwarded intent's result: what it charged."""

    guid: str
    worker: str
    cost: int
    seq: int  # 1, 2, 3 ... per origin
    total: int  # the cost of every receipt to this origin so far


class Ack(Msg, tag="ack"):
    """Origin -> serving realm: the receipts it accepted, as a signed cumulative total."""

    seq: int  # receipts processed up to this one
    total: int  # the accepted receipts' cost, in all (never decreases)
    disputed: list[str] = []  # receipts refused at audit since the last ack, by guid
    # Where the origin's realm escrow is (its RealmLedger) and its EIP-712 signature of
    # RealmSpend(origin, this realm, total) there: what this realm claims on chain with.
    # None for an origin without a deployed ledger (it cannot be settled on chain).
    chain_id: int | None = None
    contract: str | None = None
    signature: str | None = None


class Telemetry(Msg, tag="telemetry"):
    """Serving realm -> origin, every few seconds: the health it sees of itself."""

    workers: int = 0
    served: int = 0  # intents completed since it started
    failed: int = 0
    median_latency_ms: float | None = None  # of its workers' recent jobs
    error_rate: float = 0.0  # failed / finished over the last interval
    queued: int = 0


# --- unions, one per direction --------------------------------------------

ClientMessage = Hello | SubmitQuery | Cancel | Subscribe | Ping | Pong
ServerToClient = (
    Challenge | Welcome | Accepted | Token | Progress | Result | Error | Stats | Broadcast | Ping | Pong
)
WorkerMessage = Register | Pong | Ping | Token | Progress | WorkResult | Failed | Drain
ServerToWorker = Challenge | Welcome | Work | Cancel | Ping | Pong | Error | Broadcast

TYPES_FROM_CLIENT = frozenset(("hello", "submit_query", "cancel", "subscribe", "ping", "pong"))
TYPES_FROM_WORKER = frozenset(("register", "pong", "ping", "token", "progress", "result", "failed", "drain"))
# Inside realm envelopes: from the origin, and from the serving realm.
OriginMessage = RealmHello | Forward | Cancel | Ack | Ping | Pong
ServingMessage = RealmWelcome | Pool | Token | Progress | Result | Receipt | Error | Telemetry | Ping | Pong

_encoder = msgspec.json.Encoder()


def encode(msg: Msg) -> bytes:
    return _encoder.encode(msg)


def encode_str(msg: Msg) -> str:
    return _encoder.encode(msg).decode()


class MtorError(Exception):
    """The project's one error type: a stable ``code`` that programs switch on
    (one of ERROR_CODES on the bus), a ``message`` saying what went wrong and
    a ``hint`` saying what to do, plus optional ``detail`` for programs.
    Every package raises it or a subclass named for where it comes from."""

    def __init__(self, code: str, message: str, hint: str = "", **detail: Any) -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint
        self.detail = detail

    def __str__(self) -> str:
        return f"{self.message} [{self.code}]" + (f" - hint: {self.hint}" if self.hint else "")

    def to_error(self, guid: str | None = None) -> Error:
        """This error as the bus's `error` message."""
        return Error(code=self.code, message=self.message, hint=self.hint, guid=guid, detail=dict(self.detail))

    def to_dict(self) -> dict[str, Any]:
        """This error as REST bodies carry it: ``{"code", "message", "hint"}`` (and ``detail``)."""
        out: dict[str, Any] = {"code": self.code, "message": self.message, "hint": self.hint}
        if self.detail:
            out["detail"] = self.detail
        return out


class Unavailable(MtorError):
    """A store the realm needs (its database or its engine) does not answer
    now; ``code`` is ``unavailable`` (retry) or ``unreachable`` (at start)."""


class ProtocolError(MtorError):
    """A frame could not be decoded; ``kind`` is its `type` and ``guid`` its
    guid, where the frame was readable enough to say."""

    kind: str | None = None
    guid: str | None = None


class Decoder:
    """Decodes one direction's frames and maps every failure to a stable code."""

    def __init__(self, union: Any, accepted_types: frozenset[str]) -> None:
        self._typed = msgspec.json.Decoder(union)
        self._raw = msgspec.json.Decoder(dict[str, Any])
        self._types = accepted_types

    def decode(self, frame: str | bytes) -> Any:
        try:
            check_nesting(frame)
            return self._typed.decode(frame)
        except msgspec.ValidationError as exc:
            raise self._explain(frame, exc) from None
        except (msgspec.DecodeError, RecursionError) as exc:
            raise ProtocolError(
                "invalid_json", f"invalid JSON: {exc}", "send one JSON object per text frame"
            ) from None

    def _explain(self, frame: str | bytes, exc: msgspec.ValidationError) -> ProtocolError:
        try:
            raw = self._raw.decode(frame)
        except (msgspec.ValidationError, msgspec.DecodeError, RecursionError):
            return ProtocolError(
                "invalid_message", "a frame must be a JSON object", 'e.g. {"type": "ping"}'
            )
        kind = raw.get("type")
        if not isinstance(kind, str) or kind not in self._types:
            error = ProtocolError(
                "unknown_type",
                f"unknown message type {kind!r}",
                "accepted types: " + ", ".join(sorted(self._types)),
            )
        else:
            error = ProtocolError("invalid_message", f"bad {kind!r} message: {exc}", "see docs/protocol.md")
            error.kind = kind
        guid = raw.get("guid")
        error.guid = guid if isinstance(guid, str) else None
        return error


def client_decoder() -> Decoder:
    """Decoder for frames a client sends (the broker's /ws/client side)."""
    return Decoder(ClientMessage, TYPES_FROM_CLIENT)


def worker_decoder() -> Decoder:
    """Decoder for frames a worker sends (the broker's /ws/worker side)."""
    return Decoder(WorkerMessage, TYPES_FROM_WORKER)


class PeerDecoder:
    """Decodes the broker's frames on a client or worker: like msgspec's
    decoder (it raises msgspec errors), but depth-bounded first."""

    def __init__(self, union: Any) -> None:
        self._typed = msgspec.json.Decoder(union)

    def decode(self, frame: str | bytes) -> Any:
        check_nesting(frame)
        try:
            return self._typed.decode(frame)
        except RecursionError as exc:
            raise msgspec.DecodeError(str(exc)) from None


def realm_envelope_decoder() -> PeerDecoder:
    return PeerDecoder(RealmEnvelope)


def origin_decoder() -> PeerDecoder:
    """Inner frames a serving realm receives."""
    return PeerDecoder(OriginMessage)


def serving_decoder() -> PeerDecoder:
    """Inner frames an origin realm receives."""
    return PeerDecoder(ServingMessage)


def server_to_client_decoder() -> PeerDecoder:
    return PeerDecoder(ServerToClient)


def server_to_worker_decoder() -> PeerDecoder:
    return PeerDecoder(ServerToWorker)


Role = Literal["client", "worker"]
