"""``mtor ask``: send one request to the realm and stream the answer."""

from __future__ import annotations

import asyncio
import base64
import contextlib
import mimetypes
import sys
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any

import typer

from mtor_cli import money, options, output

if TYPE_CHECKING:
    from rich.progress import Progress as ProgressBar

    from broker.protocol import Accepted, Attachment, Broadcast, Progress, Result
    from mtor_cli.client import RealmError

HELP = """Ask the realm: chat, images, speech, weather, email.

The answer streams to stdout token by token; progress (e.g. diffusion steps)
is drawn on stderr; images and audio are saved to files whose paths are printed.
Without --intent the realm chooses the intent from the text ("imagine ..." ->
imagine, an --image -> vision, else what its recogniser says, else chat), and
answers with chat, saying so, when it reads as conversation but nothing there
serves it; --explain prints why. -c continues your last conversation. Without
--broker, MTOR_BROKER or a `broker` in the config file, the embedded local
realm is used (started in the background on first use). Prices are decimal
$9000 (--max-price 0.02).

Examples:

  mtor ask "Computer, tell me a joke"

  mtor ask -c "and another one"

  echo "summarise this" | mtor ask --json

  mtor ask --intent imagine --steps 20 --size 512x512 --out mountain.png "a neon mountain"

  mtor ask --image photo.jpg "what is in this picture?"

  mtor ask "will it rain in Oslo tomorrow"

  mtor ask "email Bob about Friday's meeting"     (shows the draft, asks before sending)

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
        False, "--explain", help="Show how the intent was chosen: the rule or prototype, its score, any fallback."
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
    max_price: str | None = typer.Option(
        None, "--max-price", help="Refuse if the price is above this many $9000, e.g. 0.02.", show_default=False
    ),
    cont: bool = typer.Option(
        False, "--continue", "-c", help="Continue your last conversation: the model sees its earlier turns."
    ),
    timeout: float | None = typer.Option(
        None, "--timeout", min=0.1, help="Give up (and cancel) after this many seconds."
    ),
    reconnect: float = typer.Option(
        30.0, "--reconnect", min=0, help="If the broker drops, reconnect and resume for this long (s)."
    ),
    yes: bool = typer.Option(
        False, "--yes", "-y", help="Do what the answer proposes without asking (email: send the draft)."
    ),
) -> None:
    if voice or speak:
        from mtor_cli.voice.ask import speak_answer, voice_prompt, voice_speaker
    price_cap = None if max_price is None else money.parse(max_price, "--max-price")
    speaker = voice_speaker() if speak else None
    attachments = [a for a in (_attach(image, "image"), _attach(None if voice else audio, "audio")) if a]
    text = voice_prompt(audio, prompt) if voice else _read_prompt(prompt, optional=bool(attachments))
    if not text and not attachments:
        output.fail("usage", "the prompt is empty", 'pass it as an argument: mtor ask "..." or on stdin')
    params = _params(steps, size, seed, negative, max_tokens, temperature, param)
    url = options.resolve_broker(broker)
    # The realm chooses the intent unless the person did (a continued conversation is chat).
    chosen = intent or ("chat" if cont else None)
    conversation = _conversation(url, cont, chosen, params)
    if chosen is not None:
        from broker.intents import strip_wake_word

        text = strip_wake_word(text)[0]  # the realm strips it only when it routes

    from mtor_cli.client import new_guid

    guid = new_guid()
    stream = not no_stream and not json_out
    sink = _Stream()
    settings = _settings()
    if chosen is None:
        params, settings = _by_intent(params, settings)
    request = _Request(url, guid, text, chosen, model, attachments, params, stream, price_cap, settings)
    why = _Routing("--continue" if cont and not intent else "--intent", explain)
    try:
        result = asyncio.run(_run(sink, request, timeout, reconnect, why.accepted))
    except KeyboardInterrupt:
        sink.stop()
        output.fail("interrupted", "interrupted; the request was cancelled")
    from mtor_cli import actions

    follow_up = getattr(actions.for_intent(result.intent), "finish", None)
    if follow_up is None or not json_out:
        _finish(result, streamed_text=sink.text if stream else None, json_out=json_out, out=out, routing=why.routing)
    conversation.keep(text, result)
    if not result.text and not result.attachments:
        output.fail(
            "empty_answer",
            f"the {result.intent} worker returned an empty answer (charged {money.fmt(result.cost)} $9000)",
            "ask again, rephrased, or raise --max-tokens",
        )
    if follow_up is not None:
        session = actions.Session(
            url,
            frozenset(actions.served_intents(url)),
            quiet=json_out,
            local=actions.is_embedded(url),
            assume_yes=yes,
            speak=(lambda line: speak_answer(speaker, line)) if speaker is not None else None,
            timeout_s=timeout,
        )
        result = _follow_up(follow_up, session, result, json_out, why.routing)
        if json_out:
            _finish(result, streamed_text=None, json_out=True, out=out, routing=why.routing)
    if speaker is not None:
        speak_answer(speaker, result.text)


# The intents an option is for. When the realm chooses the intent, an option rides
# as those intents' settings, so that `--max-tokens` never reaches a tts worker.
_OPTION_INTENTS = {
    "steps": ("imagine",),
    "size": ("imagine",),
    "negative": ("imagine",),
    "seed": ("chat", "imagine"),
    "max_tokens": ("chat", "vision"),
    "temperature": ("chat",),
}


def _by_intent(
    params: dict[str, Any], settings: dict[str, dict[str, Any]]
) -> tuple[dict[str, Any], dict[str, dict[str, Any]]]:
    """``params`` less the options that belong to particular intents, and
    ``settings`` with those options added for their intents (options win)."""
    merged = {intent: dict(values) for intent, values in settings.items()}
    rest: dict[str, Any] = {}
    for key, value in params.items():
        if key not in _OPTION_INTENTS:
            rest[key] = value  # -p KEY=VALUE: for whatever intent the realm chooses
            continue
        for intent in _OPTION_INTENTS[key]:
            merged.setdefault(intent, {})[key] = value
    return rest, merged


def _settings() -> dict[str, dict[str, Any]]:
    """The person's settings by intent (weather: location, units)."""
    from mtor_cli import actions
    from mtor_cli.paths import config_file

    try:
        return actions.settings()
    except ValueError as exc:  # tomllib.TOMLDecodeError
        output.fail("usage", f"cannot read {config_file()}: {exc}", "fix or remove the file")


