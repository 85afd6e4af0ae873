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

from typing import Any, Literal

import msgspec

PROTOCOL_VERSION = 1

# Stable error codes. Clients switch on these; never rename one.
ERROR_CODES: dict[str, str] = {
    "invalid_json": "The frame is not valid JSON.",
    "invalid_message": "The frame is JSON but not a valid message (missing or mistyped field).",
    "unknown_type": "The frame's `type` is not a message this socket accepts.",
    "frame_too_large": "The frame is larger than the broker accepts.",
    "binary_frame": "Binary frames are not accepted; send JSON text.",
    "not_authenticated": "Send `hello` (or `register`) with a signed challenge first.",
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
    "price_exceeded": "The price is above the request's max_price.",
    "rate_limited": "Too many requests; retry later.",
    "banned": "This address is banned from the realm.",
    "forbidden": "Only a sysop (or the realm's operator) may do that.",
    "maintenance": "The worker is in maintenance: it gets no new work until a sysop resumes it.",
    "nickname_taken": "That nickname belongs to another address.",
    "internal": "The broker hit an unexpected error.",
    "upstream_unavailable": "A service the worker relies on (a weather API, a mail server) did not answer or refused.",
    "login_failed": "The mail server refused the login.",
    "not_configured": "The intent needs a setting the person has not made yet (an email account, a place).",
    "not_found": "Nothing matches what the request names (a place, a contact).",
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
    }
)

ATTACHMENT_KINDS = ("image", "audio")


def challenge_text(nonce: str, role: str) -> str:
    """The exact text a peer signs to prove it holds its key.

    ``role`` ("client" or "worker") is part of the text so that a signature
    captured on one socket cannot be replayed on the other.
    """
    return f"MTOR {role} login\nnonce: {nonce}"


def sign_challenge(private_key: bytes | str, nonce: str, role: str) -> str:
    """EIP-191 personal-sign of :func:`challenge_text`; returns 0x-hex."""
    from eth_account import Account
    from eth_account.messages import encode_defunct

    signed = Account.sign_message(encode_defunct(text=challenge_text(nonce, role)), private_key)
    return "0x" + signed.signature.hex().removeprefix("0x")


def recover_signer(nonce: str, role: str, signature: str) -> str | None:
    """The checksummed address that signed the challenge, or None if unreadable."""
    from eth_account import Account
    from eth_account.messages import encode_defunct

    try:
        return Account.recover_message(
            encode_defunct(text=challenge_text(nonce, role)), signature=signature
        )
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
    from eth_account import Account
    from eth_account.messages import encode_defunct

    text = request_text(method, path, timestamp, nonce, body)
    signed = Account.sign_message(encode_defunct(text=text), private_key)
    return "0x" + signed.signature.hex().removeprefix("0x")


