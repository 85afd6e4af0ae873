"""Continuous batching for transformers causal LMs (GPU workers, and the CPU fallback).

The running batch's KV cache is a transformers ``DynamicCache``, left-padded
to a common length: newcomers are prefilled together (left-padded) and their
cache is left-padded or the running one is, then rows are stacked. Per-row
position ids keep each left-padded row's attention identical to running it
alone, so greedy rows match. Columns that have become padding for every row
are trimmed when rows leave, so a long-gone long prompt costs nothing.

Models whose cache is not a plain per-layer key/value store (sliding-window or
recurrent layers) still batch the requests that arrive together, but a newcomer
waits for the running batch to drain instead of being merged into it.
"""

from __future__ import annotations

import contextlib
import inspect
import threading
from collections.abc import Iterator
from typing import Any

from worker.backends.batching import BatchEngineBase, GenRequest, Seq


class TorchBatchEngine(BatchEngineBase):
    """Runs a transformers model for every chat of one backend in one thread."""

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
        super().__init__(tokenizer, tokenizer_lock, eos_ids=eos_ids, max_context=max_context, max_batch=max_batch)
        self.model = model
        self.pad_id = pad_id
        self.device = next(model.parameters()).device
        # Only the last position's logits are needed after a prefill; most
        # models can skip computing the rest (a [rows, prompt, vocab] tensor).
        accepted = inspect.signature(model.forward).parameters
        self._prefill_kwargs: dict[str, Any] = {"logits_to_keep": 1} if "logits_to_keep" in accepted else {}
        # Per-row positions keep left-padded rows exact; models without the
        # argument (ALiBi ones) derive positions from the attention mask.
        self._positions = "position_ids" in accepted
        self._cache: Any = None
        self._mask: Any = None  # [B, T] long, 1 = real token
        self._next: Any = None  # [B, 1] the token each row feeds next
        self._mergeable = True

    @contextlib.contextmanager
    def _thread_scope(self) -> Iterator[None]:
        import torch

        with torch.inference_mode():
            yield

    def _can_merge(self) -> bool:
        return self._mergeable

    def _admit(self, reqs: list[GenRequest]) -> None:
        import torch

        seqs = []
        for req in reqs:
            if self._cancelled_early(req):
                continue
            gen = None
            if req.params.temperature > 0:
                gen = torch.Generator(device=self.device)
                gen.manual_seed(req.params.seed)
            seqs.append(Seq(req, gen))
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

    def _merge(self, seqs: list[Seq], cache: Any, mask: Any, nxt: Any) -> None:
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

        self._mark_cancelled()
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

    def _sample(self, logits: Any, seqs: list[Seq]) -> list[int]:
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

    def _clear(self) -> None:
        self._seqs, self._cache, self._mask, self._next = [], None, None, None

    def _release_memory(self) -> None:
        import torch

        if self.device.type == "cuda":
            torch.cuda.empty_cache()

