"""Continuous batching on an int8 ONNX build with onnxruntime: the CPU chat runtime.

onnxruntime-genai builds the model (``worker.onnx_build``); serving runs the
built graph with plain onnxruntime, because onnxruntime-genai's own
``Engine`` only batches paged-attention models (CUDA) and on CPU re-runs each
sequence alone (measured here: 24 tok/s for one stream, 44 for four), and its
``Generator`` cannot add a row to a running batch.

The graph's attention (GroupQueryAttention) reads each row's length from the
attention mask and writes the new keys and values at that row's own offset,
so rows need no alignment: every row owns a slot of one key/value buffer per
layer, ``[rows, kv_heads, length, head_size]``, bound as both the past input
and the present output (the kernel updates it in place; nothing is copied per
step). A newcomer is prefilled into the next free slot, in chunks of
:data:`PREFILL_CHUNK` tokens so a long prompt never materialises a
``[prompt, vocab]`` logits block, and decodes with the others from the next
step on. A finished row's slot is refilled by moving the last row into it.
The buffers grow by doubling and are freed when the batch drains, so an idle
engine holds no cache.

Greedy rows are exactly what the same prompt gives alone (each row's
attention only reads its own slot), which the tests check.
"""

from __future__ import annotations

import json
import os
import threading
from pathlib import Path
from typing import Any

from worker.backends.batching import BatchEngineBase, GenRequest, Seq

PREFILL_CHUNK = 128
LENGTH_STEP = 128  # the cache length grows in multiples of this


def default_threads() -> int:
    """Every CPU this process may use (ORT's own default also counts busy siblings)."""
    try:
        return max(1, len(os.sched_getaffinity(0)))
    except AttributeError:  # not Linux
        return max(1, os.cpu_count() or 1)


class OrtModel:
    """One onnxruntime session over a built model, and the layout of its cache."""

    def __init__(self, folder: Path, threads: int | None = None) -> None:
        import numpy as np
        import onnxruntime as ort

        config = json.loads((folder / "genai_config.json").read_text())["model"]
        decoder = config["decoder"]
        self.layers = int(decoder["num_hidden_layers"])
        self.kv_heads = int(decoder["num_key_value_heads"])
        self.head_size = int(decoder["head_size"])
        self.context = int(config.get("context_length") or 2048)
        names = decoder.get("inputs", {})
        outputs = decoder.get("outputs", {})
        self.past_key = names.get("past_key_names", "past_key_values.%d.key")
        self.past_value = names.get("past_value_names", "past_key_values.%d.value")
        self.present_key = outputs.get("present_key_names", "present.%d.key")
        self.present_value = outputs.get("present_value_names", "present.%d.value")
        self.input_ids = names.get("input_ids", "input_ids")
        self.attention_mask = names.get("attention_mask", "attention_mask")
        self.position_ids = names.get("position_ids", "position_ids")
        self.logits = outputs.get("logits", "logits")
        self.threads = threads or default_threads()
        options = ort.SessionOptions()
        options.intra_op_num_threads = self.threads
        options.inter_op_num_threads = 1
        # No busy-waiting between steps: on a machine shared with other work
        # the spinning threads steal the cores the next step needs (measured
        # here under load: 14 tok/s spinning, 27-47 without), and they would
        # burn a core after every answer.
        options.add_session_config_entry("session.intra_op.allow_spinning", "0")
        options.log_severity_level = 3
        self.session = ort.InferenceSession(
            str(folder / decoder["filename"]), options, providers=["CPUExecutionProvider"]
        )
        inputs = {i.name: i for i in self.session.get_inputs()}
        self.has_positions = self.position_ids in inputs
        kv_type = inputs[self.past_key % 0].type
        self.kv_dtype = np.float16 if "float16" in kv_type else np.float32
        known = {self.input_ids, self.attention_mask, self.position_ids}
        known |= {self.past_key % i for i in range(self.layers)} | {self.past_value % i for i in range(self.layers)}
        extra = sorted(set(inputs) - known)
        if extra:
            raise ValueError(f"this ONNX model needs inputs the runtime does not feed: {', '.join(extra)}")

    def new_cache(self, rows: int, length: int) -> tuple[list[Any], list[Any]]:
        """Zeroed key and value buffers, one per layer, ``[rows, kv_heads, length, head_size]``."""
        import numpy as np

        shape = (rows, self.kv_heads, length, self.head_size)
        keys = [np.zeros(shape, self.kv_dtype) for _ in range(self.layers)]
        values = [np.zeros(shape, self.kv_dtype) for _ in range(self.layers)]
        return keys, values

    def bind_cache(self, binding: Any, keys: list[Any], values: list[Any], start: int, rows: int) -> None:
        """Bind rows ``start..start+rows`` of the buffers as past input and present output alike."""
        import numpy as np

        element = np.dtype(self.kv_dtype)
        for layer in range(self.layers):
            for past, present, buffers in (
                (self.past_key, self.present_key, keys),
                (self.past_value, self.present_value, values),
            ):
                array = buffers[layer]
                shape = (rows, *array.shape[1:])
                pointer = array.ctypes.data + start * array.strides[0]
                binding.bind_input(past % layer, "cpu", 0, element, shape, pointer)
                binding.bind_output(present % layer, "cpu", 0, element, shape, pointer)

    def forward(self, binding: Any, ids: Any, mask: Any, positions: Any) -> Any:
        """Run the graph on a binding whose cache is bound; logits ``[rows, tokens, vocab]``."""
        binding.bind_cpu_input(self.input_ids, ids)
        binding.bind_cpu_input(self.attention_mask, mask)
        if self.has_positions:
            binding.bind_cpu_input(self.position_ids, positions)
        binding.bind_output(self.logits)
        self.session.run_with_iobinding(binding)
        return binding.get_outputs()[-1].numpy()

    def predictions(self, ids: list[int]) -> list[int]:
        """The top-1 next token after every prefix of ``ids`` (teacher forcing), for quality checks."""
        import numpy as np

        keys, values = self.new_cache(1, len(ids))
        binding = self.session.io_binding()
        self.bind_cache(binding, keys, values, 0, 1)
        best: list[int] = []
        for start in range(0, len(ids), PREFILL_CHUNK):
            chunk = ids[start : start + PREFILL_CHUNK]
            end = start + len(chunk)
            logits = self.forward(
                binding,
                np.asarray([chunk], dtype=np.int64),
                np.ones((1, end), dtype=np.int64),
                np.arange(start, end, dtype=np.int64)[None, :],
            )
            best.extend(int(t) for t in logits[0].argmax(axis=-1))
        return best


