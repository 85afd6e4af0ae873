"""A live intent inside the broker: what the queue, dispatcher and registry pass around."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from broker.protocol import SubmitQuery

if TYPE_CHECKING:
    from broker.peer import Recipient
    from broker.registry import WorkerEntry


@dataclass(eq=False, slots=True)
class Job:
    guid: str
    user: str
    intent: str
    query: SubmitQuery  # normalised: intent resolved, prompt stripped of the wake word
    price_held: int
    queued_at: float  # monotonic, when first accepted
    client: Recipient | None = None  # where results go (a socket here, or a broker's); None until resubmitted
    attempts: int = 0  # dispatches so far
    tried: set[str] = field(default_factory=set)  # worker ids that had it
    worker: WorkerEntry | None = None  # set while running
    started_at: float = 0.0
    tokens: int = 0
    waiting_since: float = 0.0  # monotonic, when last put in the queue
    run: int = 0  # the current run's id (new at every dispatch; see protocol.Token)
    streamed: list[str] = field(default_factory=list)  # the current run's text, for a client that resumes
    stream_chars: int = 0  # len("".join(streamed))
    # While its journal row is being written after it started (a realm's
    # broker may start a new intent on its own free worker meanwhile, see
    # broker.engine.queue.SharedQueue.reserve): what happened to it since,
    # (its worker is done with it, the event), replayed once the row is
    # written and dropped if the journal refuses the intent. None otherwise.
    backlog: list[tuple[bool, Callable[[], object]]] | None = None

    @property
    def model(self) -> str | None:
        return self.query.model


@dataclass(frozen=True, slots=True)
class Ending:
    """Why a live intent is being ended on the realm's or its user's behalf
    (a cancel, a sysop, a ban): the `error` its client gets and the journal state."""

    code: str
    message: str
    hint: str
    state: str