def _follow_up(
    follow_up: Any, session: Any, result: Result, json_out: bool, routing: dict[str, Any] | None
) -> Result:
    """Run an intent's follow-up (email: summary, draft and send); its failures are the one error line."""
    import msgspec

    from mtor_cli.actions import Declined
    from mtor_cli.client import RealmError

    try:
        done: Result = follow_up(session, result)
    except Declined as exc:
        if json_out:
            declined = msgspec.structs.replace(result, data=exc.data)
            _finish(declined, streamed_text=None, json_out=True, out=None, routing=routing)
        output.fail(exc.code, exc.message, exc.hint)
    except RealmError as exc:
        output.fail(exc.code, exc.message, exc.hint)
    for line in session.notes:
        output.note(line)
    return done


class _Routing:
    """What the realm's `accepted` says about the intent it chose: a note on stderr
    when it answered with chat instead, and with --explain the whole of why."""

    def __init__(self, forced_by: str, explain: bool) -> None:
        self.forced_by = forced_by
        self.explain = explain
        self.routing: dict[str, Any] | None = None

    def accepted(self, event: Accepted) -> None:
        from broker.routing import Routing

        if event.routing is None:
            line = f"{event.intent} <- {self.forced_by}"
        else:
            routing = Routing.from_wire(event.intent, event.routing)
            self.routing = {k: v for k, v in routing.to_dict().items() if k != "prompt"}
            line = routing.explain()
            if routing.note:
                output.note(f"note: {routing.note}")
        if self.explain:
            output.note(line)


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
        self._said = ""  # the last progress message written as a line (stderr is not a terminal)

    def token(self, text: str) -> None:
        self.text += text
        sys.stdout.write(text)
        sys.stdout.flush()

    def progress(self, event: Progress) -> None:
        description = event.message or "working"
        if not output.err_console().is_terminal:
            # No bar to redraw in a log or a pipe: each new message once, as a line.
            if event.message and event.message != self._said:
                output.note(event.message)
                self._said = event.message
            return
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


@dataclass(frozen=True)
class _Request:
    url: str
    guid: str
    text: str
    intent: str | None  # None: the realm chooses
    model: str | None
    attachments: list[Attachment]
    params: dict[str, Any]
    stream: bool
    max_price: int | None
    settings: dict[str, dict[str, Any]]  # the person's, by intent: the realm applies the chosen one's