class OrtBatchEngine(BatchEngineBase):
    """Runs an :class:`OrtModel` for every chat of one backend in one thread."""

    def __init__(
        self,
        model: OrtModel,
        tokenizer: Any,
        tokenizer_lock: threading.Lock,
        *,
        eos_ids: set[int],
        max_context: int,
        max_batch: int = 32,
    ) -> None:
        super().__init__(tokenizer, tokenizer_lock, eos_ids=eos_ids, max_context=max_context, max_batch=max_batch)
        self.model = model
        self._keys: list[Any] = []  # per layer [rows_cap, kv_heads, len_cap, head_size]
        self._values: list[Any] = []
        self._rows_cap = 0
        self._len_cap = 0
        self._bound: tuple[int, int, int] | None = None  # (rows, len_cap, generation) of _binding
        self._binding: Any = None
        self._generation = 0  # bumps whenever the buffers are reallocated

    # --- the cache --------------------------------------------------------

    def _reserve(self, rows: int, length: int) -> None:
        """Make the buffers hold ``rows`` rows of ``length`` positions, keeping their contents."""
        if rows <= self._rows_cap and length <= self._len_cap:
            return
        new_rows = max(rows, min(self.max_batch, max(1, self._rows_cap * 2)))
        new_len = max(length, min(self.max_context, self._len_cap * 2))
        new_len = min(-(-new_len // LENGTH_STEP) * LENGTH_STEP, max(self.max_context, length))
        keys, values = self.model.new_cache(new_rows, new_len)
        used = len(self._seqs)
        if used and self._keys:
            for layer in range(self.model.layers):
                keys[layer][:used, :, : self._len_cap] = self._keys[layer][:used]
                values[layer][:used, :, : self._len_cap] = self._values[layer][:used]
        self._keys, self._values = keys, values
        self._rows_cap, self._len_cap = new_rows, new_len
        self._generation += 1

    def _move_row(self, src: int, dst: int) -> None:
        for k, v in zip(self._keys, self._values, strict=True):
            k[dst] = k[src]
            v[dst] = v[src]

    def _forward(self, start: int, ids: Any, mask: Any, positions: Any) -> Any:
        """Logits ``[rows, tokens, vocab]`` for ``ids`` fed to rows ``start..start+rows``."""
        rows = ids.shape[0]
        key = (rows, self._len_cap, self._generation)
        if start == 0 and self._bound == key:
            binding = self._binding  # the decode step's cache bindings are unchanged
        else:
            binding = self.model.session.io_binding()
            self.model.bind_cache(binding, self._keys, self._values, start, rows)
            if start == 0:
                self._binding, self._bound = binding, key
        return self.model.forward(binding, ids, mask, positions)

    # --- batching ---------------------------------------------------------

    def _admit(self, reqs: list[GenRequest]) -> None:
        import numpy as np

        for req in reqs:
            if self._cancelled_early(req):
                continue
            rng = np.random.default_rng(req.params.seed) if req.params.temperature > 0 else None
            seq = Seq(req, rng)
            slot = len(self._seqs)
            try:
                logits = self._prefill(slot, req.input_ids)
                token = self._sample(logits[None, :], [seq])[0]
            except Exception as exc:  # a bad prefill fails only this newcomer
                self._done(req, self._outcome(seq, "error", exc))
                continue
            self._seqs.append(seq)
            self._accept([seq], [token])

    def _prefill(self, slot: int, prompt: list[int]) -> Any:
        """Run ``prompt`` into ``slot``'s cache; the logits after its last token."""
        import numpy as np

        self._reserve(slot + 1, len(prompt) + 1)
        logits = None
        for start in range(0, len(prompt), PREFILL_CHUNK):
            chunk = prompt[start : start + PREFILL_CHUNK]
            end = start + len(chunk)
            ids = np.asarray([chunk], dtype=np.int64)
            mask = np.ones((1, end), dtype=np.int64)
            positions = np.arange(start, end, dtype=np.int64)[None, :]
            logits = self._forward(slot, ids, mask, positions)[0, -1]
        return logits

    def _step(self) -> None:
        import numpy as np

        self._mark_cancelled()
        self._drop_finished()
        if not self._seqs:
            return
        rows = len(self._seqs)
        self.max_rows_seen = max(self.max_rows_seen, rows)
        lengths = np.asarray([seq.cache_len for seq in self._seqs], dtype=np.int64)
        total = int(lengths.max()) + 1
        self._reserve(rows, total)
        ids = np.asarray([[seq.next_token] for seq in self._seqs], dtype=np.int64)
        mask = (np.arange(total, dtype=np.int64)[None, :] <= lengths[:, None]).astype(np.int64)
        logits = self._forward(0, ids, mask, lengths[:, None])
        tokens = self._sample(logits[:, -1, :], self._seqs)
        self.steps += 1
        for seq in self._seqs:
            seq.cache_len += 1
        self._accept(self._seqs, tokens)
        self._drop_finished()

    def _sample(self, logits: Any, seqs: list[Seq]) -> list[int]:
        import numpy as np

        chosen = [int(t) for t in logits.argmax(axis=-1)]
        for row, seq in enumerate(seqs):
            p = seq.req.params
            if p.temperature <= 0:
                continue
            z = logits[row].astype(np.float64) / p.temperature
            probs = np.exp(z - z.max())
            probs /= probs.sum()
            if p.top_p < 1.0:
                order = np.argsort(-probs, kind="stable")
                ranked = probs[order]
                # Keep the smallest prefix whose mass reaches top_p (always >= 1 token).
                ranked[np.cumsum(ranked) - ranked > p.top_p] = 0.0
                probs = np.zeros_like(probs)
                probs[order] = ranked
                probs /= probs.sum()
            chosen[row] = int(seq.generator.choice(probs.shape[0], p=probs))
        return chosen

    def _drop_finished(self) -> None:
        if not any(seq.finish for seq in self._seqs):
            return
        for seq in self._seqs:
            if seq.finish:
                self._finish(seq)
        row = 0
        while row < len(self._seqs):
            if self._seqs[row].finish:
                last = len(self._seqs) - 1
                if row != last:
                    self._move_row(last, row)
                    self._seqs[row] = self._seqs[last]
                self._seqs.pop()
            else:
                row += 1
        if not self._seqs:
            self._clear()

    def _clear(self) -> None:
        had_cache = bool(self._keys)
        self._seqs = []
        self._keys, self._values = [], []
        self._rows_cap = self._len_cap = 0
        self._binding, self._bound = None, None
        self._generation += 1
        if had_cache:
            # The cache's buffers (a few MB each) come from the heap, which glibc
            # keeps after they are freed: a 16-chat burst would stay resident.
            from worker.keepalive import trim_heap

            trim_heap()
