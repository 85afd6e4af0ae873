"""The vision intent: image captioning and visual question answering.

Two kinds of transformers model load here:

* a captioner (``VisionEncoderDecoderModel``, e.g. ViT+GPT2) describes the
  image; it cannot take a question, so the prompt is not used;
* an image-text-to-text model (``AutoModelForImageTextToText``: BLIP, LLaVA,
  Qwen2-VL, SmolVLM ...) answers the prompt about the image, through the
  processor's chat template where it has one.

The image rides as an attachment and is decoded and checked
(:mod:`worker.media`) in ``validate``, before any model runs. Text streams as
tokens while it is generated.
"""

from __future__ import annotations

import asyncio
import threading
import time
from typing import Any

from broker.protocol import Usage, Work, WorkResult
from worker.backends.base import Backend, BadInput, Device, Emitter
from worker.backends.params import Param, Params
from worker.media import MAX_ATTACHMENT_BYTES, MAX_IMAGE_PIXELS, load_image

DEFAULT_QUESTION = "Describe this image."
MAX_NEW_TOKENS = 512
DEFAULT_NEW_TOKENS = 64
MAX_PROMPT_CHARS = 4000


def _streamer(tokenizer: Any, out: Emitter) -> Any:
    """A ``generate(streamer=...)`` that forwards new text to the Emitter from the model thread.

    It also keeps the text and counts the new tokens: models differ in what
    ``generate`` returns (the prompt echoed, a start token, the prompt with its
    first token swapped ...), but every one streams the prompt first and then
    only new tokens, so the streamer's view is the answer.
    """
    from transformers import TextStreamer

    class EmitterStreamer(TextStreamer):
        def __init__(self) -> None:
            super().__init__(tokenizer, skip_prompt=True, skip_special_tokens=True)
            self.parts: list[str] = []
            self.new_tokens = 0

        def put(self, value: Any) -> None:
            if not self.next_tokens_are_prompt:
                self.new_tokens += int(value.numel())
            super().put(value)

        def on_finalized_text(self, text: str, stream_end: bool = False) -> None:
            if not self.parts:
                text = text.lstrip()  # the answer, not the separator after the prompt
            if text:
                self.parts.append(text)
                out.token_threadsafe(text)

    return EmitterStreamer()


def _until_cancelled(out: Emitter) -> Any:
    """Stopping criteria that end generation at the next token once the job is cancelled."""
    import torch
    from transformers import StoppingCriteria, StoppingCriteriaList

    class UntilCancelled(StoppingCriteria):
        def __call__(self, input_ids: Any, scores: Any, **kwargs: Any) -> Any:
            return torch.full((input_ids.shape[0],), out.cancelled, dtype=torch.bool, device=input_ids.device)

    return StoppingCriteriaList([UntilCancelled()])


