"""Continuous batching, runtime-neutral: one engine thread steps every live chat at once.

A single engine thread owns the model. Requests arrive from the event loop
(:meth:`BatchEngineBase.submit`), wait at most one decode step, are prefilled
and then merged into the running batch; each step feeds every live sequence
its last token in one forward pass, samples each row with its own
temperature, top-p and seed, and streams each row's new text to its own
callback. Finished, cancelled or aborted rows leave the batch at once.

Decode is bound by reading the weights, so B sequences per pass cost little
more than one: that is the whole gain. Greedy rows give the same tokens
batched as alone, which the tests check.

This module holds what every runtime shares — the request and outcome types,
the thread loop, stop/length handling, incremental detokenization and the
callback hand-off. A runtime subclasses :class:`BatchEngineBase` with how to
prefill newcomers (``_admit``), how to run one decode step (``_step``) and
how to drop its state (``_clear``): ``torch_engine.TorchBatchEngine`` for
transformers models, ``ort_engine.OrtBatchEngine`` for ONNX builds.
"""

from __future__ import annotations

import asyncio
import contextlib
import threading
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from typing import Any


@dataclass
class SamplingParams:
    max_tokens: int
    temperature: float  # 0 -> greedy
    top_p: float
    seed: int


@dataclass
class Outcome:
    """How a request ended, handed to its ``done`` callback (engine thread)."""

    text: str = ""
    prompt_tokens: int = 0
    completion_tokens: int = 0
    finish_reason: str = ""  # "stop" | "length" | "cancelled" | "error"
    error: BaseException | None = None
    queued_s: float = 0.0
    first_token_s: float | None = None
    generate_s: float = 0.0


@dataclass
class GenRequest:
    """One chat to generate.

    ``on_text`` and ``done`` run on ``loop``'s thread: the engine posts every
    callback of one step in a single ``call_soon_threadsafe``, in order, so
    32 streams cost one loop wake-up per step and text always precedes done.
    ``is_cancelled`` is read from the engine thread.
    """

    input_ids: list[int]
    params: SamplingParams
    loop: asyncio.AbstractEventLoop
    on_text: Callable[[str], None]
    is_cancelled: Callable[[], bool]
    done: Callable[[Outcome], None]
    submitted_at: float = field(default_factory=time.perf_counter)


class Seq:
    """Per-row state: generated ids, the incremental detokenizer's offsets, the sampler."""

    __slots__ = (
        "cache_len",
        "finish",
        "first_at",
        "generator",
        "ids",
        "next_token",
        "pieces",
        "prefix_offset",
        "read_offset",
        "req",
        "started_at",
    )

    def __init__(self, req: GenRequest, generator: Any) -> None:
        self.req = req
        self.ids: list[int] = []
        self.cache_len = len(req.input_ids)  # real tokens of this row in the KV cache
        self.next_token = -1  # the token this row feeds at the next step
        self.prefix_offset = 0
        self.read_offset = 0
        self.pieces: list[str] = []
        self.generator = generator
        self.started_at = time.perf_counter()
        self.first_at: float | None = None
        self.finish = ""


