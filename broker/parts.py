"""The parts the socket and REST handlers work with, as BrokerServer built them.

Handlers get this small object instead of the server: they see the parts and
nothing of how they were built, started or stopped. Each part itself was
given only the other parts it uses (see BrokerServer.start and
docs/ARCHITECTURE.md).
"""

from __future__ import annotations

from dataclasses import dataclass

from broker.accounts import AccountStore
from broker.billing import Billing
from broker.config import BrokerConfig
from broker.dispatch import Dispatcher
from broker.gate import Gate
from broker.history import History
from broker.metrics import BrokerMetrics
from broker.openai_api import OpenAIGateway
from broker.outbox import Outbox
from broker.peer import Peers
from broker.ratelimit import Limits
from broker.registry import WorkerRegistry
from broker.roles import Roles
from broker.routing import Router
from broker.signed import RequestVerifier
from broker.subscriptions import Subscriptions
from broker.sysop import Sysop
from broker.trust import WorkerTrust
from broker.views import RealmViews


@dataclass(frozen=True, slots=True)
class Parts:
    config: BrokerConfig
    outbox: Outbox  # every frame leaves through it, after the pass's commit
    peers: Peers  # open sockets
    gate: Gate  # who may open a socket, and the login deadline
    metrics: BrokerMetrics
    registry: WorkerRegistry  # connected workers
    dispatcher: Dispatcher  # intents: submit, cancel, the workers' answers
    subs: Subscriptions  # `stats` pushes
    limits: Limits  # per-user submit limits
    trust: WorkerTrust  # maintenance and limits for workers, by address
    roles: Roles  # who is a sysop
    sysop: Sysop  # sysop actions and bans
    accounts: AccountStore  # nicknames, bans, grants, the audit log, trust records
    history: History  # read-only journal queries for REST
    verifier: RequestVerifier  # signed REST requests
    views: RealmViews  # what /healthz, /v1/*, topics and /metrics show
    openai: OpenAIGateway  # the OpenAI-compatible API and its keys
    router: Router  # the intent of a query that names none
    billing: Billing | None  # a paid realm's charging (terms in Welcome, /v1/ledger/status); None: free
