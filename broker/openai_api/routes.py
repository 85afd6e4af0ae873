"""The OpenAI-compatible endpoints, on the same port as the bus. Reference: docs/openai.md."""

from __future__ import annotations

import base64
import mimetypes
import struct
import time
from collections.abc import Awaitable, Callable
from typing import Any, TypeVar

import msgspec
from aiohttp import BodyPartReader, web
from aiohttp.http_exceptions import HttpProcessingError

from broker.openai_api import schema as S
from broker.openai_api import translate
from broker.openai_api.catalogue import Offer
from broker.openai_api.errors import ApiError
from broker.openai_api.gateway import ClientGone, OpenAIGateway
from broker.openai_api.openapi import document
from broker.openai_api.streaming import Chunks, cut, stream
from broker.parts import Parts
from broker.protocol import MtorError, Result, check_nesting, loads

T = TypeVar("T")
Handler = Callable[[web.Request], Awaitable[web.StreamResponse]]
CLIENT_CLOSED = 499  # nginx's "client closed request": nobody reads it

_json = msgspec.json.encode
_decoders: dict[type, msgspec.json.Decoder[Any]] = {}


def _ok(body: object, headers: dict[str, str] | None = None) -> web.Response:
    return web.Response(body=_json(body), content_type="application/json", headers=headers)


def _decode(data: bytes, kind: type[T]) -> T:
    decoder = _decoders.get(kind)
    if decoder is None:
        decoder = _decoders[kind] = msgspec.json.Decoder(kind)
    try:
        check_nesting(data)
        return decoder.decode(data)
    except msgspec.ValidationError as exc:
        if "got `float`" in str(exc):
            # JSON has one number type: 5.0 is the integer 5 (and JSON Schema says so).
            return _convert(_integral(loads(data)), kind)
        raise _invalid(exc) from None
    except (msgspec.DecodeError, RecursionError) as exc:
        raise ApiError("invalid_json", f"the body is not valid JSON: {exc}", "send one JSON object") from None


def _convert(obj: Any, kind: type[T], strict: bool = True) -> T:
    try:
        return msgspec.convert(obj, kind, strict=strict)
    except msgspec.ValidationError as exc:
        raise _invalid(exc) from None


def _invalid(exc: msgspec.ValidationError) -> ApiError:
    param = S.field_path(exc)
    if param in S.REFUSED:
        message, hint = S.REFUSED[param]
        return ApiError("unsupported", message, hint, param)
    return ApiError("invalid_message", f"invalid request: {exc}", "see docs/openai.md", param)


def _integral(obj: Any) -> Any:
    """``obj`` with every float that is a whole number turned into an int."""
    if isinstance(obj, float) and obj.is_integer():
        return int(obj)
    if isinstance(obj, list):
        return [_integral(v) for v in obj]
    if isinstance(obj, dict):
        return {k: _integral(v) for k, v in obj.items()}
    return obj


def _max_price(request: web.Request, body: int | str | None) -> int | None:
    """The lower of the body's ``max_price`` and the ``X-MTOR-Max-Price`` header (base units)."""
    caps = [] if body is None else [int(body)]
    header = request.headers.get("X-MTOR-Max-Price")
    if header is not None:
        if not header.isdigit() or len(header) > 78:
            raise ApiError("bad_params", "X-MTOR-Max-Price must be base units of $9000", "e.g. 5000000000000000000",
                           "X-MTOR-Max-Price")
        caps.append(int(header))
    return min(caps) if caps else None


def _info(result: Result) -> S.MtorInfo:
    return S.MtorInfo(result.guid, result.intent, result.worker, str(result.cost), result.replayed)


def _headers(result: Result) -> dict[str, str]:
    headers = {"X-MTOR-Guid": result.guid}
    if result.replayed:
        headers["Idempotent-Replayed"] = "true"
    return headers


def _usage(result: Result) -> S.Usage:
    prompt = result.usage.prompt_tokens or 0
    completion = result.usage.completion_tokens or 0
    return S.Usage(prompt, completion, prompt + completion)


def _finish(result: Result, stopped: bool) -> str:
    return "stop" if stopped or result.finish_reason not in ("stop", "length") else str(result.finish_reason)


