"""Every command and subcommand, fed bad input, ends the way the README promises.

The matrix is built from the command tree itself, so a new command is covered
the day it is added: an unknown option, a value of the wrong type, a broker
address that is not one (exit 2), a broker that is not there (exit 3), a file
that does not exist, and values a command does not know. Each run must exit
with a documented status, print exactly one line on stderr (``mtor: ...
[code]``), and never a traceback. The commands run in-process (CliRunner);
the missing-model-stack cases need a fresh interpreter and run as processes.
"""

from __future__ import annotations

import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
import typer
from typer.testing import CliRunner

from mtor_cli.app import app
from tests.support.realm import free_port, process_env

DOCUMENTED_EXITS = {1, 2, 3, 4, 5, 6, 130}
# Services that run until stopped: only their argument checks belong here.
LONG_RUNNING = {"broker serve", "realm run", "realm start", "worker serve", "tui", "listen"}
# A value for each required argument, so that the option under test is what fails.
ARGUMENTS = {
    "prompt": "hi",
    "amount": "1",
    "address": "0x00000000000000000000000000000000000000a1",
    "guid": "4f1c2b9e",
    "nickname": "ada",
    "message": "hello",
    "worker_id": "w1",
    "key": "broker",
    "value": "ws://127.0.0.1:1",
    "intent": "imagine",
    "path": ".",
}
BAD_URLS = ("not a url", "ftp://realm.example", "ws://[::1", "ws://realm.example:99999", "ws://:8765")
CLOSED = f"ws://127.0.0.1:{free_port()}"  # nothing listens here


def _leaves() -> dict[str, Any]:
    found: dict[str, Any] = {}

    def walk(cmd: Any, path: list[str]) -> None:
        if path and (not hasattr(cmd, "commands") or getattr(cmd, "invoke_without_command", False)):
            found[" ".join(path)] = cmd
        for name, sub in getattr(cmd, "commands", {}).items():
            walk(sub, [*path, name])

    walk(typer.main.get_command(app), [])
    return found


LEAVES = _leaves()


def _options(cmd: Any) -> dict[str, Any]:
    return {param.opts[0]: param for param in cmd.params if param.param_type_name == "option"}


def _arguments(cmd: Any) -> list[str]:
    return [ARGUMENTS[p.name] for p in cmd.params if p.param_type_name == "argument" and (p.required or p.name == "prompt")]


def _cases() -> list[Any]:
    cases = []
    for name, cmd in LEAVES.items():
        argv = [*name.split(), *_arguments(cmd)]
        options = _options(cmd)
        cases.append(pytest.param([*argv, "--no-such-option"], {2}, id=f"{name}: unknown option"))
        for opt, param in options.items():
            if param.type_descriptor.annotation in (int, float):
                cases.append(pytest.param([*argv, opt, "x"], {2}, id=f"{name}: {opt} x"))
        if "--broker" in options:
            for url in BAD_URLS:
                cases.append(pytest.param([*argv, "--broker", url], {2}, id=f"{name}: --broker {url!r}"))
            if name not in LONG_RUNNING:
                cases.append(pytest.param([*argv, "--broker", CLOSED], {3}, id=f"{name}: no broker there"))
    return cases


def assert_one_error_line(result: Any, exits: set[int]) -> str:
    assert result.exit_code in exits, (result.exit_code, result.output)
    assert "Traceback" not in result.output, result.output
    lines = [line for line in result.stderr.splitlines() if line.strip()]
    assert len(lines) == 1, result.stderr
    assert lines[0].startswith("mtor: ") and "[" in lines[0], lines[0]
    return lines[0]


@pytest.mark.parametrize(("argv", "exits"), _cases())
def test_bad_input(argv: list[str], exits: set[int]) -> None:
    result = CliRunner().invoke(app, argv, input="")
    assert_one_error_line(result, exits)


def test_the_matrix_covers_every_command() -> None:
    covered = {case.id.split(":")[0] for case in _cases()}  # type: ignore[attr-defined]
    assert covered == set(LEAVES)
    assert {"ask", "chat", "wallet", "wallet deposit", "worker earnings", "pricing", "models", "config set"} <= covered


@pytest.fixture
def not_a_dir(tmp_path: Path) -> Path:
    """A path whose parent is a file: it cannot exist and cannot be created."""
    blocker = tmp_path / "a-file"
    blocker.write_text("")
    return blocker / "missing.wav"


