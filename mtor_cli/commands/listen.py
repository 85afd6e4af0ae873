"""``mtor listen``: always-on voice: wait for "Computer", take a request, answer it."""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import typer

from mtor_cli import options, output

if TYPE_CHECKING:
    from mtor_cli.voice import ListenEvent

HELP = """Listen for the wake word "Computer" and run what you ask.

Say "Computer", wait for "Yes? What would you like to do?", then your request;
or say it in one breath: "Computer, imagine a neon mountain". The request is
transcribed on this machine (Whisper tiny.en), its intent recognised, and it
runs in the realm; the answer is printed (and spoken with --speak). Speech
without the wake word is ignored. "Goodbye" ends the session; silence after
the wake word (--timeout) returns to waiting.

Without a microphone, play recordings instead with --audio (repeatable: the
files are heard one after another).

Examples:

  mtor listen --speak

  mtor listen --audio computer.wav --audio request.wav --json
"""


def register(app: typer.Typer) -> None:
    app.command("listen", help=HELP)(listen)


def listen(
    broker: str | None = options.broker_option(),
    audio: list[Path] = typer.Option(
        [], "--audio", help="Listen to this WAV file instead of the microphone (repeatable)."
    ),
    speak: bool = typer.Option(False, "--speak", help="Speak the replies aloud."),
    speak_to: Path | None = typer.Option(
        None, "--speak-to", help="Save each spoken reply as a WAV file in this directory."
    ),
    timeout: float = typer.Option(
        8.0, "--timeout", min=0.5, help="Seconds to wait for a request after the wake word."
    ),
    answer_timeout: float | None = typer.Option(
        None, "--answer-timeout", min=0.1, help="Give up on an answer after this many seconds."
    ),
    out: Path = typer.Option(Path("."), "--out", "-o", help="Directory for image/audio answers."),
    explain: bool = typer.Option(False, "--explain", help="Show which rule or prototype chose each intent."),
    stt: str = typer.Option(
        "local",
        "--stt",
        help="Where speech is transcribed: local (Whisper here) or realm (a speech worker; "
        "then every utterance heard is sent to the realm).",
    ),
    stt_model: str | None = typer.Option(
        None, "--stt-model", help="faster-whisper model directory or size (default: the bundled tiny.en)."
    ),
    device: int | None = typer.Option(None, "--device", min=0, help="Microphone device index."),
    json_out: bool = typer.Option(False, "--json", help="Print one JSON object per event (JSON lines)."),
) -> None:
    from mtor_cli.intent import RulesOnly
    from mtor_cli.voice import AudioError, Listener, RealmTranscriber, Speaker, WhisperTranscriber, open_source
    from mtor_cli.voice.dispatch import RealmDispatcher
    from mtor_cli.voice.meter import LevelMeter

    if stt not in ("local", "realm"):
        output.fail("usage", f"--stt {stt!r} is not local or realm", "use --stt local or --stt realm")
    try:
        source = open_source(audio, device)
        speaker = Speaker(play=speak, save_dir=speak_to) if (speak or speak_to) else None
        if speaker is not None:
            speaker.check()
    except AudioError as exc:
        output.fail(exc.code, exc.message, exc.hint)
    with source:
        url = options.resolve_broker(broker)
        transcriber: WhisperTranscriber | RealmTranscriber
        if stt == "realm":
            transcriber = RealmTranscriber(url)
        else:
            transcriber = WhisperTranscriber(stt_model)
            try:
                transcriber.load()
            except RuntimeError as exc:
                output.fail("no_model", str(exc))
        # Recognition is the realm's: the rules decide here what they can
        # ("Computer, imagine ..."), the rest goes out for the realm to route.
        recogniser = RulesOnly()
        dispatcher = RealmDispatcher(url, out_dir=out, timeout_s=answer_timeout)
        meter = LevelMeter('waiting for "Computer"', enabled=not json_out)
        listener = Listener(
            source,
            transcriber,
            recogniser,
            dispatcher,
            speaker=speaker,
            timeout_s=timeout,
            on_level=meter.level,
        )
        if not json_out:
            output.note(f'listening to {source.description} for "Computer" (Ctrl-C to stop)')
        source.drain()  # whatever the microphone caught while the realm and models loaded
        try:
            meter.start()
            for event in listener.run():
                meter.stop()
                _show(event, json_out, explain)
                meter.start()
        finally:
            meter.stop()


def _show(event: ListenEvent, json_out: bool, explain: bool) -> None:
    from mtor_cli.voice import Answered, Dispatched, Ended, Failed, Heard, Ignored, Said, TimedOut

    if json_out:
        output.print_json(_event_json(event))
        return
    match event:
        case Heard(transcript=text) if text:
            output.note(f"heard: {text}")
        case Ignored():
            output.note('(no wake word "Computer": ignored)')
        case Said(text=text):
            print(f"computer: {text}", flush=True)
        case Dispatched(recognition=rec):
            output.note(f"-> {'the realm routes' if rec.fallback else rec.intent}: {rec.prompt}")
            if explain and not rec.fallback:
                output.note(f"   {rec.explain()}")
        case Answered(reply=reply):
            if explain and reply.why:
                output.note(f"   {reply.why}")
            if reply.text:
                print(reply.text, flush=True)
            for path in reply.files:
                print(path, flush=True)
        case Failed(code=code, message=message, hint=hint):
            output.err_console().print(output.error_line(code, message, hint), markup=False, highlight=False)
        case TimedOut():
            output.note('no request heard; waiting for "Computer" again')
        case Ended(said_goodbye=goodbye):
            output.note("goodbye" if goodbye else "the audio ended")


def _event_json(event: ListenEvent) -> dict[str, object]:
    from dataclasses import asdict

    from mtor_cli.voice import Answered, Dispatched

    kind = type(event).__name__.lower()
    if isinstance(event, Dispatched):
        return {"event": kind, "latency_s": round(event.latency_s, 4), **event.recognition.to_dict()}
    if isinstance(event, Answered):
        reply = event.reply
        files = [str(f) for f in reply.files]
        return {"event": kind, "text": reply.text, "intent": reply.intent, "guid": reply.guid, "files": files}
    return {"event": kind, **asdict(event)}
