"""The answer to the last prompt: streamed text, an image preview, or the error."""

from __future__ import annotations

import base64
import io

from rich.console import RenderableType
from rich.text import Text
from textual.app import ComposeResult
from textual.containers import Vertical, VerticalScroll
from textual.widgets import Static

from broker.protocol import Accepted, Error, Progress, Result, Token

from .. import format as fmt


class ResultPane(Vertical):
    """Shows one answer at a time; a new prompt replaces the previous answer.

    The question and the answer's state stay on the pane's first two lines;
    only the answer's text (or image) below them scrolls.
    """

    def __init__(self, **kwargs: object) -> None:
        super().__init__(**kwargs)  # type: ignore[arg-type]
        self._chunks: list[str] = []
        self.guid: str | None = None
        self.text = ""
        self._question = ""

    def compose(self) -> ComposeResult:
        yield Static(Text("Type a prompt below and press Enter.", style="dim"), id="answer-question")
        yield Static("", id="answer-meta")
        with VerticalScroll(id="answer-body"):
            yield Static("", id="answer-text")
            yield Static("", id="answer-image")

    def on_mount(self) -> None:
        # Held by reference: an answer may still stream while the app tears its screen down.
        self._answer_question = self.query_one("#answer-question", Static)
        self._answer_meta = self.query_one("#answer-meta", Static)
        self._body = self.query_one("#answer-body", VerticalScroll)
        self._answer_text = self.query_one("#answer-text", Static)
        self._answer_image = self.query_one("#answer-image", Static)

    def begin(self, guid: str, prompt: str) -> None:
        self.guid = guid
        self._chunks = []
        self.text = ""
        self._question = prompt
        question = Text.assemble(("» ", "bold"), (prompt, "italic"), no_wrap=True, overflow="ellipsis")
        self._answer_question.update(question)
        self._meta(Text("sending…", style="dim"))
        self._answer_text.update("")
        self._answer_image.update("")

    def show(self, event: Accepted | Token | Progress | Result | Error) -> None:
        if isinstance(event, Accepted):
            where = f"queue position {event.position}" if event.position else "dispatching"
            held = f" · held {fmt.tokens(event.price_held)}" if event.price_held else ""
            self._meta(Text(f"{event.intent} · accepted · {where}{held}", style="cyan"))
            if event.routing is not None and event.routing.note:
                # e.g. chat answering "say hello" where no tts worker is: said above the answer.
                why = (f"  ({event.routing.note})", "dim")
                line = Text.assemble(("» ", "bold"), (self._question, "italic"), why, no_wrap=True, overflow="ellipsis")
                self._answer_question.update(line)
        elif isinstance(event, Token):
            self._chunks.append(event.text)
            self.text = "".join(self._chunks)
            self._answer_text.update(Text(self.text))
            self._body.scroll_end(animate=False)
        elif isinstance(event, Progress):
            note = f" {event.message}" if event.message else ""
            self._meta(Text(f"working · step {event.step}/{event.total}{note}", style="cyan"))
            if event.preview is not None:
                self._image(event.preview.data)
        elif isinstance(event, Result):
            self._finish(event)
        else:
            self.failed(event.code, event.message, event.hint)

    def failed(self, code: str, message: str, hint: str = "") -> None:
        """The error on the state line, its hint in full below it (it may be long)."""
        self._meta(Text(f"✗ {message} [{code}]", style="bold red", no_wrap=True, overflow="ellipsis"))
        detail = Text(f"{self.text}\n\n" if self.text else "")  # what streamed before it failed stays
        detail.append(f"{message} [{code}]", style="red")
        if hint:
            detail.append(f"\nhint: {hint}", style="red")
        self._answer_text.update(detail)

    def listening(self, source: str) -> None:
        self.guid = None
        self._answer_question.update(Text("» (speaking)", style="italic"))
        self._meta(Text(f"listening to {source}… speak, then pause", style="cyan"))
        self._answer_text.update("")
        self._answer_image.update("")

    def level(self, db: float, voiced: bool) -> None:
        from mtor_cli.voice.meter import meter_bar

        self._answer_text.update(Text(meter_bar(db, voiced)))

    def _finish(self, result: Result) -> None:
        parts = [result.intent, "done"]
        for key, label in (("run_s", "ran"), ("queue_s", "queued")):
            if key in result.timings:
                parts.append(f"{label} {fmt.seconds(result.timings[key])}")
        if result.worker:
            parts.append(f"worker {result.worker}")
        parts.append(f"cost {fmt.tokens(result.cost)}")
        self._meta(Text(" · ".join(parts), style="green"))
        if result.text is not None and result.text != self.text:
            self.text = result.text
            self._answer_text.update(Text(self.text))
        for attachment in result.attachments:
            if attachment.kind == "image":
                self._image(attachment.data)

    def _image(self, data_b64: str) -> None:
        import binascii

        from PIL import Image, UnidentifiedImageError

        from mtor_cli.preview import halfblock_text

        try:
            image = Image.open(io.BytesIO(base64.b64decode(data_b64, validate=True)))
            image.load()
        except (binascii.Error, UnidentifiedImageError, OSError) as exc:
            shown: RenderableType = Text(f"(the image could not be shown: {exc})", style="red")
        else:
            shown = halfblock_text(image, max(self.size.width - 2, 8))
        self._answer_image.update(shown)

    def _meta(self, renderable: RenderableType) -> None:
        self._answer_meta.update(renderable)
