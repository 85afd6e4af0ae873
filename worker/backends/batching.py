"""Continuous batching for causal LMs: one forward pass per step for every live chat.

A single engine thread owns the model. Requests arrive from the event loop
(`submit`), wait at most one decode step, are prefilled together (left-padded)
and then merged into the running batch, whose KV cache is left-padded to a
common length. Each step feeds every live sequence its last token in one
forward pass, samples each row with its own temperature, top-p and seeded
generator, and streams each row's new text to its own callback. Finished,
cancelled or aborted rows leave the batch at once, and columns that have become
padding for every row are trimmed, so a long-gone long prompt costs nothing.

Decode on a GPU is bound by reading the weights, so B sequences per pass cost
little more than one: that is the whole gain. Greedy rows give the same tokens
batched as alone (left padding plus per-row position ids keep each row's
attention identical), which the tests check.

Models whose cache is not a plain per-layer key/value store (sliding-window or
recurrent layers) still batch the requests that arrive together, but a newcomer
waits for the running batch to drain instead of being merged into it.
"""

from __future__ import annotations

import asyncio
import inspect
import threading
import time
from collections.abc import Callable
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


class _Seq:
    """Per-row state: generated ids and the incremental detokenizer's offsets."""

    __slots__ = (
        "cache_len",
        "finish",
        "first_at",
        "generator",
        "ids",
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
        self.prefix_offset = 0
        self.read_offset = 0
        self.pieces: list[str] = []
        self.generator = generator
        self.started_at = time.perf_counter()
        self.first_at: float | None = None
        self.finish = ""


class BatchEngine:
    """Runs the model for every chat of one backend in one thread."""

    def __init__(
        self,
        model: Any,
        tokenizer: Any,
        tokenizer_lock: threading.Lock,
        *,
        eos_ids: set[int],
        pad_id: int,
        max_context: int,
        max_batch: int = 32,
    ) -> None:
        self.model = model
        self.tokenizer = tokenizer
        self._tok_lock = tokenizer_lock
        self.eos_ids = eos_ids
        self.pad_id = pad_id
        self.max_context = max_context
        self.max_batch = max_batch
        self.device = next(model.parameters()).device
        # Only the last position's logits are needed after a prefill; most
        # models can skip computing the rest (a [rows, prompt, vocab] tensor).
        accepted = inspect.signature(model.forward).parameters
        self._prefill_kwargs: dict[str, Any] = (
            {"logits_to_keep": 1} if "logits_to_keep" in accepted else {}
        )
        # Per-row positions keep left-padded rows exact; models without the
        # argument (ALiBi ones) derive positions from the attention mask.
        self._positions = "position_ids" in accepted
        self._pending: list[GenRequest] = []
        self._cond = threading.Condition()
        self._stopping = False
        self._thread: threading.Thread | None = None
        # Running batch (engine thread only).
        self._seqs: list[_Seq] = []
        self._cache: Any = None
        self._mask: Any = None  # [B, T] long, 1 = real token
        self._next: Any = None  # [B, 1] the token each row feeds next
        self._mergeable = True
        self._posts: list[tuple[GenRequest, Callable[[Any], None], Any]] = []
        self.steps = 0  # decode passes run, for benchmarks
        self.max_rows_seen = 0

    # --- event-loop side -------------------------------------------------

    def start(self) -> None:
        self._thread = threading.Thread(target=self._run, name="mtor-chat-batch", daemon=True)
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

    # --- engine thread ---------------------------------------------------

    def _run(self) -> None:
        import torch

        with torch.inference_mode():
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
                    if room > 0 and (self._mergeable or not self._seqs):
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
                self._flush()
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

    def _flush(self) -> None:
        """Hand this step's callbacks to their loops, one wake-up per loop."""
        if not self._posts:
            return
        by_loop: dict[asyncio.AbstractEventLoop, list[tuple[Callable[[Any], None], Any]]] = {}
        for req, fn, arg in self._posts:
            by_loop.setdefault(req.loop, []).append((fn, arg))
        self._posts = []
        for loop, calls in by_loop.items():
            try:
                loop.call_soon_threadsafe(_run_all, calls)
            except RuntimeError:
                pass  # that loop is closed: nobody waits for its chats any more

    def _admit(self, reqs: list[GenRequest]) -> None:
        import torch

        seqs = []
        for req in reqs:
            if req.is_cancelled():
                self._done(req, Outcome(finish_reason="cancelled", prompt_tokens=len(req.input_ids)))
                continue
            gen = None
            if req.params.temperature > 0:
                gen = torch.Generator(device=self.device)
                gen.manual_seed(req.params.seed)
            seqs.append(_Seq(req, gen))
        if not seqs:
            return
        width = max(len(s.req.input_ids) for s in seqs)
        ids = torch.full((len(seqs), width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((len(seqs), width), dtype=torch.long)
        for row, seq in enumerate(seqs):
            n = len(seq.req.input_ids)
            ids[row, width - n :] = torch.tensor(seq.req.input_ids, dtype=torch.long)
            mask[row, width - n :] = 1
        ids, mask = ids.to(self.device), mask.to(self.device)
        positions = (mask.cumsum(-1) - 1).clamp(min=0)
        try:
            cache = self._new_cache()
            out = self.model(
                input_ids=ids,
                attention_mask=mask,
                past_key_values=cache,
                use_cache=True,
                **self._prefill_kwargs,
                **self._position_kwargs(positions),
            )
            tokens = self._sample(out.logits[:, -1, :], seqs)
        except Exception as exc:  # a bad prefill fails only the newcomers
            self._release_memory()
            for seq in seqs:
                self._done(seq.req, self._outcome(seq, "error", exc))
            return
        nxt = torch.tensor(tokens, dtype=torch.long, device=self.device).unsqueeze(-1)
        self._merge(seqs, out.past_key_values, mask, nxt)
        self._accept(seqs, tokens)

    def _position_kwargs(self, positions: Any) -> dict[str, Any]:
        return {"position_ids": positions} if self._positions else {}

    def _new_cache(self) -> Any:
        from transformers import DynamicCache

        return DynamicCache(config=self.model.config)

    def _merge(self, seqs: list[_Seq], cache: Any, mask: Any, nxt: Any) -> None:
        import torch
        from transformers.cache_utils import DynamicLayer

        layers = getattr(cache, "layers", None) or []
        self._mergeable = bool(layers) and all(type(layer) is DynamicLayer for layer in layers)
        if not self._seqs:
            self._seqs, self._cache, self._mask, self._next = seqs, cache, mask, nxt
            return
        # Left-pad the shorter of the two caches so columns line up, then stack rows.
        old_t, new_t = self._mask.shape[1], mask.shape[1]
        width = max(old_t, new_t)

        def pad(t: Any, n: int) -> Any:
            if n == 0:
                return t
            shape = list(t.shape)
            shape[-2 if t.dim() == 4 else -1] = n
            return torch.cat([t.new_zeros(shape), t], dim=-2 if t.dim() == 4 else -1)

        for old, new in zip(self._cache.layers, cache.layers, strict=False):
            old.keys = torch.cat([pad(old.keys, width - old_t), pad(new.keys, width - new_t)], 0)
            old.values = torch.cat(
                [pad(old.values, width - old_t), pad(new.values, width - new_t)], 0
            )
        self._mask = torch.cat([pad(self._mask, width - old_t), pad(mask, width - new_t)], 0)
        self._next = torch.cat([self._next, nxt], 0)
        self._seqs = self._seqs + seqs

    def _step(self) -> None:
        import torch

        for seq in self._seqs:
            if seq.req.is_cancelled():
                seq.finish = "cancelled"
        self._drop_finished()
        if not self._seqs:
            return
        self.max_rows_seen = max(self.max_rows_seen, len(self._seqs))
        ones = self._mask.new_ones((self._mask.shape[0], 1))
        self._mask = torch.cat([self._mask, ones], dim=1)
        positions = self._mask.sum(-1, keepdim=True) - 1
        try:
            out = self.model(
                input_ids=self._next,
                attention_mask=self._mask,
                past_key_values=self._cache,
                use_cache=True,
                **self._position_kwargs(positions),
            )
            tokens = self._sample(out.logits[:, -1, :], self._seqs)
        except Exception as exc:  # e.g. CUDA OOM: fail this batch, keep serving
            self._fail_all(exc)
            return
        self.steps += 1
        for seq in self._seqs:
            seq.cache_len += 1
        self._next = torch.tensor(tokens, dtype=torch.long, device=self.device).unsqueeze(-1)
        self._accept(self._seqs, tokens)
        self._drop_finished()

    def _sample(self, logits: Any, seqs: list[_Seq]) -> list[int]:
        import torch

        logits = logits.float()
        chosen = logits.argmax(dim=-1)
        for row, seq in enumerate(seqs):
            p = seq.req.params
            if p.temperature <= 0:
                continue
            probs = torch.softmax(logits[row] / p.temperature, dim=-1)
            if p.top_p < 1.0:
                sorted_probs, order = probs.sort(descending=True)
                # Keep the smallest prefix whose mass reaches top_p (always >= 1 token).
                drop = sorted_probs.cumsum(-1) - sorted_probs > p.top_p
                sorted_probs[drop] = 0.0
                probs = torch.zeros_like(probs).scatter_(0, order, sorted_probs)
            chosen[row] = torch.multinomial(probs, 1, generator=seq.generator)[0]
        return chosen.tolist()

    def _accept(self, seqs: list[_Seq], tokens: list[int]) -> None:
        now = time.perf_counter()
        with self._tok_lock:
            for seq, tok in zip(seqs, tokens, strict=False):
                if seq.first_at is None:
                    seq.first_at = now
                if tok in self.eos_ids:
                    seq.finish = "stop"
                    continue
                seq.ids.append(tok)
                self._stream(seq)
                if len(seq.ids) >= seq.req.params.max_tokens:
                    seq.finish = "length"
                elif seq.cache_len + 1 >= self.max_context:
                    seq.finish = "length"

    def _stream(self, seq: _Seq) -> None:
        """Emit the text the newest token completes (incremental detokenization).

        Decoding a short window before the new tokens keeps the spacing that
        tokenizers only produce in context; text that ends in a partial UTF-8
        character waits for the next token.
        """
        prefix = self.tokenizer.decode(
            seq.ids[seq.prefix_offset : seq.read_offset], skip_special_tokens=True
        )
        text = self.tokenizer.decode(seq.ids[seq.prefix_offset :], skip_special_tokens=True)
        if len(text) > len(prefix) and not text.endswith("\ufffd") and text.startswith(prefix):
            piece = text[len(prefix) :]
            seq.prefix_offset, seq.read_offset = seq.read_offset, len(seq.ids)
            seq.pieces.append(piece)
            self._text(seq.req, piece)

    def _drop_finished(self) -> None:
        if not any(seq.finish for seq in self._seqs):
            return
        keep = [i for i, seq in enumerate(self._seqs) if not seq.finish]
        for seq in self._seqs:
            if seq.finish:
                self._finish(seq)
        if not keep:
            self._clear()
            return
        import torch

        index = torch.tensor(keep, dtype=torch.long, device=self.device)
        for layer in self._cache.layers:
            layer.batch_select_indices(index)
        self._seqs = [self._seqs[i] for i in keep]
        self._mask = self._mask.index_select(0, index)
        self._next = self._next.index_select(0, index)
        if self._mergeable:
            self._trim()

    def _trim(self) -> None:
        """Drop leading columns that are padding for every remaining row."""
        width = self._mask.shape[1]
        cut = width - max(seq.cache_len for seq in self._seqs)
        if cut <= 0:
            return
        for layer in self._cache.layers:
            layer.keys = layer.keys[:, :, cut:, :]
            layer.values = layer.values[:, :, cut:, :]
        self._mask = self._mask[:, cut:]

    def _finish(self, seq: _Seq) -> None:
        with self._tok_lock:
            full = self.tokenizer.decode(seq.ids, skip_special_tokens=True)
        streamed = "".join(seq.pieces)
        if full.startswith(streamed) and len(full) > len(streamed):
            # Flush text held back at the end (e.g. a trailing partial character).
            rest = full[len(streamed) :]
            seq.pieces.append(rest)
            self._text(seq.req, rest)
        self._done(seq.req, self._outcome(seq, seq.finish))

    def _outcome(self, seq: _Seq, reason: str, error: BaseException | None = None) -> Outcome:
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

    def _clear(self) -> None:
        self._seqs, self._cache, self._mask, self._next = [], None, None, None

    def _release_memory(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.empty_cache()


def _run_all(calls: list[tuple[Callable[[Any], None], Any]]) -> None:
    for fn, arg in calls:
        fn(arg)
