"""OpenAI requests as MTOR intents: which intent, what prompt, which attachments and parameters.

A request field becomes a worker parameter only where the backends serving
the model declare that parameter (their capability's JSON Schema), so an
OpenAI field a backend does not take is ignored rather than refused: the
echo backend answers a chat request with a temperature. ``stop`` is also
applied here, at the edge, for backends that do not take it.
"""

from __future__ import annotations

import base64
import binascii
import re
from dataclasses import dataclass, field
from typing import Any

from broker.openai_api.catalogue import Offer, text_intent
from broker.openai_api.errors import ApiError
from broker.openai_api.schema import (
    OPENAI_VOICES,
    ChatCompletionRequest,
    CompletionRequest,
    EmbeddingRequest,
    ImagePart,
    ImageRequest,
    SpeechRequest,
    TextPart,
    TranscriptionForm,
)
from broker.protocol import Attachment

_DATA_URL = re.compile(r"^data:(?P<mime>[\w.+-]+/[\w.+-]+)?(?:;[\w=.+-]+)*;base64,(?P<data>.*)$", re.DOTALL)
WORDS_PER_MINUTE = 175  # espeak-ng's default speed, what OpenAI's speed=1.0 means
MIN_WPM, MAX_WPM = 80, 450


@dataclass
class Plan:
    """What to submit for one HTTP request."""

    intent: str
    model: str | None
    prompt: str
    prompt_field: str  # the request field the prompt came from, for errors about it
    attachments: list[Attachment] = field(default_factory=list)
    params: dict[str, Any] = field(default_factory=dict)
    stop: list[str] = field(default_factory=list)  # cut the answer at the first of these


def _unsupported(param: str, message: str, hint: str) -> ApiError:
    return ApiError("unsupported", message, hint, param)


def _keep(params: dict[str, Any], declared: set[str]) -> dict[str, Any]:
    """The parameters the intent's backends declare, without the unset ones."""
    return {k: v for k, v in params.items() if v is not None and k in declared}


def _stops(stop: str | list[str] | None) -> list[str]:
    if stop is None:
        return []
    return [stop] if isinstance(stop, str) else list(stop)


def _text_for(offer: Offer, param: str) -> str:
    intent = text_intent(offer)
    if intent is None:
        serves = ", ".join(sorted(offer.params))
        raise ApiError(
            "bad_params", f"model {offer.model!r} does not answer text (it serves {serves})", "pick a chat model from "
            "GET /v1/models, or use the endpoint for what it serves", param,
        )
    return intent


# --- chat ----------------------------------------------------------------------


def chat(req: ChatCompletionRequest, offer: Offer) -> Plan:
    only = req.messages[0]
    if len(req.messages) == 1 and only.role == "user" and isinstance(only.content, str):
        # The common case (one question, as text): no turns to walk.
        intent = _text_for(offer, "model")
        return Plan(intent, req.model, only.content, "messages[0].content", [], _chat_params(req, offer, intent, [], []),
                    _stops(req.stop))
    system: list[str] = []
    turns: list[dict[str, str]] = []
    images: list[Attachment] = []
    last = len(req.messages) - 1
    for i, msg in enumerate(req.messages):
        where = f"messages[{i}].content"
        text, found = _content(msg.content, where, images_allowed=(i == last and msg.role == "user"))
        images.extend(found)
        if msg.role in ("system", "developer"):
            system.append(text)
        elif i < last:
            turns.append({"role": msg.role, "content": text})
    final = req.messages[last]
    if final.role != "user":
        raise ApiError(
            "bad_params", f"the last message is from the {final.role}; the realm answers a user's message",
            "end messages with a user message", f"messages[{last}].role",
        )
    prompt, _ = _content(final.content, f"messages[{last}].content", images_allowed=True)
    if len(images) > 1:
        raise _unsupported(f"messages[{last}].content", "one image per request", "send the images one at a time")
    if images:
        if "vision" not in offer.params:
            raise ApiError(
                "bad_params", f"model {req.model!r} does not read images", "pick a model that serves vision "
                "(GET /v1/models lists each model's intents)", f"messages[{last}].content",
            )
        intent = "vision"
    else:
        intent = _text_for(offer, "model")
    params = _chat_params(req, offer, intent, system, turns)
    return Plan(intent, req.model, prompt, f"messages[{last}].content", images, params, _stops(req.stop))


