"""The ``mtor tui`` dashboard: a Textual app that takes its data from a RealmFeed.

Textual is imported by :mod:`mtor_cli.tui.app` only, so importing this package
for :class:`RealmFeed` or :class:`RealmState` stays light.
"""

from __future__ import annotations

from .feed import AnswerEvent, ConnectionStatus, FeedEvent, RealmFeed
from .state import RealmState

__all__ = ["AnswerEvent", "ConnectionStatus", "FeedEvent", "RealmFeed", "RealmState"]
