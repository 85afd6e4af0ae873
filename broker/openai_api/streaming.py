"""Server-sent events for a streamed completion, and the `stop` sequences cut at the edge."""

from __future__ import annotations

from collections.abc import Callable

import msgspec
from aiohttp import web

from broker.openai_api.errors import ApiError
from broker.openai_api.gateway import ClientGone, OpenAIGateway
from broker.openai_api.http_peer import HttpPeer
from broker.protocol import Error, Result, Token

_encode = msgspec.json.encode
DONE = b"data: [DONE]\n\n"


class StopCut:
    """Cuts streamed text at the first of the ``stop`` sequences, holding back
    only as much text as could be the start of one."""

    def __init__(self, stops: list[str]) -> None:
        self._stops = stops
        self._hold = max(map(len, stops)) - 1 if stops else 0
        self._buf = ""
        self.stopped = False

    def feed(self, text: str) -> str:
        """The part of ``text`` that may be passed on now."""
        if self.stopped:
            return ""
        if not self._stops:
            return text
        self._buf += text
        cut = min((i for s in self._stops if (i := self._buf.find(s)) >= 0), default=-1)
        if cut >= 0:
            out, self._buf, self.stopped = self._buf[:cut], "", True
            return out
        ready = len(self._buf) - self._hold
        if ready <= 0:
            return ""
        out, self._buf = self._buf[:ready], self._buf[ready:]
        return out

    def flush(self) -> str:
        """What is held back, once the text is complete."""
        out, self._buf = self._buf, ""
        return "" if self.stopped else out


class Text:
    """The answer's text as streamed so far, from tokens that may repeat it: a
    retried run starts again from offset 0, a re-attached stream catches up
    from where it was. Only characters past what was passed on are new; a run
    whose text differs from what was passed on passes nothing more."""

    def __init__(self) -> None:
        self.passed = ""
        self.diverged = False

    def new(self, token: Token) -> str:
        end = token.offset + len(token.text)
        have = len(self.passed)
        if self.diverged or end <= have or token.offset > have:
            return ""
        if self.passed[token.offset :] != token.text[: have - token.offset]:
            self.diverged = True
            return ""
        fresh = token.text[have - token.offset :]
        self.passed += fresh
        return fresh

    def rest(self, final: str) -> str:
        """What the final text adds to what was passed on."""
        if self.diverged or not final.startswith(self.passed):
            return ""
        fresh = final[len(self.passed) :]
        self.passed = final
        return fresh


def cut(text: str, stops: list[str]) -> tuple[str, bool]:
    """A whole answer cut at its first stop sequence, and whether one was found."""
    stopper = StopCut(stops)
    out = stopper.feed(text) + stopper.flush()
    return out, stopper.stopped


class Chunks:
    """How one endpoint writes its stream: a text chunk, the end, the usage."""

    def __init__(
        self,
        text: Callable[[str], object],
        end: Callable[[str], object],
        usage: Callable[[Result], object] | None,
    ) -> None:
        self.text = text
        self.end = end
        self.usage = usage  # None: the client did not ask for stream_options.include_usage


class _EventStream(web.StreamResponse):
    # Hold the headers until the first data so both leave in one send (aiohttp's
    # web.Response does the same; a StreamResponse sends them at prepare()).
    _send_headers_immediately = False


def _event(obj: object) -> bytes:
    return b"data: " + _encode(obj) + b"\n\n"


async def stream(
    request: web.Request,
    gateway: OpenAIGateway,
    peer: HttpPeer,
    chunks: Chunks,
    stops: list[str],
    prompt_field: str,
    first: Callable[[], object] | None = None,
) -> web.StreamResponse:
    """Answer ``peer``'s intent as server-sent events: ``data: {chunk}`` per batch
    of tokens, the end with its finish reason, the usage if asked, ``data: [DONE]``.

    Headers go out with the first text (or the end), so an intent refused
    before it ran still gets its own HTTP status. An error after that is sent
    as ``data: {"error": ...}``, which the OpenAI clients raise."""
    response: web.StreamResponse | None = None
    stopper = StopCut(stops)
    text = Text()

    async def write(data: bytes, last: bool = False) -> None:
        """Write ``data``; with ``last``, together with the end of the chunked body (one send)."""
        nonlocal response
        if response is None:
            response = _EventStream(
                headers={
                    "Content-Type": "text/event-stream",
                    "Cache-Control": "no-cache",
                    "X-MTOR-Guid": peer.guid,
                },
            )
            await response.prepare(request)
            if first is not None:
                data = _event(first()) + data
        if last:
            await response.write_eof(data)
        else:
            await response.write(data)

    try:
        while True:
            out: list[bytes] = []
            pieces: list[str] = []  # the tokens that arrived together go out as one chunk
            end: Result | Error | ApiError | None = None
            try:
                events = await gateway.events(peer)
            except ApiError as exc:
                events, end = [], exc
            for event in events:
                if isinstance(event, Token):
                    pieces.append(stopper.feed(text.new(event)))
                elif isinstance(event, (Result, Error)):
                    end = event
            if any(pieces):
                out.append(_event(chunks.text("".join(pieces))))
            if isinstance(end, (Error, ApiError)):
                error = end if isinstance(end, ApiError) else ApiError.from_frame(end, prompt_field)
                if response is None and not out:
                    return error.response()
                await write(b"".join(out) + _event(error.body()), last=True)
                break
            if isinstance(end, Result):
                # The text not streamed yet (all of it, for a replay) goes out before the end.
                rest = stopper.feed(text.rest(end.text or "")) + stopper.flush()
                if rest:
                    out.append(_event(chunks.text(rest)))
                reason = "stop" if stopper.stopped else (end.finish_reason or "stop")
                out.append(_event(chunks.end(reason if reason in ("stop", "length") else "stop")))
                if chunks.usage is not None:
                    out.append(_event(chunks.usage(end)))
                await write(b"".join(out) + DONE, last=True)
                break
            if stopper.stopped and chunks.usage is None:
                # Ended here; the worker's run finishes (and is charged as it counts) on its own.
                out.append(_event(chunks.end("stop")))
                await write(b"".join(out) + DONE, last=True)
                break
            if out:
                await write(b"".join(out))
    except ClientGone:
        pass
    except ConnectionResetError:
        gateway.hang_up(peer)
    finally:
        gateway.done(peer)
    if response is None:
        raise ClientGone(peer.guid)
    return response
