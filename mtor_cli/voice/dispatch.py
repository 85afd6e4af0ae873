"""Hand a recognised spoken request to the realm and turn the result into a reply.

One request at a time over its own connection: a voice session asks
seldom, and a fresh connection per request survives a broker restart
between two questions without reconnect logic here.
"""

from __future__ import annotations

import asyncio
import base64
import mimetypes
from collections.abc import Callable
from dataclasses import replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from .listen import Reply

if TYPE_CHECKING:
    from eth_account.signers.local import LocalAccount

    from broker.protocol import Accepted, Result
    from mtor_cli.intent import Recognition

_EXT = {"image/png": ".png", "image/jpeg": ".jpg", "audio/wav": ".wav", "audio/x-wav": ".wav"}


class RealmDispatcher:
    """Submits each request to the broker at ``url`` as the user ``account``."""

    def __init__(
        self,
        url: str,
        account: LocalAccount | None = None,
        *,
        out_dir: Path | None = None,
        timeout_s: float | None = None,
        on_token: Callable[[str], None] | None = None,
    ) -> None:
        self.url = url
        self.account = account
        self.out_dir = out_dir or Path.cwd()
        self.timeout_s = timeout_s
        self.on_token = on_token

    def __call__(self, recognition: Recognition) -> Reply:
        """A request no rule decided here goes out without an intent: the realm routes it.
        An answer with a follow-up (email: a summary, a draft to confirm) gets it."""
        from mtor_cli import actions

        why: list[str] = []
        result = asyncio.run(self._ask(recognition, why, actions.settings()))
        said_why = why[0] if why else ""
        voice_reply = getattr(actions.for_intent(result.intent), "voice_reply", None)
        if voice_reply is None:
            return replace(reply_of(result, self.out_dir), why=said_why)
        session = actions.Session(
            self.url,
            frozenset(actions.served_intents(self.url)),
            self.account,
            quiet=True,
            local=actions.is_embedded(self.url),
            timeout_s=self.timeout_s,
        )
        said = voice_reply(session, result)
        if said.confirm is None:
            return Reply(said.text, [], result.intent, result.guid, why=said_why)
        action = said.confirm

        def confirm() -> Reply:
            done = action()
            return Reply(done.text or "", [], done.intent, done.guid)

        return Reply(said.text, [], result.intent, result.guid, said_why, confirm=confirm, not_done=said.not_done)

    async def _ask(self, recognition: Recognition, why: list[str], settings: dict[str, dict[str, Any]]) -> Result:
        from broker.routing import Routing
        from mtor_cli.client import RealmClient

        def accepted(event: Accepted) -> None:
            if event.routing is not None:
                why.append(Routing.from_wire(event.intent, event.routing).explain())

        async with RealmClient(self.url, self.account) as client:
            return await client.ask(
                recognition.prompt,
                intent=None if recognition.fallback else recognition.intent,
                settings=settings,
                timeout=self.timeout_s,
                on_accepted=accepted,
                on_token=self.on_token,
            )



def reply_of(result: Result, out_dir: Path) -> Reply:
    """What to show and say for a result: its text, or where its image or audio was saved."""
    files = save_attachments(result, out_dir)
    text = (result.text or "").strip()
    if not text and files:
        kinds = {"image": "an image", "audio": "a recording"}
        what = kinds.get(result.attachments[0].kind, "a file")
        text = f"Here is {what}, saved as {files[0].name}."
    return Reply(text, files, result.intent, result.guid)


def save_attachments(result: Result, out_dir: Path) -> list[Path]:
    out_dir.mkdir(parents=True, exist_ok=True)
    saved: list[Path] = []
    for index, attachment in enumerate(result.attachments, 1):
        ext = _EXT.get(attachment.mime) or mimetypes.guess_extension(attachment.mime) or ".bin"
        path = out_dir / f"mtor-{result.guid[:8]}-{index}{ext}"
        path.write_bytes(base64.b64decode(attachment.data))
        saved.append(path)
    return saved