async def _run(
    sink: _Stream, req: _Request, timeout: float | None, reconnect: float, on_accepted: Callable[[Accepted], None]
) -> Result:
    from mtor_cli.client import RealmClient, RealmError
    from mtor_cli.identity import IdentityError, load_or_create_account
    from mtor_cli.missing import no_worker_hint

    try:
        account = load_or_create_account()
    except IdentityError as exc:
        output.fail(exc.code, exc.message, exc.hint)

    def show_broadcast(msg: Broadcast) -> None:
        output.note(f"broadcast from {msg.sender}: {msg.message}")

    try:
        async with RealmClient(req.url, account, reconnect_s=reconnect, on_broadcast=show_broadcast) as client:
            try:
                return await client.ask(
                    req.text,
                    intent=req.intent,
                    model=req.model,
                    attachments=req.attachments,
                    params=req.params,
                    settings=req.settings,
                    stream=req.stream,
                    max_price=req.max_price,
                    guid=req.guid,
                    timeout=timeout,
                    on_accepted=on_accepted,
                    on_token=sink.token if req.stream else None,
                    on_progress=sink.progress,
                )
            except asyncio.CancelledError:
                # Ctrl-C: tell the broker, so no worker keeps running for nobody.
                with contextlib.suppress(RealmError, ConnectionError):
                    await client.cancel(req.guid)
                raise
    except RealmError as exc:
        sink.stop()
        if sink.text:
            sys.stdout.write("\n")
        message = money.reword(exc.code, exc.message, exc.detail, req.max_price)
        intent = str(exc.detail.get("intent") or req.intent or "chat")
        hint = exc.hint
        if exc.code == "no_worker":
            found = _on_this_machine(exc, req.url, intent)
            if found is not exc:
                message, hint = found.message, found.hint
            elif not exc.detail.get("owner_only"):  # an owner-only intent's hint is the broker's own
                hint = no_worker_hint(req.url, intent, req.model)
        output.fail(exc.code, message, hint)
    finally:
        sink.stop()


def _on_this_machine(exc: RealmError, url: str, intent: str) -> RealmError:
    """No worker in the embedded realm means this machine lacks the intent's
    software or model: say which, and the one command that adds it."""
    from mtor_cli import realm, realm_models
    from mtor_cli.client import RealmError

    if realm.running_url() != url:
        return exc
    row = realm_models.row(intent)
    if row is None:
        return exc
    if not row.ready:
        return RealmError("no_worker", f"this machine cannot serve {intent}: {row.missing}", row.add)
    return RealmError(
        "no_worker",
        f"the embedded realm started before {intent} could be served here",
        "restart it to serve everything this machine has: mtor realm stop",
    )


def _conversation(url: str, cont: bool, intent: str | None, params: dict[str, Any]) -> _Conversation:
    """The conversation a chat answer joins: the last one with --continue (its
    turns go to the model as ``params["history"]``), else a new one."""
    if cont and intent != "chat":
        output.fail("usage", f"--continue continues a chat, not {intent}", "leave out -c or --intent")
    from mtor_cli.conversations import Conversations, history_param

    store = Conversations()
    cid = store.latest() if cont else None
    if cont and cid is None:
        output.note("no earlier conversation: starting a new one")
    if cid is not None:
        params.setdefault("history", history_param(store.turns(cid)))
    return _Conversation(store, url, cid)


@dataclass
class _Conversation:
    store: Any
    url: str
    cid: str | None  # None: a new conversation, started when there is something to keep

    def keep(self, prompt: str, result: Result) -> None:
        """A chat answer joins the conversation (other answers are not conversation)."""
        if result.intent == "chat" and result.text:
            from broker.intents import strip_wake_word

            said = strip_wake_word(prompt)[0]
            self.store.add(self.cid or self.store.start(self.url), result.guid, said, result.text, result.model)
        self.store.close()


_EXT = {"image/png": ".png", "image/jpeg": ".jpg", "audio/wav": ".wav", "audio/x-wav": ".wav"}


def _finish(
    result: Result, *, streamed_text: str | None, json_out: bool, out: Path | None, routing: dict[str, Any] | None
) -> None:
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
                **money.fields("cost", result.cost),
                "replayed": result.replayed,
                "routing": routing,
                "data": result.data,
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