class BatchEngineBase:
    """The engine thread of one chat backend; subclasses run the model."""

    thread_name = "mtor-chat-batch"

    def __init__(
        self,
        tokenizer: Any,
        tokenizer_lock: threading.Lock,
        *,
        eos_ids: set[int],
        max_context: int,
        max_batch: int = 32,
    ) -> None:
        self.tokenizer = tokenizer
        self._tok_lock = tokenizer_lock
        self.eos_ids = eos_ids
        self.max_context = max_context
        self.max_batch = max_batch
        self._pending: list[GenRequest] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        self._seqs: list[Seq] = []  # the running batch (engine thread only)
        self._posts: list[tuple[GenRequest, Callable[[Any], None], Any]] = []
        self.steps = 0  # decode passes run, for benchmarks
        self.max_rows_seen = 0

    # --- event-loop side -------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name=self.thread_name, daemon=True)
        self._thread.start()

    def submit(self, req: GenRequest) -> None:
        with self._cond:
            if self._stopping:
                raise RuntimeError("the chat engine is stopped")
            self._pending.append(req)
            self._cond.notify()

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()
        if self._thread is not None:
            self._thread.join(timeout=30)

    @property
    def busy(self) -> bool:
        """True while any chat is queued or generating."""
        with self._cond:
            return bool(self._pending or self._seqs)

    # --- runtime hooks ----------------------------------------------------

    def _admit(self, reqs: list[GenRequest]) -> None:
        """Prefill ``reqs`` and merge them into the running batch."""
        raise NotImplementedError

    def _step(self) -> None:
        """One decode pass for every row of the running batch."""
        raise NotImplementedError

    def _clear(self) -> None:
        """Forget the running batch and its cache."""
        self._seqs = []

    def _release_memory(self) -> None:
        """Hand cached memory back after a failure (GPU caches)."""

    def _can_merge(self) -> bool:
        """Whether newcomers may join while rows are running."""
        return True

    @contextlib.contextmanager
    def _thread_scope(self) -> Iterator[None]:
        """Held around the engine thread's whole loop (e.g. torch.inference_mode)."""
        yield

    # --- engine thread ---------------------------------------------------

    def _run(self) -> None:
        with self._thread_scope():
            while True:
                with self._cond:
                    while not self._pending and not self._seqs and not self._stopping:
                        self._cond.wait()
                    if self._stopping:
                        leftovers, self._pending = self._pending, []
                        break
                    # A chat cancelled while waiting for room leaves the queue now.
                    gone = [req for req in self._pending if req.is_cancelled()]
                    if gone:
                        self._pending = [req for req in self._pending if req not in gone]
                    room = self.max_batch - len(self._seqs)
                    admit: list[GenRequest] = []
                    if room > 0 and (self._can_merge() or not self._seqs):
                        admit, self._pending = self._pending[:room], self._pending[room:]
                for req in gone:
                    self._done(req, Outcome(finish_reason="cancelled", prompt_tokens=len(req.input_ids)))
                try:
                    if admit:
                        self._admit(admit)
                    if self._seqs:
                        self._step()
                except Exception as exc:  # a bug here must not hang every waiting chat
                    self._fail_all(exc)
                if self._flush():
                    # Let the event loop take the GIL and deliver the step (and read a
                    # cancel) before the next one: a fast model would run ahead of it.
                    time.sleep(0)
            for seq in self._seqs:
                seq.finish = "cancelled"
                self._finish(seq)
            self._clear()
        for req in leftovers:
            self._done(req, Outcome(finish_reason="cancelled", prompt_tokens=len(req.input_ids)))
        self._flush()

    def _done(self, req: GenRequest, outcome: Outcome) -> None:
        self._posts.append((req, req.done, outcome))

    def _text(self, req: GenRequest, text: str) -> None:
        self._posts.append((req, req.on_text, text))

    def _flush(self) -> bool:
        """Hand this step's callbacks to their loops, one wake-up per loop; True if any."""
        if not self._posts:
            return False
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Callable[[Any], None], Any]]] = {}
        for req, fn, arg in self._posts:
            by_loop.setdefault(req.loop, []).append((fn, arg))
        self._posts = []
        for loop, calls in by_loop.items():
            try:
                loop.call_soon_threadsafe(_run_all, calls)
            except RuntimeError:
                pass  # that loop is closed: nobody waits for its chats any more
        return True

    def _cancelled_early(self, req: GenRequest) -> bool:
        """Settle a request cancelled before its prefill; True if it was."""
        if req.is_cancelled():
            self._done(req, Outcome(finish_reason="cancelled", prompt_tokens=len(req.input_ids)))
            return True
        return False

    def _mark_cancelled(self) -> None:
        for seq in self._seqs:
            if seq.req.is_cancelled():
                seq.finish = "cancelled"

    def _accept(self, seqs: list[Seq], tokens: list[int]) -> None:
        now = time.perf_counter()
        with self._tok_lock:
            for seq, tok in zip(seqs, tokens, strict=False):
                if seq.first_at is None:
                    seq.first_at = now
                seq.next_token = tok
                if tok in self.eos_ids:
                    seq.finish = "stop"
                    continue
                seq.ids.append(tok)
                self._stream(seq)
                if len(seq.ids) >= seq.req.params.max_tokens:
                    seq.finish = "length"
                elif seq.cache_len + 1 >= self.max_context:
                    seq.finish = "length"

    def _stream(self, seq: Seq) -> None:
        """Emit the text the newest token completes (incremental detokenization).

        Decoding a short window before the new tokens keeps the spacing that
        tokenizers only produce in context; text that ends in a partial UTF-8
        character waits for the next token.
        """
        prefix = self.tokenizer.decode(seq.ids[seq.prefix_offset : seq.read_offset], skip_special_tokens=True)
        text = self.tokenizer.decode(seq.ids[seq.prefix_offset :], skip_special_tokens=True)
        if len(text) > len(prefix) and not text.endswith("\ufffd") and text.startswith(prefix):
            piece = text[len(prefix) :]
            seq.prefix_offset, seq.read_offset = seq.read_offset, len(seq.ids)
            seq.pieces.append(piece)
            self._text(seq.req, piece)

    def _finish(self, seq: Seq) -> None:
        with self._tok_lock:
            full = self.tokenizer.decode(seq.ids, skip_special_tokens=True)
        streamed = "".join(seq.pieces)
        if full.startswith(streamed) and len(full) > len(streamed):
            # Flush text held back at the end (e.g. a trailing partial character).
            rest = full[len(streamed) :]
            seq.pieces.append(rest)
            self._text(seq.req, rest)
        self._done(seq.req, self._outcome(seq, seq.finish))

    def _outcome(self, seq: Seq, reason: str, error: BaseException | None = None) -> Outcome:
        now = time.perf_counter()
        return Outcome(
            text="".join(seq.pieces),
            prompt_tokens=len(seq.req.input_ids),
            completion_tokens=len(seq.ids),
            finish_reason=reason,
            error=error,
            queued_s=seq.started_at - seq.req.submitted_at,
            first_token_s=None if seq.first_at is None else seq.first_at - seq.req.submitted_at,
            generate_s=now - seq.started_at,
        )

    def _fail_all(self, exc: BaseException) -> None:
        seqs = self._seqs
        self._clear()
        self._release_memory()
        for seq in seqs:
            self._done(seq.req, self._outcome(seq, "error", exc))


def _run_all(calls: list[tuple[Callable[[Any], None], Any]]) -> None:
    for fn, arg in calls:
        fn(arg)
