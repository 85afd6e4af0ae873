"""The imagine intent: text-to-image with diffusers.

Any pipeline id or local directory that ``AutoPipelineForText2Image`` (or,
failing that, ``DiffusionPipeline``) loads works: Stable Diffusion 1.x/2.x,
SDXL, and the tiny pipelines the tests build. Each denoising step is streamed
as ``progress{step,total}`` through ``callback_on_step_end`` (every
``preview_every`` steps with a small preview PNG made from the latents); the
result carries the PNG as an image attachment.

Parameters (all optional, all checked in ``validate`` before the model runs):
``steps`` (1..max_steps), ``size`` ("WxH", or ``width``/``height``; each a
multiple of 8 within min_side..max_side and max_pixels in all), ``seed``,
``negative_prompt`` (or ``negative``) and ``guidance_scale`` (or
``guidance``), named as diffusers names them.
"""

from __future__ import annotations

import asyncio
import random
import re
import threading
import time
from dataclasses import dataclass
from typing import Any

from broker.protocol import Attachment, Usage, Work, WorkResult
from worker.backends.base import Backend, BadInput, Device, Emitter
from worker.backends.params import Param, Params
from worker.media import png_attachment

DEFAULT_STEPS = 25
MAX_STEPS = 150
MIN_SIDE = 32
MAX_SIDE = 2048
MAX_PIXELS = 1024 * 1024
MAX_GUIDANCE = 30.0
MAX_NEGATIVE_CHARS = 2000
MAX_PROMPT_CHARS = 2000
MAX_SEED = 2**63 - 1

PREVIEW_EVERY = 5

# Stable Diffusion 1.x/2.x latent channels -> RGB, a linear fit that stands in
# for the VAE decoder: a blurry but recognisable preview for ~nothing.
_LATENT_RGB = (
    (0.3512, 0.2297, 0.3227),
    (0.3250, 0.4974, 0.2350),
    (-0.2829, 0.1762, 0.2721),
    (-0.2120, -0.2616, -0.7177),
)

_SIZE = re.compile(r"^\s*(\d+)\s*[xX×]\s*(\d+)\s*$")


@dataclass(frozen=True)
class ImagineParams:
    steps: int
    width: int | None  # None: the pipeline's native size
    height: int | None
    seed: int
    negative: str | None
    guidance: float | None  # None: the pipeline's default


def _size(value: int | str) -> tuple[int, int]:
    if isinstance(value, int):
        return value, value
    match = _SIZE.match(value)
    if match is None:
        raise BadInput("bad_params", f"size={value!r} is not WIDTHxHEIGHT", "e.g. --size 512x512")
    return int(match.group(1)), int(match.group(2))


IMAGINE_PARAMS = Params(
    "imagine",
    Param("steps", (int,), "denoising steps", default=DEFAULT_STEPS, low=1, high=MAX_STEPS, integer_text=True,
          example=f"e.g. --steps {DEFAULT_STEPS}"),
    Param("size", (int, str), "WIDTHxHEIGHT, each side a multiple of 8 (default: the model's native size)",
          convert=_size, example="e.g. --size 512x512"),
    Param("width", (int,), "the image width (instead of size)", integer_text=True, example="e.g. width=512"),
    Param("height", (int,), "the image height (instead of size)", integer_text=True, example="e.g. height=512"),
    Param("seed", (int,), "the noise seed (default: random, reported in the result)", low=0, high=MAX_SEED,
          integer_text=True, example="e.g. --seed 42"),
    Param("negative", (str,), "what the picture should not show", max_chars=MAX_NEGATIVE_CHARS,
          aliases=("negative_prompt",), example='e.g. --negative "blurry"'),
    Param("guidance", (float,), "how closely to follow the prompt (default: the pipeline's)", low=0.0,
          high=MAX_GUIDANCE, aliases=("guidance_scale",), example="e.g. guidance=7.5"),
)


def parse_params(
    params: dict[str, Any],
    *,
    max_steps: int = MAX_STEPS,
    min_side: int = MIN_SIDE,
    max_side: int = MAX_SIDE,
    max_pixels: int = MAX_PIXELS,
) -> ImagineParams:
    """Check and normalise imagine parameters; BadInput(bad_params) on anything off."""
    values = IMAGINE_PARAMS.narrowed(steps=(1, max_steps)).parse(params)
    width, height = values["size"] or (None, None)
    if values["width"] is not None:
        width = values["width"]
    if values["height"] is not None:
        height = values["height"]
    if (width is None) != (height is None):
        width = width or height
        height = height or width
    if width is not None and height is not None:
        size_hint = f"each side a multiple of 8 in {min_side}..{max_side}, at most {max_pixels} pixels, e.g. 512x512"
        for side in (width, height):
            if side % 8 or not min_side <= side <= max_side:
                raise BadInput("bad_params", f"size {width}x{height} is not supported", size_hint)
        if width * height > max_pixels:
            raise BadInput("bad_params", f"size {width}x{height} is too large", size_hint)
    # Chosen here when absent, reported in the result, so a person can reproduce a picture they like.
    seed = values["seed"] if values["seed"] is not None else random.randrange(2**31)
    return ImagineParams(values["steps"], width, height, seed, values["negative"] or None, values["guidance"])


def latent_preview(latents: Any) -> Attachment | None:
    """A small PNG of the first image's latents, or None for latents that are not SD-shaped."""
    import torch
    from PIL import Image

    if latents.ndim != 4 or latents.shape[1] != len(_LATENT_RGB):
        return None
    factors = torch.tensor(_LATENT_RGB, dtype=torch.float32)
    rgb = torch.einsum("chw,cr->hwr", latents[0].float().cpu(), factors)
    pixels = ((rgb + 1.0) * 127.5).clamp(0, 255).to(torch.uint8).numpy()
    return png_attachment(Image.fromarray(pixels, "RGB"), name="preview.png")


