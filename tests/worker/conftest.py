"""Fixtures for the worker's tests (MTOR_HOME and tiny_chat_model come from tests/conftest.py)."""

from __future__ import annotations

import pytest
from eth_account import Account


@pytest.fixture
def account():  # type: ignore[no-untyped-def]
    """A fresh worker identity."""
    return Account.create()
