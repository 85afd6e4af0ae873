"""Front an OpenAI-compatible server (Ollama, vLLM, llama.cpp server) as a realm worker.

``mtor worker serve --upstream http://127.0.0.1:11434/v1 --model llama3``
serves the chat intent by relaying each job to ``POST {upstream}/chat/completions``
with ``stream: true`` and turning the server-sent ``data:`` chunks into
tokens. With ``--intent vision`` the image attachment goes up as an
``image_url`` data URI, for upstream models that accept images.

Options: ``upstream`` (the base URL, required), ``api_key`` (sent as a
Bearer token), ``timeout_s``.
"""

from __future__ import annotations

import base64
import io
import time
import urllib.error
import urllib.request
from typing import Any, ClassVar

from broker.protocol import MAX_TOKENS_USED, Usage, Work, WorkResult, loads
from worker.backends.base import Backend, BadInput, Device, Emitter
from worker.backends.chat import CHAT_PARAMS
from worker.media import MAX_ATTACHMENT_BYTES, load_image

MAX_PROMPT_CHARS = 32_000
DEFAULT_TIMEOUT_S = 600.0
UPSTREAM_SLOTS = 4


class UpstreamError(RuntimeError):
    """The upstream server refused the request or broke the stream."""


def _check_prompt(work: Work, *, needs_prompt: bool) -> None:
    if needs_prompt and not work.prompt.strip():
        raise BadInput("bad_params", "the prompt is empty", "type what you want to ask")
    if len(work.prompt) > MAX_PROMPT_CHARS:
        raise BadInput(
            "prompt_too_long", f"the prompt is {len(work.prompt)} characters", f"keep it under {MAX_PROMPT_CHARS}"
        )


def list_models(base_url: str, api_key: str | None = None, timeout_s: float = 10.0) -> list[str]:
    """The model ids ``GET {base_url}/models`` lists (blocking; used once at load)."""
    request = urllib.request.Request(base_url.rstrip("/") + "/models")
    if api_key:
        request.add_header("Authorization", f"Bearer {api_key}")
    try:
        with urllib.request.urlopen(request, timeout=timeout_s) as response:
            payload = loads(response.read())
    except (urllib.error.URLError, OSError, ValueError) as exc:
        raise ConnectionError(
            f"cannot reach the upstream server at {base_url}: {exc}; "
            "is it running (e.g. `ollama serve`) and is the URL its /v1 base?"
        ) from None
    return [str(m.get("id")) for m in payload.get("data", []) if isinstance(m, dict) and m.get("id")]


