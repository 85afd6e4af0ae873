"""/openapi.json: the OpenAI-compatible endpoints, generated from the Structs the handlers decode and encode."""

from __future__ import annotations

from collections.abc import Callable
from functools import cache
from typing import Any

import msgspec

from broker.openai_api import schema as S
from broker.openai_api.catalogue import Offer, text_intent

VERSION = "1.0.0"
ERROR_STATUSES = {
    "400": "The request is wrong; `param` names the field",
    "401": "No API key, or a revoked or unknown one",
    "402": "Insufficient funds, or a price above max_price or the key's limit",
    "403": "The key's address is banned",
    "404": "No such model",
    "409": "The Idempotency-Key was used for another request, or its request was cancelled",
    "429": "Rate limited or the queue is full; see Retry-After",
    "500": "A bug in the broker",
    "502": "The worker failed",
    "503": "No connected worker serves the model now",
    "504": "No worker finished in time",
}
_TYPES: tuple[Any, ...] = (
    S.ChatCompletionRequest, S.ChatCompletion, S.ChatCompletionChunk, S.CompletionRequest, S.Completion,
    S.ImageRequest, S.ImagesResponse, S.SpeechRequest, S.TranscriptionForm, S.Transcription,
    S.EmbeddingRequest, S.EmbeddingsResponse, S.ModelList, S.Model, S.ErrorResponse,
)


def _ref(kind: Any) -> dict[str, str]:
    return {"$ref": f"#/components/schemas/{kind.__name__}"}


def _json(kind: Any) -> dict[str, Any]:
    return {"application/json": {"schema": _ref(kind)}}


def _errors() -> dict[str, Any]:
    return {code: {"description": why, "content": _json(S.ErrorResponse)} for code, why in ERROR_STATUSES.items()}


def _post(summary: str, body: dict[str, Any], ok: dict[str, Any], ok_description: str) -> dict[str, Any]:
    return {
        "post": {
            "summary": summary,
            "parameters": [
                {"name": "Idempotency-Key", "in": "header", "required": False, "schema": {"type": "string",
                 "minLength": 1, "maxLength": 255}, "description": "a repeat gets the first answer, never a second run"},
                {"name": "X-MTOR-Max-Price", "in": "header", "required": False,
                 "schema": {"type": "string", "pattern": "^[0-9]{1,78}$"},
                 "description": "refuse if the price is above this (base units of $9000)"},
            ],
            "requestBody": {"required": True, "content": body},
            "responses": {"200": {"description": ok_description, "content": ok}, **_errors()},
        }
    }


def _streamed(answer: Any, chunk: Any) -> dict[str, Any]:
    """The answer, or with ``stream: true`` server-sent events: each a ``chunk`` (or an
    error, after which the stream ends) as JSON, and ``[DONE]`` last."""
    data = {
        "anyOf": [
            {"type": "string", "const": "[DONE]"},
            {"type": "string", "contentMediaType": "application/json",
             "contentSchema": {"anyOf": [_ref(chunk), _ref(S.ErrorResponse)]}},
        ]
    }
    event = {"type": "object", "properties": {"data": data, "event": {"type": "string"}}, "required": ["data"]}
    return {**_json(answer), "text/event-stream": {"schema": event}}


# Which models each request's `model` may name, by the intents they serve (live examples).
_MODEL_INTENTS: dict[str, Callable[[Offer], bool]] = {
    "ChatCompletionRequest": lambda o: text_intent(o) is not None or "vision" in o.params,
    "CompletionRequest": lambda o: text_intent(o) is not None,
    "ImageRequest": lambda o: "imagine" in o.params,
    "SpeechRequest": lambda o: "tts" in o.params,
    "TranscriptionForm": lambda o: "speech" in o.params,
    "EmbeddingRequest": lambda o: "embed" in o.params,
}


def document(offers: dict[str, Offer]) -> bytes:
    """The document, with the models connected workers serve now as each `model` field's examples."""
    doc = msgspec.json.decode(_document())
    schemas = doc["components"]["schemas"]
    for name, fits in _MODEL_INTENTS.items():
        examples = sorted(m for m, offer in offers.items() if fits(offer))
        if examples and name in schemas:
            schemas[name]["properties"]["model"]["examples"] = examples
    return msgspec.json.encode(doc)


@cache
def _document() -> bytes:
    _, components = msgspec.json.schema_components(_TYPES, ref_template="#/components/schemas/{name}")
    form = components["TranscriptionForm"]
    form["properties"]["file"] = {"type": "string", "format": "binary"}
    paths: dict[str, Any] = {
        "/v1/models": {
            "get": {
                "summary": "Every model some connected worker serves, live",
                "responses": {"200": {"description": "the models", "content": _json(S.ModelList)}, **_errors()},
            }
        },
        "/v1/models/{model}": {
            "get": {
                "summary": "One model, if some connected worker serves it",
                "parameters": [{"name": "model", "in": "path", "required": True, "schema": {"type": "string"}}],
                "responses": {"200": {"description": "the model", "content": _json(S.Model)}, **_errors()},
            }
        },
        "/v1/chat/completions": _post(
            "Chat (and vision, with an image part)", _json(S.ChatCompletionRequest), _streamed(S.ChatCompletion, S.ChatCompletionChunk),
            "the answer; with stream=true, server-sent ChatCompletionChunk events and `data: [DONE]`",
        ),
        "/v1/completions": _post(
            "Legacy text completion (the prompt as one user turn)", _json(S.CompletionRequest),
            _streamed(S.Completion, S.Completion), "the answer; with stream=true, server-sent Completion events and `data: [DONE]`",
        ),
        "/v1/images/generations": _post(
            "Draw an image (imagine)", _json(S.ImageRequest), _json(S.ImagesResponse), "the image, base64"
        ),
        "/v1/audio/speech": _post(
            "Text to speech (tts)", _json(S.SpeechRequest),
            {mime: {"schema": {"type": "string", "format": "binary"}} for mime in S.SPEECH_FORMATS.values()},
            "the audio file",
        ),
        "/v1/audio/transcriptions": _post(
            "Speech to text (speech)", {"multipart/form-data": {"schema": _ref(S.TranscriptionForm)}},
            {**_json(S.Transcription), "text/plain": {"schema": {"type": "string"}}},
            "the text (text/plain with response_format=text)",
        ),
        "/v1/embeddings": _post(
            "Embed texts (embed): one vector per input, in order", _json(S.EmbeddingRequest),
            _json(S.EmbeddingsResponse), "the vectors (base64 float32s with encoding_format=base64)",
        ),
    }
    doc = {
        "openapi": "3.1.0",
        "info": {
            "title": "MTOR realm: OpenAI-compatible API",
            "version": VERSION,
            "description": "A realm's workers as one model server. Reference: docs/openai.md.",
        },
        "paths": paths,
        "components": {
            "schemas": components,
            "securitySchemes": {"apiKey": {"type": "http", "scheme": "bearer", "description": "`mtor keys create`"}},
        },
        "security": [{"apiKey": []}],
    }
    return msgspec.json.encode(doc)