def _chat_params(
    req: ChatCompletionRequest, offer: Offer, intent: str, system: list[str], turns: list[dict[str, str]]
) -> dict[str, Any]:
    return _keep(
        {
            "max_tokens": req.max_completion_tokens or req.max_tokens,
            "temperature": req.temperature,
            "top_p": req.top_p,
            "seed": req.seed,
            "stop": _stops(req.stop) or None,
            "system": "\n\n".join(system) or None,
            "history": turns or None,
        },
        offer.params[intent],
    )


def _content(content: Any, where: str, images_allowed: bool) -> tuple[str, list[Attachment]]:
    """A message's text and, where allowed, its images."""
    if content is None:
        raise ApiError("bad_params", f"{where} is empty", "send the message's text", where)
    if isinstance(content, str):
        return content, []
    texts: list[str] = []
    images: list[Attachment] = []
    for j, part in enumerate(content):
        if isinstance(part, TextPart):
            texts.append(part.text)
        elif isinstance(part, ImagePart):
            url = f"{where}[{j}].image_url.url"
            if not images_allowed:
                raise _unsupported(url, "only the last user message may carry an image", "move the image there")
            images.append(_image(part.image_url.url, url))
    return "\n".join(texts), images


def _image(url: str, param: str) -> Attachment:
    match = _DATA_URL.match(url)
    if match is None:
        raise ApiError("bad_attachment", "the image's data: URL is not data:<type>;base64,<data>",
                       "send data:image/png;base64,... (the file's bytes, base64-encoded)", param)
    data = match["data"].strip()
    try:
        base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise ApiError("bad_attachment", "the image's data: URL is not valid base64", "base64-encode the file",
                       param) from None
    return Attachment(kind="image", data=data, mime=match["mime"] or "application/octet-stream")


# --- completions ----------------------------------------------------------------


def completion(req: CompletionRequest, offer: Offer) -> Plan:
    intent = _text_for(offer, "model")
    prompt = req.prompt if isinstance(req.prompt, str) else req.prompt[0]
    stop = _stops(req.stop)
    params = _keep(
        {"max_tokens": req.max_tokens, "temperature": req.temperature, "top_p": req.top_p, "seed": req.seed,
         "stop": stop or None},
        offer.params[intent],
    )
    return Plan(intent, req.model, prompt, "prompt", [], params, stop)


# --- media ---------------------------------------------------------------------


def _media(offer: Offer | None, intent: str, what: str) -> set[str] | None:
    """The declared parameters of ``intent`` for this model; None for "any worker" (no model named)."""
    if offer is None:
        return None
    if intent not in offer.params:
        raise ApiError(
            "bad_params", f"model {offer.model!r} does not {what}", f"pick a model that serves {intent} "
            "(GET /v1/models lists each model's intents)", "model",
        )
    return offer.params[intent]


def image(req: ImageRequest, offer: Offer | None, declared: set[str]) -> Plan:
    names = _media(offer, "imagine", "draw images")
    params = {
        "size": req.size if req.size != "auto" else None,
        "seed": req.seed,
        "steps": req.steps,
        "negative": req.negative_prompt,
    }
    return Plan("imagine", req.model, req.prompt, "prompt", [], _keep(params, names or declared))


def speech(req: SpeechRequest, offer: Offer) -> Plan:
    names = _media(offer, "tts", "speak") or set()
    speed = None
    if req.speed is not None:
        speed = min(MAX_WPM, max(MIN_WPM, round(WORDS_PER_MINUTE * req.speed)))
    voice = None if req.voice.lower() in OPENAI_VOICES else req.voice
    return Plan("tts", req.model, req.input, "input", [], _keep({"voice": voice, "speed": speed}, names))


def transcription(form: TranscriptionForm, offer: Offer, mime: str, filename: str | None) -> Plan:
    names = _media(offer, "speech", "transcribe audio") or set()
    audio = Attachment(kind="audio", data=base64.b64encode(form.file).decode(), mime=mime, name=filename)
    params = _keep({"language": form.language, "temperature": form.temperature}, names)
    return Plan("speech", form.model, "", "file", [audio], params)


def embedding(req: EmbeddingRequest, offer: Offer) -> Plan:
    """Every input goes in ``params.texts`` (none in the prompt), so the vectors come back
    one per input, in order, whatever the inputs hold."""
    names = _media(offer, "embed", "embed text") or set()
    if "texts" not in names:
        raise ApiError("bad_params", f"model {offer.model!r} takes one text at a time", "send one input", "input")
    texts = [req.input] if isinstance(req.input, str) else list(req.input)
    return Plan("embed", req.model, "", "input", [], {"texts": texts})
