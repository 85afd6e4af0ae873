"""A lazily loaded backend: registers without its model, loads it on the first
job with a progress line, unloads it after the keep-alive, loads it again."""

from __future__ import annotations

import asyncio
import base64
import shutil
import subprocess
import time
import uuid
from pathlib import Path

import pytest

from broker.protocol import Attachment, Msg, Progress, Work
from worker.backends.base import Device, Emitter
from worker.backends.stt import SpeechBackend
from worker.lazy import lazy

pytestmark = pytest.mark.skipif(shutil.which("espeak-ng") is None, reason="espeak-ng speaks the test's audio")


def spoken(tmp_path: Path) -> Work:
    wav = tmp_path / "q.wav"
    subprocess.run(["espeak-ng", "-w", str(wav), "hello world"], check=True, timeout=60)
    audio = Attachment(kind="audio", data=base64.b64encode(wav.read_bytes()).decode(), mime="audio/wav")
    return Work(guid=str(uuid.uuid4()), intent="speech", attachments=[audio])


async def job(backend: object, work: Work) -> tuple[str, list[str]]:
    sent: list[Msg] = []
    result = await backend.run(work, Emitter(work.guid, sent.append))  # type: ignore[attr-defined]
    await asyncio.sleep(0)  # the emitter's last messages
    return result.text, [m.message for m in sent if isinstance(m, Progress)]


async def test_loads_on_first_use_unloads_when_idle_and_loads_again(tmp_path: Path) -> None:
    inner = SpeechBackend(None, Device())
    backend = lazy(inner, keep_alive=0.5)
    assert inner.whisper is None  # registered without its model
    work = spoken(tmp_path)

    text, said = await job(backend, work)
    assert "hello" in text.lower()
    assert said[:1] == ["loading the speech model (whisper-tiny.en) on first use"]
    assert "the speech model is ready" in said

    again, said = await job(backend, work)  # within the keep-alive: no load
    assert again == text and not any(line.startswith("loading") for line in said)

    deadline = time.monotonic() + 10
    while backend.loaded or inner.whisper is not None:  # type: ignore[attr-defined]  # unloaded after 0.5 s idle
        assert time.monotonic() < deadline
        await asyncio.sleep(0.05)
    reloaded, said = await job(backend, work)
    assert reloaded == text
    assert said[:1] == ["loading the speech model (whisper-tiny.en) again"]
    backend.close()
