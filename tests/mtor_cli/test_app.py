"""`mtor --help` and every command's --help: they work and stay light."""

from __future__ import annotations

import json
import subprocess
import sys
from typing import Any

import typer
from typer.testing import CliRunner

from mtor_cli.app import app
from tests.support.realm import process_env

HEAVY = (
    "torch",
    "transformers",
    "diffusers",
    "web3",
    "textual",
    "sentence_transformers",
    "faster_whisper",
)


def _command_paths() -> list[list[str]]:
    """Every command and group of the app, as argv prefixes."""
    root = typer.main.get_command(app)
    found: list[list[str]] = []

    def walk(cmd: Any, path: list[str]) -> None:
        found.append(path)
        if hasattr(cmd, "commands"):  # a group (typer vendors its own click)
            for name, sub in cmd.commands.items():
                walk(sub, [*path, name])

    walk(root, [])
    return found


def test_every_help_renders() -> None:
    runner = CliRunner()
    paths = _command_paths()
    names = {" ".join(p) for p in paths}
    assert {"ask", "broker serve", "broker status", "worker serve", "realm start", "realm stop", "realm status"} <= names
    for path in paths:
        result = runner.invoke(app, [*path, "--help"])
        assert result.exit_code == 0, (path, result.output)
        assert "Usage" in result.output, path


def test_root_help_lists_verbs_and_exit_codes() -> None:
    result = CliRunner().invoke(app, ["--help"])
    assert result.exit_code == 0
    for verb in ("ask", "broker", "worker", "realm"):
        assert verb in result.output
    assert "3 broker unreachable" in result.output


def test_help_imports_no_heavy_library(tmp_path) -> None:
    """Every --help, run in a fresh interpreter, leaves torch & co. unimported."""
    code = f"""
import json, sys
from mtor_cli.app import app
for path in json.loads(sys.argv[1]):
    try:
        app([*path, "--help"], standalone_mode=False)
    except SystemExit:
        pass
print(json.dumps([m for m in {HEAVY!r} if m in sys.modules]))
"""
    paths = json.dumps(_command_paths())
    done = subprocess.run(
        [sys.executable, "-c", code, paths],
        env=process_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert done.returncode == 0, done.stderr
    assert json.loads(done.stdout.strip().splitlines()[-1]) == []


def test_console_script_and_module_entry(tmp_path) -> None:
    done = subprocess.run(
        [sys.executable, "-m", "mtor_cli", "--version"],
        env=process_env(tmp_path),
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0
    assert done.stdout.startswith("mtor ")


def test_unknown_option_is_usage_error() -> None:
    result = CliRunner().invoke(app, ["ask", "--no-such-option"])
    assert result.exit_code == 2
