"""``mtor listen`` as a person runs it: a real process, a real broker, WAV files."""

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


@pytest.fixture(scope="module")
def realm(tmp_path_factory: pytest.TempPathFactory) -> Iterator[ThreadRealm]:
    from worker import Device

    with ThreadRealm(tmp_path_factory.mktemp("realm") / "journal.db") as realm:
        realm.add_worker([EchoImagine(None, Device())])
        realm.wait_workers(1)
        yield realm


def run_listen(home: Path, *args: str, timeout: float = 240) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        mtor_command("listen", *args), env=process_env(home), capture_output=True, text=True, timeout=timeout
    )


def test_listen_to_files_with_json_events(realm: ThreadRealm, tmp_path: Path) -> None:
    wake = wav_file(tmp_path / "wake.wav", "Computer")
    request = wav_file(tmp_path / "request.wav", "imagine a neon mountain")
    bye = wav_file(tmp_path / "bye.wav", "goodbye")
    done = run_listen(
        tmp_path / "home",
        "--broker", realm.url, "--audio", str(wake), "--audio", str(request), "--audio", str(bye),
        "--speak-to", str(tmp_path / "spoken"), "--json",
    )  # fmt: skip
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    kinds = [e["event"] for e in events if e["event"] != "heard"]
    assert kinds == ["said", "dispatched", "answered", "said", "ended"]
    said, dispatched, answered = events[1], events[3], events[4]
    assert said["text"] == "Yes? What would you like to do?"
    assert dispatched["intent"] == "imagine" and dispatched["prompt"].lower() == "a neon mountain"
    assert dispatched["source"] == "rule:imagine:verb"
    assert answered["intent"] == "imagine" and answered["text"].lower() == "a neon mountain"
    assert events[-1] == {"event": "ended", "said_goodbye": True}
    spoken = sorted(p.name for p in (tmp_path / "spoken").iterdir())
    assert spoken == ["reply-001.wav", "reply-002.wav", "reply-003.wav"]  # question, answer, goodbye


def test_no_microphone_is_one_line_with_a_hint(tmp_path: Path) -> None:
    home = tmp_path / "home"
    env = process_env(home)
    done = subprocess.run(mtor_command("listen"), env=env, capture_output=True, text=True, timeout=60)
    if "no_device" not in done.stderr and done.returncode == 0:
        pytest.skip("this machine has a microphone")
    assert done.returncode == 1
    assert done.stderr.strip().splitlines() == [
        "mtor: no microphone found: PortAudio sees no input device [no_device]"
        " - hint: no microphone here? pass a recording instead: --audio FILE.wav"
    ]
    assert done.stdout == ""


def test_explain_shows_what_decided(realm: ThreadRealm, tmp_path: Path) -> None:
    request = wav_file(tmp_path / "one.wav", "Computer, imagine a neon mountain")
    done = run_listen(tmp_path / "home", "--broker", realm.url, "--audio", str(request), "--explain")
    assert done.returncode == 0, done.stderr
    assert done.stdout.splitlines()[-1].lower() == "a neon mountain"
    assert "-> imagine: a neon mountain" in done.stderr.lower()
    assert "imagine <- rule:imagine:verb (score 1.00)" in done.stderr
    assert "the audio ended" in done.stderr
    # --broker was given: no embedded realm was started.
    assert not (tmp_path / "home" / "data" / "realm" / "realm.json").exists()


def test_realm_transcription_without_a_speech_worker_is_reported(realm: ThreadRealm, tmp_path: Path) -> None:
    request = wav_file(tmp_path / "one.wav", "Computer, imagine a neon mountain")
    done = run_listen(tmp_path / "home", "--broker", realm.url, "--audio", str(request), "--stt", "realm", "--json")
    assert done.returncode == 0, done.stderr
    events = [json.loads(line) for line in done.stdout.splitlines()]
    assert [e["event"] for e in events] == ["failed", "ended"]
    assert events[0]["code"] == "no_worker" and events[0]["hint"]


def test_a_request_no_rule_decides_is_routed_by_the_realm_without_a_local_intent_model(
    tmp_path: Path,
) -> None:
    """No sentence-transformers on this machine: `listen` still answers a plain question,
    sent without an intent; the realm (chat only here) routes it and says why."""
    import sys

    from worker import Device

    class EchoChat(EchoBackend):
        intent = "chat"

    request = wav_file(tmp_path / "capital.wav", "Computer, what is the capital of France?")
    code = (
        "import sys\n"
        "from importlib.abc import MetaPathFinder\n"
        "class Missing(MetaPathFinder):\n"
        "    def find_spec(self, name, path=None, target=None):\n"
        "        if name.split('.')[0] == 'sentence_transformers':\n"
        "            raise ModuleNotFoundError(name, name=name)\n"
        "sys.meta_path.insert(0, Missing())\n"
        "sys.argv = ['mtor', *sys.argv[1:]]\n"
        "from mtor_cli.app import main\n"
        "main()\n"
    )
    with ThreadRealm(tmp_path / "journal.db") as chat_realm:
        chat_realm.add_worker([EchoChat(None, Device())])
        chat_realm.wait_workers(1)
        done = subprocess.run(
            [sys.executable, "-c", code, "listen", "--broker", chat_realm.url, "--audio", str(request), "--explain"],
            env=process_env(tmp_path / "home"), capture_output=True, text=True, timeout=240,
        )  # fmt: skip
    assert done.returncode == 0, done.stderr
    assert "capital of france" in done.stdout.lower()
    assert "-> the realm routes: what is the capital of france" in done.stderr.lower()
    assert "chat <- the realm serves only chat" in done.stderr