def recover_request_signer(
    method: str, path: str, timestamp: int, nonce: str, body: bytes, signature: str
) -> str | None:
    """The checksummed address that signed the request, or None if unreadable."""
    from eth_account import Account
    from eth_account.messages import encode_defunct

    try:
        return Account.recover_message(
            encode_defunct(text=request_text(method, path, timestamp, nonce, body)), signature=signature
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


class Capability(msgspec.Struct, omit_defaults=True):
    """One intent a worker serves, with the models it has loaded for it."""

    intent: str
    models: list[str] = []
    params: dict[str, Any] = {}
    # Serve only the worker's own address: jobs acting on the owner's private
    # accounts (email) must never reach a stranger's worker.
    owner_only: bool = False


# --- client -> broker ------------------------------------------------------


class Hello(Msg, tag="hello"):
    address: str
    signature: str
    nonce: str
    client: str = "mtor"


class SubmitQuery(Msg, tag="submit_query"):
    guid: str
    prompt: str = ""
    intent: str | None = None  # None: the broker's recogniser decides
    model: str | None = None
    attachments: list[Attachment] = []
    params: dict[str, Any] = {}
    stream: bool = True
    max_price: int | None = None  # base units of $9000


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


class Welcome(Msg, tag="welcome"):
    """Sent after a good hello/register: the identity the broker accepted."""

    address: str
    realm: str = "mtor"
    worker_id: str | None = None


class Accepted(Msg, tag="accepted"):
    guid: str
    intent: str
    position: int = 0
    price_held: int = 0


class Token(Msg, tag="token"):
    guid: str
    text: str
    index: int = 0


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
    usage: dict[str, int] = {}
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
    usage: dict[str, int] = {}
    data: dict[str, Any] = {}


class Failed(Msg, tag="failed"):
    guid: str
    code: str
    message: str
    retryable: bool = True
    hint: str = ""


# --- broker -> worker ------------------------------------------------------


class Work(Msg, tag="work"):
    guid: str
    intent: str
    prompt: str = ""
    model: str | None = None
    attachments: list[Attachment] = []
    params: dict[str, Any] = {}
    stream: bool = True
    deadline_s: float = 0.0


# --- unions, one per direction --------------------------------------------

ClientMessage = Hello | SubmitQuery | Cancel | Subscribe | Ping | Pong
ServerToClient = (
    Challenge | Welcome | Accepted | Token | Progress | Result | Error | Stats | Broadcast | Ping | Pong
)
WorkerMessage = Register | Pong | Ping | Token | Progress | WorkResult | Failed
ServerToWorker = Challenge | Welcome | Work | Cancel | Ping | Pong | Error | Broadcast

TYPES_FROM_CLIENT = frozenset(("hello", "submit_query", "cancel", "subscribe", "ping", "pong"))
TYPES_FROM_WORKER = frozenset(("register", "pong", "ping", "token", "progress", "result", "failed"))

_encoder = msgspec.json.Encoder()


def encode(msg: Msg) -> bytes:
    return _encoder.encode(msg)


def encode_str(msg: Msg) -> str:
    return _encoder.encode(msg).decode()


class ProtocolError(Exception):
    """A frame could not be decoded; ``code`` is one of ERROR_CODES."""

    def __init__(self, code: str, message: str, hint: str = "") -> None:
        super().__init__(message)
        self.code = code
        self.message = message
        self.hint = hint

    def to_error(self, guid: str | None = None) -> Error:
        return Error(code=self.code, message=self.message, hint=self.hint, guid=guid)


class Decoder:
    """Decodes one direction's frames and maps every failure to a stable code."""

    def __init__(self, union: Any, accepted_types: frozenset[str]) -> None:
        self._typed = msgspec.json.Decoder(union)
        self._raw = msgspec.json.Decoder(dict[str, Any])
        self._types = accepted_types

    def decode(self, frame: str | bytes) -> Any:
        try:
            return self._typed.decode(frame)
        except msgspec.ValidationError as exc:
            raise self._explain(frame, exc) from None
        except msgspec.DecodeError as exc:
            raise ProtocolError(
                "invalid_json", f"invalid JSON: {exc}", "send one JSON object per text frame"
            ) from None

    def _explain(self, frame: str | bytes, exc: msgspec.ValidationError) -> ProtocolError:
        try:
            raw = self._raw.decode(frame)
        except (msgspec.ValidationError, msgspec.DecodeError):
            return ProtocolError(
                "invalid_message", "a frame must be a JSON object", 'e.g. {"type": "ping"}'
            )
        kind = raw.get("type")
        if not isinstance(kind, str) or kind not in self._types:
            return ProtocolError(
                "unknown_type",
                f"unknown message type {kind!r}",
                "accepted types: " + ", ".join(sorted(self._types)),
            )
        return ProtocolError(
            "invalid_message", f"bad {kind!r} message: {exc}", "see docs/protocol.md"
        )

    @staticmethod
    def guid_of(frame: str | bytes) -> str | None:
        """Best-effort guid of a frame that failed to decode, so the error can name it."""
        try:
            raw = msgspec.json.decode(frame)
        except msgspec.DecodeError:
            return None
        guid = raw.get("guid") if isinstance(raw, dict) else None
        return guid if isinstance(guid, str) else None


def client_decoder() -> Decoder:
    """Decoder for frames a client sends (the broker's /ws/client side)."""
    return Decoder(ClientMessage, TYPES_FROM_CLIENT)


def worker_decoder() -> Decoder:
    """Decoder for frames a worker sends (the broker's /ws/worker side)."""
    return Decoder(WorkerMessage, TYPES_FROM_WORKER)


def server_to_client_decoder() -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(ServerToClient)


def server_to_worker_decoder() -> msgspec.json.Decoder[Any]:
    return msgspec.json.Decoder(ServerToWorker)


Role = Literal["client", "worker"]
