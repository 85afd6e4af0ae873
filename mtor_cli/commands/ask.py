"""``mtor ask``: send one request to the realm and stream the answer."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import mimetypes
import sys
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mtor_cli import options, output

if TYPE_CHECKING:
    from rich.progress import Progress as ProgressBar

    from broker.protocol import Attachment, Broadcast, Progress, Result

HELP = """Ask the realm: chat, describe an image, imagine a picture, transcribe audio.

The answer streams to stdout token by token; progress (e.g. diffusion steps)
is drawn on stderr; images and audio are saved to files whose paths are printed.
Without --intent the intent is recognised from the text ("imagine ..." ->
imagine, an --image -> vision, else chat). Without --broker, MTOR_BROKER or a
`broker` in the config file, the embedded local realm is used (started in the
background on first use).

Examples:

  mtor ask "Computer, tell me a joke"

  echo "summarise this" | mtor ask --json

  mtor ask --intent imagine --steps 20 --size 512x512 --out mountain.png "a neon mountain"

  mtor ask --image photo.jpg "what is in this picture?"

Exit codes: 0 ok, 1 request failed or rejected, 2 usage error, 3 broker
unreachable, 4 no worker / queue full, 5 timeout, 6 insufficient funds,
130 interrupted (the request is cancelled).
"""


def register(app: typer.Typer) -> None:
    app.command("ask", help=HELP, no_args_is_help=False)(ask)


def ask(
    prompt: str | None = typer.Argument(
        None, help="What you want. Read from stdin when absent.", show_default=False
    ),
    broker: str | None = options.broker_option(),
    intent: str | None = typer.Option(
        None, "--intent", "-i", help="chat, vision, imagine, speech, tts... (default: recognised)."
    ),
    model: str | None = typer.Option(None, "--model", "-m", help="Ask for a specific model."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object instead of text."),
    no_stream: bool = typer.Option(False, "--no-stream", help="Print the answer when complete."),
    image: Path | None = typer.Option(None, "--image", help="Attach an image file."),
    audio: Path | None = typer.Option(
        None, "--audio", help="Attach an audio file (with --voice: the spoken request)."
    ),
    voice: bool = typer.Option(
        False, "--voice", help="Speak the request: recorded until you pause (or read from --audio FILE)."
    ),
    speak: bool = typer.Option(False, "--speak", help="Speak the answer aloud too."),
    explain: bool = typer.Option(
        False, "--explain", help="Show which rule or prototype chose the intent, and its score."
    ),
    steps: int | None = typer.Option(None, "--steps", min=1, help="Diffusion steps (imagine)."),
    size: str | None = typer.Option(None, "--size", help="Image size WxH, e.g. 512x512 (imagine)."),
    seed: int | None = typer.Option(None, "--seed", help="Random seed, for repeatable output."),
    negative: str | None = typer.Option(None, "--negative", help="Negative prompt (imagine)."),
    max_tokens: int | None = typer.Option(
        None, "--max-tokens", min=1, help="Longest answer in tokens (chat)."
    ),
    temperature: float | None = typer.Option(
        None, "--temperature", min=0, help="Sampling temperature, 0 = greedy (chat)."
    ),
    param: list[str] = typer.Option(
        [], "--param", "-p", help="Extra backend parameter KEY=VALUE (VALUE parsed as JSON if it can be)."
    ),
    out: Path | None = typer.Option(
        None, "--out", "-o", help="Where to save an image/audio result (default: ./mtor-<guid>.<ext>)."
    ),
    max_price: int | None = typer.Option(
        None, "--max-price", min=0, help="Refuse if the price is above this (base units of $9000)."
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", min=0.1, help="Give up (and cancel) after this many seconds."
    ),
    reconnect: float = typer.Option(
        30.0, "--reconnect", min=0, help="If the broker drops, reconnect and resume for this long (s)."
    ),
) -> None:
    if voice or speak:
        from mtor_cli.voice.ask import speak_answer, voice_prompt, voice_speaker
    speaker = voice_speaker() if speak else None
    attachments = [a for a in (_attach(image, "image"), _attach(None if voice else audio, "audio")) if a]
    text = voice_prompt(audio, prompt) if voice else _read_prompt(prompt, optional=bool(attachments))
    if not text and not attachments:
        output.fail("usage", "the prompt is empty", 'pass it as an argument: mtor ask "..." or on stdin')
    params = _params(steps, size, seed, negative, max_tokens, temperature, param)
    request = text
    url = options.resolve_broker(broker, while_starting=_load_client)
    if intent:
        from broker.intents import strip_wake_word

        chosen, text = intent, strip_wake_word(text)[0]
    else:
        chosen, text = choose_intent(text, tuple(a.kind for a in attachments), url)
    if explain:
        from mtor_cli.intent import explain_choice

        kinds = tuple(a.kind for a in attachments)
        output.note(explain_choice(request, kinds, chosen, forced=bool(intent)))

    from mtor_cli.client import new_guid

    guid = new_guid()
    stream = not no_stream and not json_out
    sink = _Stream()
    try:
        result = asyncio.run(
            _run(sink, url, guid, text, chosen, model, attachments, params, stream, max_price, timeout, reconnect)
        )
    except KeyboardInterrupt:
        sink.stop()
        output.fail("interrupted", "interrupted; the request was cancelled")
    _finish(result, streamed_text=sink.text if stream else None, json_out=json_out, out=out)
    if speaker is not None:
        speak_answer(speaker, result.text)


def _load_client() -> None:
    """Import the client's transport and read the key while the embedded realm boots (they overlap)."""
    import aiohttp  # noqa: F401  (most of this command's own start-up time)

    from mtor_cli.identity import IdentityError, load_signer

    try:
        load_signer()
    except IdentityError:
        pass  # reported where the key is used


