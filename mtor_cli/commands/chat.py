"""``mtor chat``: a conversation with the realm's chat model, turn by turn."""

from __future__ import annotations

import asyncio
import contextlib
import signal
import sys
from typing import TYPE_CHECKING, Any

import typer

from mtor_cli import money, options, output

if TYPE_CHECKING:
    from mtor_cli.client import RealmClient

HELP = """A conversation with the realm's chat model, turn by turn.

Each answer streams as it is written; the model sees the earlier turns of
the conversation, which is kept in your conversation store (the same one
`mtor ask -c` continues). Type /new for a fresh conversation, /exit or
Ctrl-D to leave; Ctrl-C stops the answer being written.

Examples:

  mtor chat

  mtor chat --continue --broker ws://realm.example:8765

  mtor chat --system "Answer in one sentence." --temperature 0
"""

EXIT_WORDS = ("/exit", "/quit", "exit", "quit")


def register(app: typer.Typer) -> None:
    app.command("chat", help=HELP)(chat)


def chat(
    broker: str | None = options.broker_option(),
    model: str | None = typer.Option(None, "--model", "-m", help="Ask for a specific chat model."),
    cont: bool = typer.Option(False, "--continue", "-c", help="Continue your last conversation."),
    system: str | None = typer.Option(None, "--system", "-s", help="A system prompt for every turn."),
    temperature: float | None = typer.Option(None, "--temperature", min=0, help="0 = greedy."),
    max_tokens: int | None = typer.Option(None, "--max-tokens", min=1, help="Longest answer in tokens."),
    max_price: str | None = typer.Option(
        None, "--max-price", help="Refuse a turn whose price is above this many $9000.", show_default=False
    ),
) -> None:
    from mtor_cli.conversations import Conversations

    price_cap = None if max_price is None else money.parse(max_price, "--max-price")
    url = options.resolve_broker(broker)
    params: dict[str, Any] = {}
    if system is not None:
        params["system"] = system
    if temperature is not None:
        params["temperature"] = temperature
    if max_tokens is not None:
        params["max_tokens"] = max_tokens
    with Conversations() as store:
        cid = store.latest() if cont else None
        if cont and cid is None:
            output.note("no earlier conversation: starting a new one")
        session = _Session(store, url, cid or store.start(url), model, params, price_cap)
        try:
            asyncio.run(session.run())
        except KeyboardInterrupt:
            pass
    output.note("bye")


class _Session:
    def __init__(
        self, store: Any, url: str, cid: str, model: str | None, params: dict[str, Any], max_price: int | None
    ) -> None:
        self.store = store
        self.url = url
        self.cid = cid
        self.model = model
        self.params = params
        self.max_price = max_price

    async def run(self) -> None:
        from mtor_cli.client import RealmClient, RealmError
        from mtor_cli.identity import load_or_create_account

        try:
            async with RealmClient(self.url, load_or_create_account(), reconnect_s=30.0) as client:
                output.note(f"chatting with {self.url}; /new starts over, /exit or Ctrl-D leaves")
                while True:
                    line = await asyncio.to_thread(_read_line)
                    if line is None or line.strip() in EXIT_WORDS:
                        return
                    if line.strip() == "/new":
                        self.cid = self.store.start(self.url)
                        output.note("a new conversation")
                        continue
                    if line.strip():
                        await self.turn(client, line.strip())
        except RealmError as exc:
            output.fail(exc.code, exc.message, exc.hint)

    async def turn(self, client: RealmClient, prompt: str) -> None:
        from mtor_cli.client import RealmError, new_guid
        from mtor_cli.conversations import history_param
        from mtor_cli.missing import no_worker_hint

        params = {**self.params, "history": history_param(self.store.turns(self.cid))}
        guid = new_guid()

        def token(text: str) -> None:
            sys.stdout.write(text)
            sys.stdout.flush()

        task = asyncio.ensure_future(
            client.ask(
                prompt, intent="chat", model=self.model, params=params, guid=guid,
                max_price=self.max_price, on_token=token,
            )
        )  # fmt: skip
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGINT, task.cancel)  # Ctrl-C stops this answer, not the chat
        try:
            result = await task
        except asyncio.CancelledError:
            with contextlib.suppress(RealmError, ConnectionError):
                await client.cancel(guid)
            sys.stdout.write("\n")
            output.note("(stopped)")
            return
        except RealmError as exc:
            sys.stdout.write("\n")
            hint = no_worker_hint(self.url, "chat", self.model) if exc.code == "no_worker" else exc.hint
            message = money.reword(exc.code, exc.message, exc.detail, self.max_price)
            if exc.code in ("unreachable", "disconnected", "handshake_failed"):
                output.fail(exc.code, message, hint)
            print(output.error_line(exc.code, message, hint), file=sys.stderr)
            return
        finally:
            loop.remove_signal_handler(signal.SIGINT)
        sys.stdout.write("\n")
        if not result.text:
            output.note(f"(an empty answer; charged {money.fmt(result.cost)} $9000)")
            return
        self.store.add(self.cid, guid, prompt, result.text, result.model)


def _read_line() -> str | None:
    """One line from the person (None at end of input)."""
    try:
        return input("> " if sys.stdin.isatty() else "")
    except EOFError:
        return None
