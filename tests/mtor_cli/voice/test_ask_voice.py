"""``mtor ask --voice / --speak / --explain`` as a person runs them, against a real broker."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests.support.realm import ThreadRealm, mtor_command, process_env
from worker.backends.echo import EchoBackend

from .speech import wav_file


class EchoImagine(EchoBackend):
    intent = "imagine"


class EchoChat(EchoBackend):
    intent = "chat"


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadRealm]:
    from worker import Device

    with ThreadRealm(tmp_path_factory.mktemp("realm") / "journal.db") as realm:
        realm.add_worker([EchoImagine(None, Device()), EchoChat(None, Device())])
        realm.wait_workers(1)
        yield realm


def mtor(home: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        mtor_command(*args), env=process_env(home), capture_output=True, text=True, timeout=timeout, stdin=subprocess.DEVNULL
    )


def test_a_spoken_request_from_a_file_is_recognised_and_answered(realm: ThreadRealm, tmp_path: Path) -> None:
    spoken = wav_file(tmp_path / "request.wav", "Computer, imagine a neon mountain")
    done = mtor(tmp_path / "home", "ask", "--voice", "--audio", str(spoken), "--broker", realm.url, "--explain")
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip().lower() == "a neon mountain"  # the echo worker got exactly the prompt
    assert "heard: computer" in done.stderr.lower()
    assert "imagine <- rule:imagine:verb (score 1.00)" in done.stderr


def test_voice_with_json(realm: ThreadRealm, tmp_path: Path) -> None:
    spoken = wav_file(tmp_path / "request.wav", "what is the capital of France")
    done = mtor(tmp_path / "home", "ask", "--voice", "--audio", str(spoken), "--broker", realm.url, "--json")
    assert done.returncode == 0, done.stderr
    answer = json.loads(done.stdout)
    assert answer["intent"] == "chat"
    assert "capital" in answer["text"].lower() and "france" in answer["text"].lower()


def test_silence_is_nothing_heard(realm: ThreadRealm, tmp_path: Path) -> None:
    quiet = wav_file(tmp_path / "quiet.wav", 3.0)
    done = mtor(tmp_path / "home", "ask", "--voice", "--audio", str(quiet), "--broker", realm.url)
    assert done.returncode == 1
    assert done.stderr.strip().splitlines()[-1].startswith("mtor: no speech was heard [nothing_heard] - hint:")
    assert done.stdout == ""


def test_no_microphone_and_no_speakers_are_one_line_each(realm: ThreadRealm, tmp_path: Path) -> None:
    from mtor_cli.voice.capture import has_output_device, new_portaudio

    audio = new_portaudio()
    try:
        has_input = any(
            audio.get_device_info_by_index(i).get("maxInputChannels", 0) > 0 for i in range(audio.get_device_count())
        )
    finally:
        audio.terminate()
    if has_input or has_output_device():
        pytest.skip("this machine has audio devices")
    done = mtor(tmp_path / "home", "ask", "--voice", "--broker", realm.url)
    assert (done.returncode, done.stdout) == (1, "")
    assert done.stderr.strip().splitlines() == [
        "mtor: no microphone found: PortAudio sees no input device [no_device]"
        " - hint: no microphone here? pass a recording instead: --audio FILE.wav"
    ]
    done = mtor(tmp_path / "home", "ask", "--speak", "--broker", realm.url, "tell me a joke")
    assert (done.returncode, done.stdout) == (1, "")  # refused before anything was submitted
    assert done.stderr.strip().splitlines() == [
        "mtor: no audio output device: PortAudio sees no speakers [no_device]"
        " - hint: leave out --speak: the answer is printed either way"
    ]