def choose_intent(text: str, attachment_kinds: tuple[str, ...], url: str) -> tuple[str, str]:
    """The intent for ``text`` when --intent is absent, and the prompt to send.

    The wake word and explicit verbs decide first (``broker.intents.route``).
    Otherwise the embedding recogniser of :mod:`mtor_cli.intent` picks the
    nearest intent, but only where the realm at ``url`` serves something
    besides chat: loading its model takes seconds, and with nothing else to
    choose from the answer is chat anyway. Without the recogniser's model
    (the chat-only install): chat.
    """
    from broker.intents import INTENTS, route

    routed = route(text, attachment_kinds)
    if routed.intent is not None:
        return routed.intent, routed.prompt
    if not (_served_intents(url) & set(INTENTS)) - {"chat"}:
        return "chat", routed.prompt
    try:
        from mtor_cli.intent import recognise

        recognition = recognise(text, attachment_kinds)
    except (ImportError, RuntimeError):  # the embedding model is not installed
        return "chat", routed.prompt
    return recognition.intent, recognition.prompt


def _served_intents(url: str) -> set[str]:
    """The intents the realm's connected workers serve (empty if it cannot say)."""
    from mtor_cli.client import RealmError, http_get_json

    try:
        rows = http_get_json(url, "/v1/workers").get("workers", [])
    except (RealmError, AttributeError):
        return set()
    return {c.get("intent") for w in rows for c in w.get("capabilities", [])}


def _read_prompt(prompt: str | None, optional: bool) -> str:
    """The prompt argument, else stdin when it is piped; ``optional`` when an
    attachment can stand alone (``mtor ask --audio question.wav``)."""
    if prompt is not None:
        return prompt.strip()
    if sys.stdin is None or sys.stdin.isatty():
        if optional:
            return ""
        output.fail("usage", "no prompt given", 'pass it as an argument: mtor ask "..." or pipe it on stdin')
    return sys.stdin.read().strip()


def _attach(path: Path | None, kind: str) -> Attachment | None:
    if path is None:
        return None
    from broker.protocol import Attachment

    try:
        data = path.read_bytes()
    except OSError as exc:
        output.fail("usage", f"cannot read --{kind} {path}: {exc.strerror or exc}", "check the path")
    mime = mimetypes.guess_type(path.name)[0] or "application/octet-stream"
    return Attachment(kind=kind, data=base64.b64encode(data).decode(), mime=mime, name=path.name)


def _params(
    steps: int | None,
    size: str | None,
    seed: int | None,
    negative: str | None,
    max_tokens: int | None,
    temperature: float | None,
    extra: list[str],
) -> dict[str, Any]:
    import json

    params: dict[str, Any] = {}
    if steps is not None:
        params["steps"] = steps
    if size is not None:
        width, sep, height = size.lower().partition("x")
        if not (sep and width.isdigit() and height.isdigit()):
            output.fail("usage", f"--size {size!r} is not WxH", "e.g. --size 512x512")
        params["size"] = f"{int(width)}x{int(height)}"
    if seed is not None:
        params["seed"] = seed
    if negative is not None:
        params["negative"] = negative
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    if temperature is not None:
        params["temperature"] = temperature
    for item in extra:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            output.fail("usage", f"--param {item!r} is not KEY=VALUE", "e.g. --param temperature=0.7")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