def load_pipeline(model: str, device: Device) -> Any:
    """A text-to-image pipeline for ``model`` (hub id or local dir) on ``device``."""
    from diffusers import AutoPipelineForText2Image, DiffusionPipeline

    kwargs: dict[str, Any] = {"dtype": device.torch_dtype}
    try:
        pipe = AutoPipelineForText2Image.from_pretrained(model, **kwargs)
    except ValueError:
        # A custom or community pipeline class that AutoPipeline does not map.
        pipe = DiffusionPipeline.from_pretrained(model, **kwargs)
    # The worker reports progress itself, as bus events.
    pipe.set_progress_bar_config(disable=True)
    return pipe.to(device.torch_device)


class ImagineBackend(Backend):
    """Text-to-image. Options: max_steps, min_side, max_side, max_pixels, preview_every."""

    intent = "imagine"
    PARAMS = IMAGINE_PARAMS

    def __init__(self, model: str | None, device: Device, **options: Any) -> None:
        super().__init__(model, device, **options)
        self._pipe: Any = None
        # A pipeline holds per-call scheduler state: one image at a time.
        self._lock = threading.Lock()
        # A rough picture every N steps (0: none), for clients that draw one while they wait.
        self._preview_every = int(options.get("preview_every", PREVIEW_EVERY))
        self._limits = {
            "max_steps": int(options.get("max_steps", MAX_STEPS)),
            "min_side": int(options.get("min_side", MIN_SIDE)),
            "max_side": int(options.get("max_side", MAX_SIDE)),
            "max_pixels": int(options.get("max_pixels", MAX_PIXELS)),
        }
        self.params = IMAGINE_PARAMS.narrowed(steps=(1, self._limits["max_steps"]))

    def load(self) -> None:
        if not self.model:
            raise ValueError("the imagine backend needs --model: a diffusers pipeline id or directory")
        self._pipe = load_pipeline(self.model, self.device)

    @property
    def pipeline(self) -> Any:
        """The loaded diffusers pipeline (benchmarks call it directly as their baseline)."""
        return self._pipe

    def native_size(self) -> tuple[int, int]:
        """The size the pipeline draws when none is asked for (its UNet's sample size)."""
        pipe = self._pipe
        unet = getattr(pipe, "unet", None) or getattr(pipe, "transformer", None)
        sample = getattr(getattr(unet, "config", None), "sample_size", 64)
        side = (sample[0] if isinstance(sample, (list, tuple)) else int(sample)) * int(
            getattr(pipe, "vae_scale_factor", 8)
        )
        return side, side

    def info(self) -> dict[str, Any]:
        width, height = self.native_size() if self._pipe is not None else (512, 512)
        return {
            "size": f"{width}x{height}",
            "side": [self._limits["min_side"], self._limits["max_side"]],
            "max_pixels": self._limits["max_pixels"],
            "device": self.device.name,
        }

    def validate(self, work: Work) -> None:
        if not work.prompt.strip():
            raise BadInput("bad_params", "nothing to imagine: the prompt is empty", 'e.g. mtor ask "imagine a neon mountain"')
        if len(work.prompt) > MAX_PROMPT_CHARS:
            raise BadInput("prompt_too_long", f"the prompt is {len(work.prompt)} characters", f"keep it under {MAX_PROMPT_CHARS}")
        parse_params(work.params, **self._limits)

    async def run(self, work: Work, out: Emitter) -> WorkResult:
        params = parse_params(work.params, **self._limits)
        started = time.perf_counter()
        image = await asyncio.to_thread(self._draw, work.prompt, params, out)
        elapsed = time.perf_counter() - started
        width, height = image.size
        return WorkResult(
            guid=work.guid,
            text=f"{width}x{height} image, {params.steps} steps, seed {params.seed}",
            attachments=[png_attachment(image, name=f"imagine-{params.seed}.png")],
            model=self.model_name,
            timings={"run_s": elapsed, "per_step_s": elapsed / params.steps},
            usage=Usage(images=1, steps=params.steps, pixels=width * height),
        )

    def _draw(self, prompt: str, params: ImagineParams, out: Emitter) -> Any:
        import torch

        every = self._preview_every

        def on_step_end(pipe: Any, step: int, timestep: Any, kwargs: dict[str, Any]) -> dict[str, Any]:
            done, total = step + 1, pipe.num_timesteps
            preview = None
            if every and done % every == 0 and done < total:
                preview = latent_preview(kwargs["latents"])
            out.progress_threadsafe(done, total, "denoising", preview)
            if out.cancelled:
                pipe._interrupt = True  # diffusers' documented way to stop between steps
            return kwargs

        call: dict[str, Any] = {
            "prompt": prompt,
            "num_inference_steps": params.steps,
            "generator": torch.Generator("cpu").manual_seed(params.seed),
            "callback_on_step_end": on_step_end,
            "callback_on_step_end_tensor_inputs": ["latents"],
        }
        if params.width is not None:
            call["width"], call["height"] = params.width, params.height
        if params.negative is not None:
            call["negative_prompt"] = params.negative
        if params.guidance is not None:
            call["guidance_scale"] = params.guidance
        with self._lock:
            try:
                with torch.inference_mode():
                    return self._pipe(**call).images[0]
            except torch.cuda.OutOfMemoryError:
                # Give the memory back so the next, maybe smaller, request can run.
                torch.cuda.empty_cache()
                raise

    def close(self) -> None:
        self._pipe = None