def routes(parts: Parts) -> list[web.RouteDef]:
    gw: OpenAIGateway = parts.openai
    max_upload = parts.config.max_attachment_bytes

    def api(handler: Handler) -> Handler:
        async def wrapped(request: web.Request) -> web.StreamResponse:
            try:
                return await handler(request)
            except ApiError as exc:
                return exc.response()
            except MtorError as exc:
                return ApiError.of(exc).response()
            except ClientGone:
                return web.Response(status=CLIENT_CLOSED)

        return wrapped

    # --- models -------------------------------------------------------------

    def model_of(offer: Offer) -> S.Model:
        return S.Model(
            offer.model, int(offer.since), gw.realm, S.ModelInfo(sorted(offer.params), offer.workers)
        )

    @api
    async def list_models(request: web.Request) -> web.StreamResponse:
        gw.authenticate(request.headers.get("Authorization"))
        found = gw.models()
        return _ok(S.ModelList([model_of(found[m]) for m in sorted(found)]))

    @api
    async def get_model(request: web.Request) -> web.StreamResponse:
        gw.authenticate(request.headers.get("Authorization"))
        return _ok(model_of(gw.offer(request.match_info["model"])))

    # --- chat and completions ---------------------------------------------------

    @api
    async def chat_completions(request: web.Request) -> web.StreamResponse:
        key = gw.authenticate(request.headers.get("Authorization"))
        req = _decode(await request.read(), S.ChatCompletionRequest)
        plan = translate.chat(req, gw.offer(req.model))
        peer = await gw.submit(request, key, plan, stream=req.stream, max_price=_max_price(request, req.max_price))
        ident, created = "chatcmpl-" + peer.guid, int(time.time())
        if req.stream:
            def chunk(choices: list[S.ChunkChoice], usage: S.Usage | None = None) -> S.ChatCompletionChunk:
                return S.ChatCompletionChunk(ident, created, req.model, choices, usage)

            include = req.stream_options is not None and req.stream_options.include_usage
            chunks = Chunks(
                text=lambda text: chunk([S.ChunkChoice(S.Delta(content=text))]),
                end=lambda reason: chunk([S.ChunkChoice(S.Delta(), reason)]),
                usage=(lambda result: chunk([], _usage(result))) if include else None,
            )
            first = lambda: chunk([S.ChunkChoice(S.Delta(role="assistant", content=""))])  # noqa: E731
            return await stream(request, gw, peer, chunks, plan.stop, plan.prompt_field, first)
        result = await gw.result(peer, plan.prompt_field)
        text, stopped = cut(result.text or "", plan.stop)
        answer = S.ChatCompletion(
            ident, created, result.model or req.model,
            [S.Choice(S.AssistantMessage(text), _finish(result, stopped))], _usage(result), _info(result),
        )
        return _ok(answer, _headers(result))

    @api
    async def completions(request: web.Request) -> web.StreamResponse:
        key = gw.authenticate(request.headers.get("Authorization"))
        req = _decode(await request.read(), S.CompletionRequest)
        plan = translate.completion(req, gw.offer(req.model))
        peer = await gw.submit(request, key, plan, stream=req.stream, max_price=_max_price(request, req.max_price))
        ident, created = "cmpl-" + peer.guid, int(time.time())
        if req.stream:
            def chunk(text: str, reason: str | None = None, usage: S.Usage | None = None) -> S.Completion:
                choices = [] if usage is not None else [S.CompletionChoice(text, reason)]
                return S.Completion(ident, created, req.model, choices, usage)

            include = req.stream_options is not None and req.stream_options.include_usage
            chunks = Chunks(
                text=lambda text: chunk(text),
                end=lambda reason: chunk("", reason),
                usage=(lambda result: chunk("", usage=_usage(result))) if include else None,
            )
            return await stream(request, gw, peer, chunks, plan.stop, plan.prompt_field)
        result = await gw.result(peer, plan.prompt_field)
        text, stopped = cut(result.text or "", plan.stop)
        answer = S.Completion(
            ident, created, result.model or req.model, [S.CompletionChoice(text, _finish(result, stopped))],
            _usage(result), _info(result),
        )
        return _ok(answer, _headers(result))

    # --- media --------------------------------------------------------------------

    @api
    async def images(request: web.Request) -> web.StreamResponse:
        key = gw.authenticate(request.headers.get("Authorization"))
        req = _decode(await request.read(), S.ImageRequest)
        offer = gw.offer(req.model) if req.model is not None else None
        plan = translate.image(req, offer, gw.declared("imagine"))
        peer = await gw.submit(request, key, plan, stream=False, max_price=_max_price(request, req.max_price))
        result = await gw.result(peer, plan.prompt_field)
        data = [S.ImageData(att.data) for att in result.attachments if att.kind == "image"]
        return _ok(S.ImagesResponse(int(time.time()), data, _info(result)), _headers(result))

    @api
    async def speech(request: web.Request) -> web.StreamResponse:
        key = gw.authenticate(request.headers.get("Authorization"))
        req = _decode(await request.read(), S.SpeechRequest)
        plan = translate.speech(req, gw.offer(req.model))
        peer = await gw.submit(request, key, plan, stream=False, max_price=_max_price(request, req.max_price))
        result = await gw.result(peer, plan.prompt_field)
        audio = next((a for a in result.attachments if a.kind == "audio"), None)
        if audio is None:
            raise ApiError("worker_failed", "the tts worker returned no audio", "try again")
        wav = base64.b64decode(audio.data)
        fmt = req.response_format or "wav"
        body = _pcm(wav) if fmt == "pcm" else wav
        return web.Response(body=body, headers={**_headers(result), "Content-Type": S.SPEECH_FORMATS[fmt]})

    @api
    async def transcriptions(request: web.Request) -> web.StreamResponse:
        key = gw.authenticate(request.headers.get("Authorization"))
        fields, mime, filename = await _form(request, max_upload)
        form = _convert(fields, S.TranscriptionForm, strict=False)  # form fields are text: "0.2" is a number
        plan = translate.transcription(form, gw.offer(form.model), mime, filename)
        peer = await gw.submit(request, key, plan, stream=False, max_price=_max_price(request, form.max_price))
        result = await gw.result(peer, plan.prompt_field)
        text = (result.text or "").strip()
        if form.response_format == "text":
            return web.Response(text=text + "\n", headers=_headers(result))
        return _ok(S.Transcription(text, _info(result)), _headers(result))

    @api
    async def embeddings(request: web.Request) -> web.StreamResponse:
        key = gw.authenticate(request.headers.get("Authorization"))
        req = _decode(await request.read(), S.EmbeddingRequest)
        plan = translate.embedding(req, gw.offer(req.model))
        peer = await gw.submit(request, key, plan, stream=False, max_price=_max_price(request, req.max_price))
        result = await gw.result(peer, plan.prompt_field)
        vectors = result.data.get("embeddings")
        if not isinstance(vectors, list) or len(vectors) != len(plan.params["texts"]):
            raise ApiError("worker_failed", "the embed worker did not return one vector per input", "try again")
        b64 = req.encoding_format == "base64"
        data = [S.Embedding(i, _packed(v) if b64 else v) for i, v in enumerate(vectors)]
        tokens = result.usage.prompt_tokens or 0
        answer = S.EmbeddingsResponse(data, result.model or req.model, S.EmbeddingUsage(tokens, tokens), _info(result))
        return _ok(answer, _headers(result))

    @api
    async def openapi(_: web.Request) -> web.StreamResponse:
        return web.Response(body=document(gw.models()), content_type="application/json")

    return [
        web.get("/v1/models", list_models),
        web.get(r"/v1/models/{model:[\s\S]+}", get_model),  # hub ids have slashes
        web.post("/v1/chat/completions", chat_completions),
        web.post("/v1/completions", completions),
        web.post("/v1/images/generations", images),
        web.post("/v1/audio/speech", speech),
        web.post("/v1/audio/transcriptions", transcriptions),
        web.post("/v1/embeddings", embeddings),
        web.get("/openapi.json", openapi),
    ]


