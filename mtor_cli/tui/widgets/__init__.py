"""One widget per pane of the dashboard."""

from __future__ import annotations

from .charts import ChartsPane
from .help import HelpScreen
from .intents import IntentsPane
from .peers import PeersPane
from .queue import QueuePane
from .result import ResultPane
from .status import StatusBar
from .wallet import WalletPane
from .workers import WorkersPane

__all__ = [
    "ChartsPane",
    "HelpScreen",
    "IntentsPane",
    "PeersPane",
    "QueuePane",
    "ResultPane",
    "StatusBar",
    "WalletPane",
    "WorkersPane",
]
