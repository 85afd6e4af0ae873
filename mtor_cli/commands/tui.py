"""``mtor tui``: the live dashboard of a realm, with a prompt bar."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import typer

from mtor_cli import options, output

HELP = """The realm's live dashboard, with a prompt bar.

Workers, queues, throughput, recent intents and your spending, live; what
you type in the prompt bar is answered in the answer pane.

Updates are pushed by the broker (no polling); a lost connection shows in the
status bar and is retried with backoff. Press F1 for the keys, Ctrl+P for the
command palette, Ctrl+Q to quit. Without --broker, MTOR_BROKER or a `broker`
in the config file, the embedded local realm is used (started if needed).

Examples:

  mtor tui

  mtor tui --broker ws://realm.example:8765

  mtor tui --intent imagine --param steps=8
"""


def register(app: typer.Typer) -> None:
    app.command("tui", help=HELP)(tui)


def tui(
    broker: str | None = options.broker_option(),
    intent: str | None = typer.Option(
        None, "--intent", "-i", help="Send every prompt as this intent (default: recognised by the realm)."
    ),
    param: list[str] = typer.Option(
        [], "--param", "-p", help="Backend parameter KEY=VALUE sent with every prompt (VALUE parsed as JSON if it can be)."
    ),
    audio: list[Path] = typer.Option(
        [], "--audio", help="For the Speak action (Ctrl+O): WAV file(s) to hear instead of the microphone."
    ),
    device: int | None = typer.Option(None, "--device", help="Microphone device index (PortAudio)."),
) -> None:
    params = _params(param)
    for path in audio:
        if not path.is_file():
            output.fail("usage", f"--audio {path}: no such file", "pass a WAV recording")
    url = options.resolve_broker(broker)

    from mtor_cli.identity import load_or_create_account
    from mtor_cli.tui.app import MtorApp
    from mtor_cli.tui.broker_feed import BrokerFeed
    from mtor_cli.tui.voice_input import VoiceInput

    feed = BrokerFeed(url, load_or_create_account())
    MtorApp(feed, intent=intent, params=params, voice=VoiceInput(audio, device)).run()


def _params(items: list[str]) -> dict[str, Any]:
    params: dict[str, Any] = {}
    for item in items:
        key, sep, raw = item.partition("=")
        if not sep or not key:
            output.fail("usage", f"--param {item!r} is not KEY=VALUE", "e.g. --param steps=8")
        try:
            params[key] = json.loads(raw)
        except ValueError:
            params[key] = raw
    return params


