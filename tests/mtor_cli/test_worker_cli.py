"""`mtor worker serve` / `mtor worker intents`: argument handling, several intents in
one worker process, an image result saved by `mtor ask`, and a clean Ctrl-C."""

from __future__ import annotations

import json
import signal
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest
from typer.testing import CliRunner

from mtor_cli.app import app
from tests.support.realm import (
    ThreadRealm,
    log_of,
    mtor_command,
    process_env,
    spawn,
    stop_process,
    wait_until,
    workers,
)


def mtor(*args: str):
    return CliRunner().invoke(app, list(args))


@pytest.mark.parametrize(
    ("args", "says"),
    [
        (["worker", "serve", "-b", "ftp://realm"], "ws://"),
        (["worker", "serve", "-b", "ws://127.0.0.1:1", "-m", "a", "-m", "b", "-i", "chat"], "2 --model for 1 --intent"),
        (["worker", "serve", "-b", "ws://127.0.0.1:1", "-i", "echo", "-i", "echo"], "given twice"),
        (["worker", "serve", "-b", "ws://127.0.0.1:1", "-i", "teleport"], "available intents"),
        (["worker", "serve", "-b", "127.0.0.1:1", "-i", "echo"], "ws://"),
    ],
)
def test_serve_usage_errors_exit_2(args: list[str], says: str) -> None:
    result = mtor(*args)
    assert result.exit_code == 2, result.output
    assert says in result.stderr


def test_bad_config_file_exits_2(tmp_path: Path) -> None:
    config = tmp_path / "worker.toml"
    config.write_text("[[backend]]\nmodel = 'x'\n")
    result = mtor("worker", "serve", "-b", "ws://127.0.0.1:1", "--config", str(config))
    assert result.exit_code == 2
    assert "needs an intent" in result.stderr


def test_intents_lists_the_registry() -> None:
    result = mtor("worker", "intents", "--json")
    assert result.exit_code == 0
    assert {"chat", "echo", "imagine", "vision", "speech", "tts"} <= set(json.loads(result.stdout)["intents"])


@pytest.fixture(scope="module")
def tiny_sd(tmp_path_factory: pytest.TempPathFactory) -> Path:
    from tests.support.tiny_media_models import build_diffusion

    return build_diffusion(tmp_path_factory.mktemp("models") / "tiny-sd")


@pytest.fixture
def realm(tmp_path: Path) -> Iterator[ThreadRealm]:
    with ThreadRealm(tmp_path / "journal.db") as realm:
        yield realm


def test_one_worker_serves_imagine_and_echo_and_the_image_is_saved(
    realm: ThreadRealm, tiny_sd: Path, tmp_path: Path
) -> None:
    home = tmp_path / "worker"
    config = tmp_path / "worker.toml"
    config.write_text('[[backend]]\nintent = "echo"\n')
    proc = spawn(
        ["worker", "serve", "-b", realm.url, "--config", str(config), "-i", "imagine", "-m", str(tiny_sd), "--name", "box"],
        home,
        "worker.log",
        HF_HUB_OFFLINE="1",
    )
    try:
        wait_until(lambda: workers(realm.url, "imagine"), 180, "the imagine worker to register")
        row = workers(realm.url)[0]
        assert row["name"] == "box"
        assert {c["intent"] for c in row["capabilities"]} == {"echo", "imagine"}

        user = tmp_path / "user"
        user.mkdir()
        out = user / "art" / "mountain.png"
        args = ["ask", "-b", realm.url, "-i", "imagine", "--steps", "2", "--size", "64x64", "--seed", "7"]
        done = subprocess.run(
            mtor_command(*args, "--out", str(out), "a neon mountain"),
            env=process_env(user, TTY_COMPATIBLE="1"),  # rich draws its progress bar as on a terminal
            capture_output=True,
            text=True,
            timeout=120,
        )
        assert done.returncode == 0, done.stderr
        assert "denoising" in done.stderr and "2/2" in done.stderr  # the diffusion steps, as a bar
        assert done.stdout.endswith(f"\n{out}\n")  # the worker's caption, then the saved file
        from PIL import Image

        with Image.open(out) as img:
            assert img.format == "PNG" and img.size == (64, 64)

        as_json = subprocess.run(
            mtor_command(*args, "--json", "a neon mountain"),
            env=process_env(user),
            capture_output=True,
            text=True,
            timeout=120,
            cwd=user,
        )
        assert as_json.returncode == 0, as_json.stderr
        data = json.loads(as_json.stdout)
        assert data["intent"] == "imagine" and "64x64" in data["text"]
        saved = user / data["files"][0]
        assert saved.suffix == ".png" and saved.read_bytes() == out.read_bytes()  # same seed, same image

        echo = mtor("ask", "-b", realm.url, "-i", "echo", "same worker")
        assert echo.stdout == "same worker\n"
    finally:
        code = stop_process(proc, signal.SIGINT)
    assert code == 0, log_of(home, "worker.log")
    log = log_of(home, "worker.log")
    assert "serving echo (echo), imagine" in log and "worker stopped" in log
    wait_until(lambda: not workers(realm.url), 10, "the worker to leave the registry")