def _packed(vector: list[float]) -> str:
    """A vector as OpenAI's ``encoding_format=base64``: float32s, little-endian, base64."""
    return base64.b64encode(struct.pack(f"<{len(vector)}f", *vector)).decode()


def _pcm(wav: bytes) -> bytes:
    """The samples of a WAV file, without its header (OpenAI's `pcm`: 16-bit little-endian)."""
    import io
    import wave

    with wave.open(io.BytesIO(wav)) as w:
        return w.readframes(w.getnframes())


async def _form(request: web.Request, max_bytes: int) -> tuple[dict[str, Any], str, str | None]:
    """A multipart form's fields (the upload as bytes in ``file``), the upload's type and name."""
    if not request.content_type.startswith("multipart/"):
        raise ApiError("invalid_message", "send the audio as multipart/form-data", "the OpenAI clients do this", "file")
    try:
        return await _read_form(request, max_bytes)
    except (ValueError, AssertionError, HttpProcessingError) as exc:  # aiohttp's refusals of a malformed body
        raise ApiError("invalid_message", f"the multipart body is malformed: {exc}", "send multipart/form-data",
                       "file") from None


async def _read_form(request: web.Request, max_bytes: int) -> tuple[dict[str, Any], str, str | None]:
    fields: dict[str, Any] = {}
    mime, filename = "application/octet-stream", None
    reader = await request.multipart()
    while (part := await reader.next()) is not None:
        if not isinstance(part, BodyPartReader) or part.name is None:
            continue
        if part.name == "file":
            data = bytearray()
            while chunk := await part.read_chunk():
                data += chunk
                if len(data) > max_bytes:
                    raise ApiError("bad_attachment", f"the file is larger than {max_bytes} bytes", "send a shorter one",
                                   "file", limit=max_bytes)
            fields["file"] = bytes(data)
            filename = part.filename
            declared = part.headers.get("Content-Type")
            guessed = mimetypes.guess_type(filename or "")[0]
            mime = declared if declared and declared != "application/octet-stream" else guessed or mime
        else:
            fields[part.name] = await part.text()
    return fields, mime, filename

