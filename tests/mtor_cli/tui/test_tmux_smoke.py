"""`mtor tui --broker URL` in a real 80x24 terminal (tmux): type a prompt, read the answer."""

from __future__ import annotations

import subprocess
import sys
import time
import uuid

import pytest

from tests.support.realm import REPO, ThreadRealm, process_env
from worker.backends.base import Device
from worker.backends.echo import EchoBackend

pytestmark = pytest.mark.timeout(120)


def tmux(socket: str, *args: str) -> str:
    done = subprocess.run(["tmux", "-L", socket, *args], capture_output=True, text=True, timeout=10)
    assert done.returncode == 0, done.stderr
    return done.stdout


def session_alive(socket: str) -> bool:
    return subprocess.run(["tmux", "-L", socket, "has-session", "-t", "tui"], capture_output=True).returncode == 0


def wait_for_pane(socket: str, seen: str, timeout: float = 45.0) -> str:
    deadline = time.monotonic() + timeout
    while True:
        screen = tmux(socket, "capture-pane", "-p", "-t", "tui")
        if seen in screen:
            return screen
        if time.monotonic() > deadline:
            raise AssertionError(f"{seen!r} did not appear in {timeout:g}s; the pane shows:\n{screen}")
        time.sleep(0.2)


def test_tui_in_tmux_at_80x24_answers_a_typed_prompt(tmp_path):
    """The smallest usual terminal: the answer pane shows the question, the state
    line and the whole answer, read back from the terminal itself (capture-pane)."""
    socket = f"mtor-test-{uuid.uuid4().hex[:8]}"  # a private tmux server, killed below
    with ThreadRealm(tmp_path / "journal.db") as realm:
        realm.add_worker([EchoBackend(None, Device.parse(None))], name="echo-tmux")
        realm.wait_workers(1)
        env = process_env(tmp_path / "home", TERM="xterm-256color")
        (tmp_path / "home").mkdir()
        command = f"{sys.executable} -m mtor_cli tui --broker {realm.url} --intent echo"
        args = ["new-session", "-d", "-s", "tui", "-x", "80", "-y", "24", "-c", str(REPO)]
        env_args = [a for key in ("MTOR_HOME", "PYTHONPATH", "TERM") for a in ("-e", f"{key}={env[key]}")]
        tmux(socket, *args, *env_args, command)
        try:
            wait_for_pane(socket, "echo-tmux")
            question = "signals from the terminal, long enough to need more than one line of the answer pane"
            tmux(socket, "send-keys", "-t", "tui", "-l", question)
            tmux(socket, "send-keys", "-t", "tui", "Enter")
            screen = wait_for_pane(socket, "echo · done")
            lines = screen.splitlines()
            assert len(lines) == 24 and all(len(line) <= 80 for line in lines)
            state = next(n for n, line in enumerate(lines) if "echo · done" in line)
            assert "» signals from the terminal" in lines[state - 1]  # the question, above its state line
            answer = " ".join(line.strip(" │") for line in lines[state + 1 :])
            assert " ".join(question.split()) in " ".join(answer.split())  # all of it, wrapped to the pane
            tmux(socket, "send-keys", "-t", "tui", "C-q")
            deadline = time.monotonic() + 15
            while session_alive(socket) and time.monotonic() < deadline:
                time.sleep(0.2)
            assert not session_alive(socket), "Ctrl+Q did not quit the TUI"
        finally:
            subprocess.run(["tmux", "-L", socket, "kill-server"], capture_output=True)