class _Stream:
    """Prints tokens to stdout as they come and draws progress on stderr."""

    def __init__(self) -> None:
        self.text = ""
        self._bar: ProgressBar | None = None
        self._task: Any = None

    def token(self, text: str) -> None:
        self.text += text
        sys.stdout.write(text)
        sys.stdout.flush()

    def progress(self, event: Progress) -> None:
        description = event.message or "working"
        if self._bar is None:
            from rich.progress import (
                BarColumn,
                MofNCompleteColumn,
                Progress,
                TextColumn,
                TimeElapsedColumn,
            )

            self._bar = Progress(
                TextColumn("{task.description}"),
                BarColumn(),
                MofNCompleteColumn(),
                TimeElapsedColumn(),
                console=output.err_console(),
                transient=True,
            )
            self._bar.start()
            self._task = self._bar.add_task(description, total=event.total)
        self._bar.update(self._task, completed=event.step, total=event.total, description=description)

    def stop(self) -> None:
        if self._bar is not None:
            self._bar.stop()
            self._bar = None


async def _run(
    sink: _Stream,
    url: str,
    guid: str,
    text: str,
    intent: str,
    model: str | None,
    attachments: list[Attachment],
    params: dict[str, Any],
    stream: bool,
    max_price: int | None,
    timeout: float | None,
    reconnect: float,
) -> Result:
    from mtor_cli.client import RealmClient, RealmError
    from mtor_cli.identity import IdentityError, load_signer

    try:
        account = load_signer()
    except IdentityError as exc:
        output.fail(exc.code, exc.message, exc.hint)

    def show_broadcast(msg: Broadcast) -> None:
        output.note(f"broadcast from {msg.sender}: {msg.message}")

    try:
        async with RealmClient(url, account, reconnect_s=reconnect, on_broadcast=show_broadcast) as client:
            try:
                return await client.ask(
                    text,
                    intent=intent,
                    model=model,
                    attachments=attachments,
                    params=params,
                    stream=stream,
                    max_price=max_price,
                    guid=guid,
                    timeout=timeout,
                    on_token=sink.token if stream else None,
                    on_progress=sink.progress,
                )
            except asyncio.CancelledError:
                # Ctrl-C: tell the broker, so no worker keeps running for nobody.
                with contextlib.suppress(RealmError, ConnectionError):
                    await client.cancel(guid)
                raise
    except RealmError as exc:
        sink.stop()
        if sink.text:
            sys.stdout.write("\n")
        output.fail(exc.code, exc.message, exc.hint)
    finally:
        sink.stop()


_EXT = {"image/png": ".png", "image/jpeg": ".jpg", "audio/wav": ".wav", "audio/x-wav": ".wav"}


def _finish(result: Result, *, streamed_text: str | None, json_out: bool, out: Path | None) -> None:
    files = _save_attachments(result, out)
    if json_out:
        output.print_json(
            {
                "guid": result.guid,
                "intent": result.intent,
                "text": result.text,
                "worker": result.worker,
                "model": result.model,
                "timings": result.timings,
                "usage": result.usage.reported(),
                "cost": result.cost,
                "replayed": result.replayed,
                "files": [str(f) for f in files],
            }
        )
        return
    final = result.text or ""
    if streamed_text is None or not streamed_text:
        if final:
            sys.stdout.write(final)
    elif streamed_text != final:
        # The stream restarted on another worker and diverged: the result is the answer.
        output.note("(the answer changed after a reconnect; the complete answer follows)")
        sys.stdout.write("\n" + final)
    if final or streamed_text:
        sys.stdout.write("\n")
    for path in files:
        sys.stdout.write(f"{path}\n")
        _preview(path)
    sys.stdout.flush()


def _save_attachments(result: Result, out: Path | None) -> list[Path]:
    saved: list[Path] = []
    for n, att in enumerate(result.attachments):
        ext = _EXT.get(att.mime) or mimetypes.guess_extension(att.mime) or ".bin"
        if out is None:
            path = Path(f"mtor-{result.guid[:8]}{'-' + str(n + 1) if n else ''}{ext}")
        elif len(result.attachments) == 1:
            path = out
        else:
            path = out.with_name(f"{out.stem}-{n + 1}{out.suffix or ext}")
        try:
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(base64.b64decode(att.data))
        except OSError as exc:
            output.fail("save_failed", f"cannot write {path}: {exc.strerror or exc}", "pick another --out")
        saved.append(path)
    return saved


def _preview(path: Path) -> None:
    """Draw a small preview of an image result when stdout is a terminal."""
    if path.suffix.lower() not in (".png", ".jpg", ".jpeg") or not sys.stdout.isatty():
        return
    try:
        from mtor_cli.preview import preview

        preview(path)
    except ImportError:  # Pillow is not installed (chat-only install): the file is enough
        pass
