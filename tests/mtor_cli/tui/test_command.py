"""`mtor tui` rejects bad options with one clear line before opening anything."""

from __future__ import annotations

import pytest
from typer.testing import CliRunner

from mtor_cli.app import app


@pytest.fixture(autouse=True)
def _home(tmp_path, monkeypatch):
    monkeypatch.setenv("MTOR_HOME", str(tmp_path))
    monkeypatch.delenv("MTOR_BROKER", raising=False)


def test_help_names_the_keys_and_the_realm_choice():
    result = CliRunner().invoke(app, ["tui", "--help"])
    assert result.exit_code == 0
    assert "--broker" in result.output and "Ctrl+P" in result.output and "F1" in result.output


def test_a_param_that_is_not_key_value_is_a_usage_error():
    result = CliRunner().invoke(app, ["tui", "--broker", "ws://127.0.0.1:9", "--param", "steps"])
    assert result.exit_code == 2
    assert "mtor: --param 'steps' is not KEY=VALUE [usage] - hint: e.g. --param steps=8" in result.output


def test_a_missing_recording_is_a_usage_error(tmp_path):
    missing = tmp_path / "nothing.wav"
    result = CliRunner().invoke(app, ["tui", "--broker", "ws://127.0.0.1:9", "--audio", str(missing)])
    assert result.exit_code == 2
    assert f"--audio {missing}: no such file [usage]" in result.output
