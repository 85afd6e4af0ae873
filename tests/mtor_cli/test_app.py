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


def _leaves() -> list[list[str]]:
    """Every command a person runs (not a bare group), as argv prefixes."""
    root = typer.main.get_command(app)
    leaves = []
    for path in _command_paths()[1:]:
        cmd = root
        for name in path:
            cmd = cmd.commands[name]  # type: ignore[attr-defined]
        if not hasattr(cmd, "commands") or getattr(cmd, "invoke_without_command", False):
            leaves.append(path)
    return leaves


def _help(path: list[str], width: int = 80) -> str:
    result = CliRunner().invoke(app, [*path, "--help"], env={"COLUMNS": str(width), "TERM": "dumb"})
    assert result.exit_code == 0, (path, result.output)
    return result.output


def test_every_leaf_command_shows_an_example() -> None:
    """A person reading `--help` sees a command line to copy, for every command."""
    missing = []
    for path in _leaves():
        text = _help(path)
        lines = [line.strip(" │") for line in text.splitlines()]
        if not any(line.startswith(f"mtor {' '.join(path)}") for line in lines):
            missing.append(" ".join(path))
    assert not missing, f"no example in the help of: {missing}"


def test_flags_show_no_metavar() -> None:
    for path in [[], ["ask"], ["wallet"], ["worker", "serve"]]:
        text = _help(path)
        assert "<bool>" not in text, path
        assert "--json" in text or path in ([], ["worker", "serve"])


def test_worker_serve_help_shows_its_toml_example_intact() -> None:
    text = _help(["worker", "serve"])
    assert "[[backend]]" in text
    assert 'intent = "imagine"' in text


def test_root_help_lists_each_command_on_short_lines() -> None:
    """The command list is one short summary per command, not paragraphs cut at random."""
    text = _help([])
    commands = text[text.index("Commands") :]
    for verb in typer.main.get_command(app).commands:  # type: ignore[attr-defined]
        row = next(line for line in commands.splitlines() if line.strip(" │").startswith(verb + " "))
        assert row.rstrip(" │").endswith((".", ")")), row


def test_usage_errors_are_one_line_with_exit_2() -> None:
    for argv in (["ask", "--no-such-option"], ["ask", "--steps", "x", "hi"], ["wallet", "deposit"], ["nope"]):
        result = CliRunner().invoke(app, argv)
        assert result.exit_code == 2, (argv, result.output)
        lines = result.stderr.strip().splitlines()
        assert len(lines) == 1 and lines[0].startswith("mtor: ") and "[usage]" in lines[0], (argv, result.stderr)


def test_bare_group_prints_its_help() -> None:
    result = CliRunner().invoke(app, ["sysop"])
    assert result.exit_code == 0
    assert "Usage" in result.output


def test_install_completion_writes_the_shell_script(tmp_path) -> None:
    home = tmp_path / "home"
    home.mkdir()
    done = subprocess.run(
        [sys.executable, "-m", "mtor_cli", "--install-completion", "bash"],
        env={**process_env(tmp_path), "HOME": str(home), "SHELL": "/bin/bash"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert done.returncode == 0, done.stderr
    assert "bash completion installed" in done.stdout
    script = next(home.glob(".bash_completions/*"))
    assert "_MTOR_COMPLETE" in script.read_text()
    completed = subprocess.run(
        [sys.executable, "-m", "mtor_cli"],
        env={**process_env(tmp_path), "_MTOR_COMPLETE": "complete_bash", "COMP_WORDS": "mtor wal", "COMP_CWORD": "1"},
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert "wallet" in completed.stdout


def test_docs_cli_md_shows_every_command_with_an_example() -> None:
    """docs/cli.md: each command appears as a command line a person can copy."""
    from tests.support.realm import REPO

    doc = (REPO / "docs" / "cli.md").read_text()
    lines = [line.strip() for line in doc.splitlines()]

    def shown(command: str) -> bool:  # in a table cell or a code block
        return f"`{command}" in doc or any(line.startswith(command) for line in lines)

    missing = [" ".join(path) for path in _leaves() if not shown(f"mtor {' '.join(path)}")]
    assert not missing, f"docs/cli.md has no example of: {missing}"
    assert "base units" in doc and "_9000" in doc  # the money unit rule
