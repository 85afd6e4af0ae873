"""Time per image through the realm against a direct diffusers pipeline call, in one run.

    python bench/gpu_imagine.py             # cuda:0, SD1.5-shaped pipeline, 512x512, 25 steps
    python bench/gpu_imagine.py --tiny      # CPU smoke check: tiny pipeline, 64x64, 4 steps

One process runs a BrokerServer (journal on, SQLite in a temp dir), a Worker
serving the imagine backend, and a RealmClient. The backend's own pipeline
object is also called directly, with the same prompt, size, steps and seed,
so both paths use the same weights on the same GPU. Direct and realm images
alternate (after one warm-up of each) so drift hits both alike.

Realm time is what a client waits: submit -> accepted -> one progress event
per step -> result with the PNG (encoded, base64, relayed by the broker) ->
PNG bytes decoded. The printed overhead is realm/direct - 1 (target <= 2 %),
and the same against direct + PNG encoding, since a person gets a file either way.
"""

from __future__ import annotations

import argparse
import asyncio
import base64
import io
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

TARGET_OVERHEAD = 0.02
PROMPT = "a neon mountain under a purple sky"


def build_pipeline(path: Path, tiny: bool) -> Path:
    from tests.support import tiny_media_models as m

    if (path / "model_index.json").exists():
        return path
    if tiny:
        return m.build_diffusion(path)
    return m.build_diffusion(path, **m.SD15_SHAPE, half=True)


def sync(device: Any) -> None:
    if device.is_cuda:
        import torch

        torch.cuda.synchronize(device.index)


def direct(pipe: Any, device: Any, steps: int, side: int, seed: int) -> tuple[float, float]:
    """One bare pipeline call; returns (seconds, seconds including PNG encoding)."""
    import torch

    sync(device)
    started = time.perf_counter()
    with torch.inference_mode():
        image = pipe(PROMPT, num_inference_steps=steps, height=side, width=side,
                     generator=torch.Generator("cpu").manual_seed(seed)).images[0]
    sync(device)
    bare = time.perf_counter() - started
    buf = io.BytesIO()
    image.save(buf, format="PNG", compress_level=1)  # what the backend does
    return bare, time.perf_counter() - started


async def through_realm(client: Any, steps: int, side: int, seed: int) -> tuple[float, int]:
    """One `ask` through broker and worker; returns (seconds, progress events seen)."""
    events = 0

    def on_progress(_: Any) -> None:
        nonlocal events
        events += 1

    started = time.perf_counter()
    result = await client.ask(PROMPT, intent="imagine", params={"steps": steps, "size": f"{side}x{side}", "seed": seed},
                              on_progress=on_progress)
    png = base64.b64decode(result.attachments[0].data)
    elapsed = time.perf_counter() - started
    assert png.startswith(b"\x89PNG") and events == steps, (len(png), events)
    return elapsed, events


async def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--tiny", action="store_true", help="CPU smoke run: tiny pipeline, 64x64, 4 steps")
    parser.add_argument("--gpu", type=int, default=None, help="CUDA device (default 0; CPU with --tiny)")
    parser.add_argument("--images", type=int, default=None, help="images per path (default 8; 3 with --tiny)")
    parser.add_argument("--model", type=Path, default=None, help="where to build/keep the pipeline")
    args = parser.parse_args()

    import torch
    from eth_account import Account

    from broker import BrokerConfig, BrokerServer
    from mtor_cli.client import RealmClient
    from worker import Worker, WorkerConfig
    from worker.backends.base import Device
    from worker.backends.imagine import ImagineBackend

    device = Device.parse(args.gpu if args.gpu is not None else (None if args.tiny else 0))
    if not device.is_cuda:
        # Two torch thread pools (direct calls and the worker's model thread) spin
        # against each other on a small shared CPU; one thread keeps the smoke run steady.
        torch.set_num_threads(1)
    steps, side = (4, 64) if args.tiny else (25, 512)
    count = args.images or (3 if args.tiny else 8)
    tmp = tempfile.TemporaryDirectory(prefix="mtor-gpu-imagine-")
    model = build_pipeline(args.model or Path(tmp.name) / "sd", args.tiny)
    print(f"torch {torch.__version__} on {device}"
          + (f" ({torch.cuda.get_device_name(device.index)})" if device.is_cuda else "")
          + f"; {side}x{side}, {steps} steps, {count} images per path", flush=True)

    server = BrokerServer(BrokerConfig(host="127.0.0.1", port=0, db_path=Path(tmp.name) / "journal.db"))
    await server.start()
    backend = ImagineBackend(str(model), device)
    worker = Worker(WorkerConfig(broker_url=server.url, slots=1, name="bench"), [backend], Account.create())
    worker_task = asyncio.create_task(worker.run())
    await asyncio.wait_for(worker.registered.wait(), 600)
    pipe = backend.pipeline
    pipe.set_progress_bar_config(disable=True)

    direct_s: list[float] = []
    direct_png_s: list[float] = []
    realm_s: list[float] = []
    async with RealmClient(server.url, Account.create()) as client:
        await asyncio.to_thread(direct, pipe, device, steps, side, 0)  # warm-up
        await through_realm(client, steps, side, 0)
        for n in range(count):
            bare, with_png = await asyncio.to_thread(direct, pipe, device, steps, side, n + 1)
            direct_s.append(bare)
            direct_png_s.append(with_png)
            realm_s.append((await through_realm(client, steps, side, n + 1))[0])
    await worker.stop()
    await asyncio.gather(worker_task, return_exceptions=True)
    await server.stop()
    tmp.cleanup()

    d, dp, r = (statistics.median(x) for x in (direct_s, direct_png_s, realm_s))
    print(f"\n{'path':28} {'median s':>9} {'mean s':>9} {'min s':>9}")
    for name, xs in (("direct pipeline call", direct_s), ("direct + PNG encode", direct_png_s),
                     ("realm (broker + worker)", realm_s)):
        print(f"{name:28} {statistics.median(xs):9.4f} {statistics.mean(xs):9.4f} {min(xs):9.4f}")
    overhead = r / d - 1
    print(f"\nrealm overhead vs direct call:         {overhead * 100:+.2f} %  ({(r - d) * 1000:+.1f} ms/image)"
          f"  target <= {TARGET_OVERHEAD * 100:.0f} %: {'met' if overhead <= TARGET_OVERHEAD else 'NOT met'}")
    print(f"realm overhead vs direct + PNG encode: {(r / dp - 1) * 100:+.2f} %  ({(r - dp) * 1000:+.1f} ms/image)")


if __name__ == "__main__":
    asyncio.run(main())