class VisionBackend(Backend):
    """Caption or answer questions about an image. Options: max_image_bytes, max_pixels."""

    intent = "vision"
    PARAMS = Params(
        "vision",
        Param("max_tokens", (int,), "the most tokens to generate (default: the model's own setting)",
              low=1, high=MAX_NEW_TOKENS),
    )

    def __init__(self, model: str | None, device: Device, **options: Any) -> None:
        super().__init__(model, device, **options)
        self._model: Any = None
        self._processor: Any = None  # image-text-to-text: one processor for both
        self._image_processor: Any = None  # captioner
        self._tokenizer: Any = None
        self.answers_questions = False
        self._lock = threading.Lock()
        self._max_bytes = int(options.get("max_image_bytes", MAX_ATTACHMENT_BYTES))
        self._max_pixels = int(options.get("max_pixels", MAX_IMAGE_PIXELS))

    def load(self) -> None:
        if not self.model:
            raise ValueError("the vision backend needs --model: a transformers model id or directory")
        from transformers import AutoConfig

        config = AutoConfig.from_pretrained(self.model)
        if config.model_type == "vision-encoder-decoder":
            from transformers import AutoImageProcessor, AutoTokenizer, VisionEncoderDecoderModel

            model: Any = VisionEncoderDecoderModel.from_pretrained(self.model, dtype=self.device.torch_dtype)
            self._image_processor = AutoImageProcessor.from_pretrained(self.model)
            self._tokenizer = AutoTokenizer.from_pretrained(self.model)
        else:
            from transformers import AutoModelForImageTextToText, AutoProcessor

            model = AutoModelForImageTextToText.from_pretrained(self.model, dtype=self.device.torch_dtype)
            self._processor = AutoProcessor.from_pretrained(self.model)
            self._tokenizer = getattr(self._processor, "tokenizer", self._processor)
            self.answers_questions = True
        self._model = model.to(self.device.torch_device).eval()

    def info(self) -> dict[str, Any]:
        return {"questions": self.answers_questions, "max_image_bytes": self._max_bytes, "device": self.device.name}

    def _max_tokens(self, work: Work) -> int | None:
        # None: the model's own generation config decides, capped in _generate.
        value: int | None = self.params.parse(work.params)["max_tokens"]
        return value

    def validate(self, work: Work) -> None:
        if len(work.prompt) > MAX_PROMPT_CHARS:
            raise BadInput(
                "prompt_too_long", f"the question is {len(work.prompt)} characters", f"keep it under {MAX_PROMPT_CHARS}"
            )
        self._max_tokens(work)
        load_image(work, max_bytes=self._max_bytes, max_pixels=self._max_pixels)

    async def run(self, work: Work, out: Emitter) -> WorkResult:
        max_tokens = self._max_tokens(work)
        image = load_image(work, max_bytes=self._max_bytes, max_pixels=self._max_pixels)
        started = time.perf_counter()
        text, prompt_tokens, new_tokens = await asyncio.to_thread(
            self._generate, image, work.prompt.strip(), max_tokens, out
        )
        return WorkResult(
            guid=work.guid,
            text=text,
            model=self.model_name,
            timings={"run_s": time.perf_counter() - started},
            usage=Usage(prompt_tokens=prompt_tokens, completion_tokens=new_tokens, images=1),
        )

    def _inputs(self, image: Any, question: str) -> dict[str, Any]:
        if not self.answers_questions:
            pixels = self._image_processor(images=image, return_tensors="pt").pixel_values
            return {"pixel_values": pixels}
        processor = self._processor
        question = question or DEFAULT_QUESTION
        if getattr(processor, "chat_template", None):
            messages = [{"role": "user", "content": [{"type": "image"}, {"type": "text", "text": question}]}]
            text = processor.apply_chat_template(messages, add_generation_prompt=True)
            return dict(processor(images=image, text=text, return_tensors="pt"))
        return dict(processor(images=image, text=question, return_tensors="pt"))

    def _generate(self, image: Any, question: str, max_tokens: int | None, out: Emitter) -> tuple[str, int, int]:
        import torch

        if max_tokens is None:
            configured = getattr(self._model.generation_config, "max_new_tokens", None)
            max_tokens = min(configured or DEFAULT_NEW_TOKENS, MAX_NEW_TOKENS)

        inputs = self._inputs(image, question)
        dtype = self.device.torch_dtype
        inputs = {
            k: (v.to(self.device.torch_device, dtype) if v.is_floating_point() else v.to(self.device.torch_device))
            for k, v in inputs.items()
            if hasattr(v, "to")
        }
        prompt_len = int(inputs["input_ids"].shape[-1]) if "input_ids" in inputs else 0
        streamer = _streamer(self._tokenizer, out)
        with self._lock:
            try:
                with torch.inference_mode():
                    self._model.generate(
                        **inputs,
                        max_new_tokens=max_tokens,
                        streamer=streamer,
                        stopping_criteria=_until_cancelled(out),
                    )
            except torch.cuda.OutOfMemoryError:
                torch.cuda.empty_cache()
                raise
        # Exactly the streamed text, so a client can check its stream against the result.
        return "".join(streamer.parts), prompt_len, streamer.new_tokens

    def close(self) -> None:
        self._model = None
