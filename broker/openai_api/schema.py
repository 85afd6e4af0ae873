"""The OpenAI-compatible API's bodies, one msgspec Struct each.

The handlers decode requests and encode answers with exactly these types, and
/openapi.json is generated from them (broker/openai_api/openapi.py), so the
document cannot drift from what the realm does. Fields a request may carry
that the realm does not use are not declared: they are ignored (docs/openai.md
lists them). Fields declared here are used, or declared with the only values
the realm can honour (``tools`` empty, ``logprobs`` false, JSON mode off), so
any other value is a 400 naming the field and the schema says so too
(:data:`REFUSED` words the message).

Extensions (all optional): ``max_price`` (base units of $9000; the
``X-MTOR-Max-Price`` header says the same), and an ``mtor`` object in answers
with the intent's guid, worker and cost.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

import msgspec
from msgspec import Meta, Struct

# Base units of $9000 (18 decimals) overflow JSON's safe integers, so a price
# may also come as a string of digits.
Price = Annotated[int, Meta(ge=0)] | Annotated[str, Meta(pattern=r"^[0-9]{1,78}$")]
Temperature = Annotated[float, Meta(ge=0.0, le=2.0)]
TopP = Annotated[float, Meta(ge=0.0, le=1.0)]
OnlyOne = Annotated[int, Meta(ge=1, le=1, description="only 1: one answer per request")]
MaxTokens = Annotated[int, Meta(ge=1)]
Stop = Annotated[str, Meta(min_length=1)] | Annotated[list[Annotated[str, Meta(min_length=1)]], Meta(max_length=4)]


# --- errors ----------------------------------------------------------------------


class ErrorBody(Struct):
    message: str
    type: str  # invalid_request_error, authentication_error, rate_limit_error, ...
    param: str | None = None  # the request field at fault, e.g. "messages[0].role"
    code: str | None = None  # MTOR's stable code (docs/protocol.md, docs/openai.md)
    hint: str = ""  # what to do about it


class ErrorResponse(Struct):
    """Every error, with the HTTP status that fits it (docs/openai.md)."""

    error: ErrorBody


# --- shared ----------------------------------------------------------------------


class Usage(Struct):
    prompt_tokens: int = 0
    completion_tokens: int = 0
    total_tokens: int = 0


class MtorInfo(Struct):
    """Where the realm ran the request (an extension; clients may ignore it)."""

    guid: str  # the intent's id: `mtor history show GUID`
    intent: str
    worker: str | None = None
    cost: str = "0"  # base units of $9000 charged, as a decimal string
    replayed: bool = False  # answered from the journal for a repeated Idempotency-Key


class StreamOptions(Struct):
    include_usage: bool = False


# --- chat ------------------------------------------------------------------------


class ImageURL(Struct):
    url: Annotated[str, Meta(pattern=r"^data:[^,]*;base64,", description="a data: URL (data:image/png;base64,...); "
                             "the realm fetches nothing from the web")]
    detail: Literal["auto", "low", "high"] = "auto"


class TextPart(Struct, tag_field="type", tag="text"):
    text: str


class ImagePart(Struct, tag_field="type", tag="image_url"):
    image_url: ImageURL


ContentPart = TextPart | ImagePart


class ChatMessage(Struct):
    role: Literal["system", "developer", "user", "assistant"]
    content: str | list[ContentPart] | None = None
    name: str | None = None


class ResponseFormat(Struct):
    type: Literal["text"]  # no JSON mode


class ChatCompletionRequest(Struct):
    """POST /v1/chat/completions. Image parts route to a vision worker."""

    model: str
    messages: Annotated[list[ChatMessage], Meta(min_length=1)]
    max_tokens: MaxTokens | None = None
    max_completion_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stop: Stop | None = None
    seed: int | None = None
    n: OnlyOne = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_price: Price | None = None
    tools: Annotated[list[dict[str, Any]], Meta(max_length=0)] | None = None  # no worker calls tools
    logprobs: Literal[False] | None = None
    response_format: ResponseFormat | None = None


class AssistantMessage(Struct):
    content: str
    role: Literal["assistant"] = "assistant"
    refusal: None = None


class Choice(Struct):
    message: AssistantMessage
    finish_reason: str
    index: int = 0
    logprobs: None = None


class ChatCompletion(Struct):
    id: str
    created: int
    model: str
    choices: list[Choice]
    usage: Usage
    mtor: MtorInfo
    object: Literal["chat.completion"] = "chat.completion"
    system_fingerprint: None = None


class Delta(Struct, omit_defaults=True):
    role: Literal["assistant"] | None = None
    content: str | None = None


class ChunkChoice(Struct):
    delta: Delta
    finish_reason: str | None = None
    index: int = 0
    logprobs: None = None


class ChatCompletionChunk(Struct):
    """One `data:` event of a streamed chat completion; the last, with
    ``stream_options.include_usage``, has no choices and the usage."""

    id: str
    created: int
    model: str
    choices: list[ChunkChoice]
    usage: Usage | None = None
    object: Literal["chat.completion.chunk"] = "chat.completion.chunk"
    system_fingerprint: None = None


# --- legacy completions ------------------------------------------------------------


class CompletionRequest(Struct):
    """POST /v1/completions: the prompt is sent to the model as one user turn."""

    model: str
    prompt: str | Annotated[list[str], Meta(min_length=1, max_length=1)]
    max_tokens: MaxTokens | None = None
    temperature: Temperature | None = None
    top_p: TopP | None = None
    stop: Stop | None = None
    seed: int | None = None
    n: OnlyOne = 1
    stream: bool = False
    stream_options: StreamOptions | None = None
    max_price: Price | None = None
    echo: Literal[False] = False
    logprobs: None = None


class CompletionChoice(Struct):
    text: str
    finish_reason: str | None = None
    index: int = 0
    logprobs: None = None


class Completion(Struct):
    """The answer, or one `data:` event of a streamed one (``usage`` None until the last)."""

    id: str
    created: int
    model: str
    choices: list[CompletionChoice]
    usage: Usage | None = None
    mtor: MtorInfo | None = None
    object: Literal["text_completion"] = "text_completion"


# --- images --------------------------------------------------------------------


class ImageRequest(Struct):
    """POST /v1/images/generations -> an imagine worker."""

    prompt: Annotated[str, Meta(min_length=1)]
    model: str | None = None  # None: any imagine worker
    n: OnlyOne = 1
    size: Annotated[str, Meta(pattern=r"^(auto|[0-9]{1,5}x[0-9]{1,5})$")] | None = None
    response_format: Literal["b64_json"] | None = None  # the realm hosts no files to link to
    seed: Annotated[int, Meta(ge=0)] | None = None
    steps: Annotated[int, Meta(ge=1)] | None = None
    negative_prompt: str | None = None
    max_price: Price | None = None


class ImageData(Struct):
    b64_json: str
    revised_prompt: None = None


class ImagesResponse(Struct):
    created: int
    data: list[ImageData]
    mtor: MtorInfo


# --- audio ---------------------------------------------------------------------

OPENAI_VOICES = frozenset(
    ("alloy", "ash", "ballad", "cedar", "coral", "echo", "fable", "marin", "nova", "onyx", "sage", "shimmer", "verse")
)
SPEECH_FORMATS = {"wav": "audio/wav", "pcm": "audio/pcm"}


class SpeechRequest(Struct):
    """POST /v1/audio/speech -> a tts worker; the answer is the audio file itself."""

    model: str
    input: Annotated[str, Meta(min_length=1, max_length=4096)]
    voice: Annotated[str, Meta(description="OpenAI's voice names use the worker's default voice; "
                               "any other name is passed to the worker (e.g. an espeak-ng voice)")]
    response_format: Literal["wav", "pcm"] | None = None  # None: wav
    speed: Annotated[float, Meta(ge=0.25, le=4.0)] | None = None
    max_price: Price | None = None


class TranscriptionForm(Struct):
    """POST /v1/audio/transcriptions (multipart/form-data) -> a speech worker."""

    file: bytes
    model: str
    language: Annotated[str, Meta(pattern=r"^[A-Za-z]{2,3}$")] | None = None
    temperature: Annotated[float, Meta(ge=0.0, le=1.0)] | None = None
    response_format: Literal["json", "text"] = "json"
    max_price: Price | None = None


class Transcription(Struct):
    text: str
    mtor: MtorInfo


# --- embeddings -------------------------------------------------------------------

MAX_EMBED_INPUTS = 256  # worker.backends.embed.MAX_TEXTS
EmbedText = Annotated[str, Meta(min_length=1, max_length=8000)]


class EmbeddingRequest(Struct):
    """POST /v1/embeddings -> an embed worker."""

    input: EmbedText | Annotated[list[EmbedText], Meta(min_length=1, max_length=MAX_EMBED_INPUTS)]
    model: str
    encoding_format: Literal["float", "base64"] = "float"  # base64: little-endian float32s, as OpenAI's
    max_price: Price | None = None


class Embedding(Struct):
    index: int
    embedding: list[float] | str  # a str with encoding_format=base64
    object: Literal["embedding"] = "embedding"


class EmbeddingUsage(Struct):
    prompt_tokens: int
    total_tokens: int


class EmbeddingsResponse(Struct):
    data: list[Embedding]
    model: str
    usage: EmbeddingUsage
    mtor: MtorInfo
    object: Literal["list"] = "list"


# --- models ----------------------------------------------------------------------


class ModelInfo(Struct):
    """What the realm knows of one model (an extension)."""

    intents: list[str]  # what the model's workers serve it for: chat, vision, imagine, ...
    workers: int  # connected workers serving it


class Model(Struct):
    id: str
    created: int  # when the longest-connected worker serving it registered
    owned_by: str  # the realm
    mtor: ModelInfo
    object: Literal["model"] = "model"


class ModelList(Struct):
    data: list[Model]
    object: Literal["list"] = "list"


# Why a declared field takes only one value: the 400's message for it.
REFUSED: dict[str, tuple[str, str]] = {
    "tools": ("no worker of this realm calls tools", "send the request without tools"),
    "logprobs": ("the realm's workers do not report log probabilities", "leave logprobs unset"),
    "response_format.type": ("the realm's workers have no JSON mode", 'ask for JSON in the prompt; send "text"'),
    "echo": ("the realm does not echo the prompt back", "leave echo false"),
    "n": ("one answer per request", "send n=1 (or leave it out), and repeat the request for more"),
}


def field_path(error: msgspec.ValidationError) -> str | None:
    """The request field a msgspec error names ("`$.messages[0].role`" -> "messages[0].role")."""
    text = str(error)
    at = text.rfind("`$.")
    if at < 0:
        return None
    end = text.find("`", at + 3)
    return text[at + 3 : end] if end > at else None
