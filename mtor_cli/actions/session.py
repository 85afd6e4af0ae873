"""What an intent's client-side follow-up may do: ask the realm again, show, confirm, speak."""

from __future__ import annotations

import asyncio
import sys
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any

from broker.protocol import MtorError

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from broker.protocol import Result


@dataclass(frozen=True)
class VoiceReply:
    """What ``mtor listen`` says for an answer, and the action it proposes:
    run only if the next utterance is a yes, else ``not_done`` is said."""

    text: str
    confirm: Callable[[], Result] | None = None
    not_done: str = "Nothing was done."


class Declined(MtorError):
    """The person did not confirm an action; nothing was done."""

    def __init__(self, message: str, hint: str = "", data: dict[str, Any] | None = None) -> None:
        super().__init__("declined", message, hint)
        self.data = data or {}  # what the answer would have been (the draft, for --json)


@dataclass
class Session:
    """One follow-up's view of the person and the realm.

    ``show`` prints for people (nothing under ``--json``); ``ask`` runs one more
    request, streaming its text through ``show`` as it comes; ``confirm`` asks
    yes/no (``assume_yes``: ``--yes``); ``speak`` says a line (``--speak``).
    """

    url: str
    served: frozenset[str]
    account: LocalAccount | None = None
    quiet: bool = False  # --json: only the final JSON goes to stdout
    local: bool = False  # the realm is this machine's embedded one: every worker in it is the person's
    assume_yes: bool = False
    speak: Callable[[str], None] | None = None
    timeout_s: float | None = None
    notes: list[str] = field(default_factory=list)

    def show(self, text: str, end: str = "\n") -> None:
        if not self.quiet:
            sys.stdout.write(text + end)
            sys.stdout.flush()

    def ask(self, prompt: str, intent: str, params: dict[str, Any] | None = None, *, stream: bool = True) -> Result:
        """One request to the realm; RealmError when it fails."""

        async def run() -> Result:
            from mtor_cli.client import RealmClient

            async with RealmClient(self.url, self.account) as client:
                return await client.ask(
                    prompt,
                    intent=intent,
                    params=params or {},
                    timeout=self.timeout_s,
                    on_token=(lambda text: self.show(text, end="")) if stream else None,
                )

        return asyncio.run(run())

    def confirm(self, question: str, refusal_hint: str) -> None:
        """Go on only if the person says yes; raises Declined otherwise."""
        if self.assume_yes:
            return
        if sys.stdin is None or not sys.stdin.isatty():
            raise Declined("not confirmed: there is no terminal to ask on", refusal_hint)
        from rich.prompt import Confirm

        from mtor_cli.output import err_console

        if not Confirm.ask(question, console=err_console(), default=False):
            raise Declined("you declined", "nothing was done")


def served_intents(url: str) -> set[str]:
    """The intents the realm's connected workers serve (empty if it cannot say)."""
    from mtor_cli.client import RealmError, http_get_json

    try:
        rows = http_get_json(url, "/v1/workers").get("workers", [])
    except (RealmError, AttributeError):
        return set()
    return {c.get("intent") for w in rows for c in w.get("capabilities", [])}


def is_embedded(url: str) -> bool:
    """Whether ``url`` is this machine's embedded realm (whose workers all run here)."""
    from mtor_cli.realm import running_url

    return running_url() == url
