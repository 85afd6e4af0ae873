"""Realms for the OpenAI-compatible API's tests, and API keys made the way a user makes them.

``SlowEcho`` is the echo backend under its own intent and model with a pause
before each word, so a test can act while a stream is running (hang up,
revoke the key, queue behind it).
"""

from __future__ import annotations

from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

from tests.support.realm import ThreadRealm
from worker.backends.base import Device
from worker.backends.echo import EchoBackend
from worker.backends.params import Param, Params

SLOW_WORD_S = 0.15


class SlowEcho(EchoBackend):
    intent = "slow-echo"
    PARAMS = Params("slow-echo", Param("delay_s", (float,), "seconds before each word", default=SLOW_WORD_S,
                                       low=0.0, high=5.0))

    @property
    def model_name(self) -> str:
        return self.model or "slow-echo"


@pytest.fixture(scope="module")
def module_home(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    """MTOR_HOME for module-scoped realms (the per-test one comes too late for them)."""
    home = tmp_path_factory.mktemp("realm-home")
    with pytest.MonkeyPatch.context() as mp:
        mp.setenv("MTOR_HOME", str(home))
        yield home


def echo_realm(db: Path, *, slots: int = 4, billing: Any = None, **config: Any) -> ThreadRealm:
    """A started realm with one worker serving echo and slow-echo."""
    realm = ThreadRealm(db, billing=billing, **config).start()
    realm.add_worker([EchoBackend(None, Device()), SlowEcho(None, Device())], slots=slots, name="echoes")
    realm.wait_workers(1)
    return realm


def new_key(url: str, account: Any, **payload: Any) -> dict[str, Any]:
    """Create an API key as `mtor keys create` does (in a paid realm it signs the key's authorisation)."""
    from mtor_cli.commands.keys import create_key

    return create_key(url, account, payload)


def openai_client(url: str, secret: str, **options: Any) -> Any:
    from openai import OpenAI

    from mtor_cli.client import http_url

    return OpenAI(base_url=http_url(url, "/v1"), api_key=secret, max_retries=0, **options)