class UpstreamChatBackend(Backend):
    """The chat intent, served by an OpenAI-compatible upstream server."""

    intent: ClassVar[str] = "chat"
    PARAMS = CHAT_PARAMS  # the same as the local chat backend's
    needs_prompt: ClassVar[bool] = True

    def __init__(self, model: str | None, device: Device, **options: Any) -> None:
        super().__init__(model, device, **options)
        upstream = options.get("upstream")
        if not upstream or not str(upstream).startswith(("http://", "https://")):
            raise ValueError(f"--upstream must be an http(s) URL such as http://127.0.0.1:11434/v1, got {upstream!r}")
        self.base_url = str(upstream).rstrip("/")
        self.api_key: str | None = options.get("api_key")
        self.timeout_s = float(options.get("timeout_s", DEFAULT_TIMEOUT_S))

    @property
    def slots(self) -> int:
        # What the upstream batches is unknown here; Ollama's default parallelism.
        return UPSTREAM_SLOTS

    @property
    def model_name(self) -> str:
        return self.model or "upstream"

    def load(self) -> None:
        models = list_models(self.base_url, self.api_key)
        if self.model is None:
            if not models:
                raise ValueError(f"{self.base_url} lists no models; pass --model")
            self.model = models[0]
        elif models and self.model not in models:
            raise ValueError(
                f"{self.base_url} does not serve model {self.model!r}; it lists: {', '.join(models)}"
            )

    def info(self) -> dict[str, Any]:
        return {"upstream": self.base_url}

    def validate(self, work: Work) -> None:
        _check_prompt(work, needs_prompt=self.needs_prompt)
        self.params.parse(work.params)

    def _content(self, work: Work) -> Any:
        return work.prompt

    def _body(self, work: Work) -> dict[str, Any]:
        _check_prompt(work, needs_prompt=self.needs_prompt)
        params = self.params.parse(work.params)
        messages: list[dict[str, Any]] = []
        if params.get("system"):
            messages.append({"role": "system", "content": params["system"]})
        messages.extend(params["history"])
        messages.append({"role": "user", "content": self._content(work)})
        body: dict[str, Any] = {
            "model": self.model_name,
            "messages": messages,
            "max_tokens": params["max_tokens"],
            "temperature": params["temperature"],
            "top_p": params["top_p"],
            "stream": True,
            "stream_options": {"include_usage": True},
        }
        if params.get("seed") is not None:
            body["seed"] = params["seed"]
        return body

    async def run(self, work: Work, out: Emitter) -> WorkResult:
        import aiohttp

        body = self._body(work)
        headers = {"Authorization": f"Bearer {self.api_key}"} if self.api_key else {}
        started = time.perf_counter()
        first_token: float | None = None
        parts: list[str] = []
        usage: dict[str, Any] = {}
        finish_reason: str | None = None
        # A session per job: it lives on the job's event loop and closes with it.
        timeout = aiohttp.ClientTimeout(total=self.timeout_s)
        async with aiohttp.ClientSession(timeout=timeout) as session, session.post(
            self.base_url + "/chat/completions", json=body, headers=headers
        ) as response:
            if response.status != 200:
                detail = (await response.text())[:500]
                raise UpstreamError(f"upstream answered HTTP {response.status}: {detail}")
            async for chunk in _sse_events(response.content):
                if out.cancelled:
                    break
                if chunk.get("error"):
                    raise UpstreamError(f"upstream stream error: {chunk['error']}")
                if isinstance(chunk.get("usage"), dict):
                    usage = chunk["usage"]
                for choice in chunk.get("choices") or []:
                    if isinstance(choice.get("finish_reason"), str):
                        finish_reason = choice["finish_reason"]
                    text = (choice.get("delta") or {}).get("content")
                    if text:
                        if first_token is None:
                            first_token = time.perf_counter() - started
                        parts.append(text)
                        await out.token(text)
        timings = {"run_s": time.perf_counter() - started}
        if first_token is not None:
            timings["first_token_s"] = first_token
        return WorkResult(
            guid=work.guid,
            text="".join(parts),
            model=self.model_name,
            timings=timings,
            usage=Usage(
                prompt_tokens=_count(usage.get("prompt_tokens"), 0),
                completion_tokens=_count(usage.get("completion_tokens"), len(parts)),
            ),
            finish_reason=finish_reason,
        )


def _count(value: Any, fallback: int) -> int:
    """A token count the upstream reported, if it is one the broker will accept."""
    if isinstance(value, int) and not isinstance(value, bool) and 0 <= value <= MAX_TOKENS_USED:
        return value
    return fallback


async def _sse_events(stream: Any) -> Any:
    """The JSON objects of an OpenAI ``text/event-stream``, until ``data: [DONE]``."""
    async for raw in stream:
        line = raw.decode("utf-8", "replace").strip()
        if not line.startswith("data:"):
            continue  # blank separators, comments (":"), event names
        data = line[5:].strip()
        if data == "[DONE]":
            return
        try:
            event = loads(data)
        except ValueError:
            raise UpstreamError(f"upstream sent a malformed event: {data[:200]}") from None
        if isinstance(event, dict):
            yield event


class UpstreamVisionBackend(UpstreamChatBackend):
    """The vision intent, for upstream models that accept ``image_url`` content."""

    intent: ClassVar[str] = "vision"
    needs_prompt: ClassVar[bool] = False  # an image alone asks for a description

    def __init__(self, model: str | None, device: Device, **options: Any) -> None:
        super().__init__(model, device, **options)
        self._max_bytes = int(options.get("max_image_bytes", MAX_ATTACHMENT_BYTES))

    def validate(self, work: Work) -> None:
        super().validate(work)
        load_image(work, max_bytes=self._max_bytes)

    def _content(self, work: Work) -> Any:
        image = load_image(work, max_bytes=self._max_bytes)
        buf = io.BytesIO()
        image.save(buf, format="PNG")  # re-encoded: the upstream sees a clean, checked image
        url = "data:image/png;base64," + base64.b64encode(buf.getvalue()).decode()
        return [
            {"type": "text", "text": work.prompt.strip() or "Describe this image."},
            {"type": "image_url", "image_url": {"url": url}},
        ]


def upstream_backend_class(intent: str) -> type[UpstreamChatBackend]:
    """The upstream backend for ``intent`` (chat or vision) — what ``--upstream`` selects."""
    classes = {"chat": UpstreamChatBackend, "vision": UpstreamVisionBackend}
    if intent not in classes:
        raise ValueError(f"--upstream serves chat or vision, not {intent!r}")
    return classes[intent]