def test_missing_files(not_a_dir: Path) -> None:
    """Every option that takes a file, given one that is not there."""
    runs = 0
    for name, cmd in LEAVES.items():
        if name in LONG_RUNNING - {"worker serve"}:
            continue
        options = _options(cmd)
        extra = ["--broker", CLOSED] if "--broker" in options else []
        for opt, param in options.items():
            if param.type_descriptor.annotation is Path or "Path" in str(param.type_descriptor.annotation):
                argv = [*name.split(), *_arguments(cmd), *extra, opt, str(not_a_dir)]
                result = CliRunner().invoke(app, argv, input="")
                line = assert_one_error_line(result, DOCUMENTED_EXITS)
                assert "[internal]" not in line, line
                runs += 1
    assert runs >= 10


@pytest.mark.parametrize(
    ("argv", "says"),
    [
        (["ask", "--broker", CLOSED, "--size", "big", "hi"], "--size 'big' is not WxH"),
        (["ask", "--broker", CLOSED, "-p", "novalue", "hi"], "is not KEY=VALUE"),
        (["ask", "--broker", CLOSED, "--max-price", "cheap", "hi"], "--max-price"),
        (["ask", "--broker", CLOSED, "--max-price", "-1", "hi"], "--max-price"),
        (["chat", "--broker", CLOSED, "--max-price", "1e999999999"], "--max-price"),
        (["listen", "--broker", CLOSED, "--stt", "bogus"], "--stt 'bogus'"),
        (["realm", "start", "--port", "70000"], "65535"),
        (["ask", "--broker", CLOSED, "--voice", "typed too"], "--voice"),
    ],
)
def test_unknown_values_are_usage_errors(argv: list[str], says: str) -> None:
    result = CliRunner().invoke(app, argv, input="")
    line = assert_one_error_line(result, {2})
    assert says in line


def test_an_empty_prompt_is_a_usage_error() -> None:
    result = CliRunner().invoke(app, ["ask", "--broker", CLOSED], input="   \n")
    assert "[usage]" in assert_one_error_line(result, {2})


# --- a missing optional model stack: the Quickstart installs chat only ----------------------

BLOCKED = """
import sys
from importlib.abc import MetaPathFinder

class Missing(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] in {blocked!r}:
            raise ModuleNotFoundError(f"No module named {{name!r}}", name=name)
        return None

sys.meta_path.insert(0, Missing())
sys.argv = ["mtor", *sys.argv[1:]]
from mtor_cli.app import main
main()
"""


def run_without(tmp_path: Path, modules: set[str], *argv: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run(
        [sys.executable, "-c", BLOCKED.format(blocked=modules), *argv],
        env=process_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=120,
    )


@pytest.fixture(scope="module")
def request_wav(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.mtor_cli.voice.speech import wav_file

    return wav_file(tmp_path_factory.mktemp("wav") / "q.wav", "Computer, tell me about otters.")


@pytest.mark.parametrize(
    "argv",
    [
        ["listen", "--broker", CLOSED, "--audio", "{wav}"],
        ["ask", "--broker", CLOSED, "--voice", "--audio", "{wav}"],
    ],
    ids=["listen --audio", "ask --voice --audio"],
)
def test_voice_without_faster_whisper_names_the_install(tmp_path: Path, request_wav: Path, argv: list[str]) -> None:
    done = run_without(tmp_path, {"faster_whisper", "ctranslate2"}, *[a.format(wav=request_wav) for a in argv])
    assert done.returncode == 1, done.stderr
    assert "Traceback" not in done.stderr
    lines = done.stderr.strip().splitlines()
    assert len(lines) == 1, done.stderr
    assert "[missing_dependency]" in lines[0] and "faster_whisper" in lines[0]
    assert "pip install 'mtor[speech]'" in lines[0]


def test_a_broken_config_file_is_named(tmp_path: Path) -> None:
    config = tmp_path / "home" / "config"
    config.mkdir(parents=True)
    (config / "config.toml").write_text("broker = [1, 2")  # not TOML
    done = subprocess.run(
        [sys.executable, "-m", "mtor_cli", "ask", "hi"],
        env=process_env(tmp_path / "home"),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 2 and "Traceback" not in done.stderr
    assert "config.toml" in done.stderr and len(done.stderr.strip().splitlines()) == 1
