"""What every model backend is: the Backend ABC, its Emitter, BadInput and Device.

A backend serves one intent. The worker loop builds it with a model name and a
Device, calls ``load()`` once in a thread before registering with the broker,
checks each job with ``validate()`` (cheap, no model call) and then awaits
``run()``, which streams through an :class:`Emitter` and returns the
:class:`~broker.protocol.WorkResult`.

Model code is blocking and runs in threads; the Emitter's ``*_threadsafe``
methods let it stream without touching the event loop directly.
"""

from __future__ import annotations

import asyncio
from abc import ABC, abstractmethod
from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, ClassVar

from broker.protocol import Attachment, Capability, Msg, MtorError, Progress, Token, Work, WorkResult
from worker.backends.params import BadInput as BadInput  # re-exported: every backend raises it
from worker.backends.params import Params


class JobError(MtorError):
    """A job the backend cannot serve as asked, for a reason the person can act on.

    ``code`` is one of ``broker.protocol.REQUEST_ERROR_CODES``
    (``upstream_unavailable``, ``login_failed`` ...); ``hint`` says what to do.
    Raised from ``run()`` it fails the job with that code, not retried on
    another worker, where any other exception is ``worker_failed``. (Before
    the model runs, parameters are refused with :class:`BadInput`.)
    """


class DeviceError(MtorError):
    """The requested device does not exist on this machine."""

    def __init__(self, message: str, hint: str = "") -> None:
        super().__init__("bad_device", message, hint)


@dataclass(frozen=True)
class Device:
    """Where a backend runs: CPU in float32, or one CUDA GPU in float16."""

    kind: str = "cpu"  # "cpu" | "cuda"
    index: int | None = None

    @classmethod
    def parse(cls, gpu: int | None) -> Device:
        """``None`` -> CPU; ``N`` -> ``cuda:N``, checked against the machine."""
        if gpu is None:
            return cls()
        if isinstance(gpu, bool) or not isinstance(gpu, int) or gpu < 0:
            raise DeviceError(f"invalid GPU index {gpu!r}", "pass --gpu 0 for the first GPU")
        import torch

        if not torch.cuda.is_available():
            raise DeviceError(
                f"--gpu {gpu} asked for CUDA, but this torch build sees no CUDA device",
                "run without --gpu to use the CPU, or install a CUDA build of torch",
            )
        count = torch.cuda.device_count()
        if gpu >= count:
            raise DeviceError(
                f"GPU {gpu} does not exist; this machine has {count} GPU(s)",
                f"pick one of 0..{count - 1}" if count else "run without --gpu",
            )
        return cls("cuda", gpu)

    @property
    def name(self) -> str:
        return "cpu" if self.kind == "cpu" else f"cuda:{self.index}"

    @property
    def is_cuda(self) -> bool:
        return self.kind == "cuda"

    @property
    def torch_dtype(self) -> Any:
        import torch

        return torch.float16 if self.is_cuda else torch.float32

    @property
    def torch_device(self) -> Any:
        import torch

        return torch.device(self.name)

    def __str__(self) -> str:
        return self.name


class Emitter:
    """Streams one job's tokens and progress back to the broker, in order.

    ``send`` is called on the event loop thread with each message; the worker
    passes its connection's ordered outbox, tests may pass ``list.append``.
    Model threads use the ``*_threadsafe`` variants, which hop onto the loop
    with ``call_soon_threadsafe`` (FIFO), so a token emitted before the model
    thread returns is always sent before the result.
    """

    def __init__(
        self,
        guid: str,
        send: Callable[[Msg], None],
        loop: asyncio.AbstractEventLoop | None = None,
    ) -> None:
        self.guid = guid
        self._send = send
        self._loop = loop or asyncio.get_running_loop()
        self._index = 0
        self._cancelled = False

    @property
    def loop(self) -> asyncio.AbstractEventLoop:
        return self._loop

    @property
    def cancelled(self) -> bool:
        """True once the broker cancelled the job; backends stop at the next step."""
        return self._cancelled

    def cancel(self) -> None:
        self._cancelled = True

    def send_token(self, text: str) -> None:
        """Send a token now; call on the event loop thread (token_threadsafe elsewhere)."""
        if not text or self._cancelled:
            return
        self._send(Token(guid=self.guid, text=text, index=self._index))
        self._index += 1

    def send_progress(
        self, step: int, total: int, message: str = "", preview: Attachment | None = None
    ) -> None:
        """Send progress now; call on the event loop thread."""
        if self._cancelled:
            return
        self._send(
            Progress(guid=self.guid, step=step, total=total, message=message, preview=preview)
        )

    async def token(self, text: str) -> None:
        self.send_token(text)

    async def progress(
        self, step: int, total: int, message: str = "", preview: Attachment | None = None
    ) -> None:
        self.send_progress(step, total, message, preview)

    def token_threadsafe(self, text: str) -> None:
        self._call_soon(self.send_token, text)

    def progress_threadsafe(
        self, step: int, total: int, message: str = "", preview: Attachment | None = None
    ) -> None:
        self._call_soon(self.send_progress, step, total, message, preview)

    def _call_soon(self, fn: Callable[..., None], *args: Any) -> None:
        try:
            self._loop.call_soon_threadsafe(fn, *args)
        except RuntimeError:
            pass  # the loop is closed: the worker is gone and nobody reads this job


class Backend(ABC):
    """One intent served by one model. Subclasses set ``intent``, and
    ``PARAMS`` when they take parameters: the one declaration that checks
    ``work.params`` and is advertised in the capability."""

    intent: ClassVar[str]
    PARAMS: ClassVar[Params | None] = None  # None: no parameters
    # True for intents that act on the owner's own accounts (email): the broker
    # gives the worker jobs from its own address only.
    owner_only: ClassVar[bool] = False

    def __init__(self, model: str | None, device: Device, **options: Any) -> None:
        self.model = model
        self.device = device
        self.options = options
        # Per instance: an operator's options may narrow the declared bounds.
        self.params = self.PARAMS or Params(self.intent)

    @property
    def model_name(self) -> str:
        """The name the worker registers and reports for this backend's model."""
        return self.model or "default"

    @property
    def slots(self) -> int:
        """How many jobs this backend runs well at once: what it can batch.
        A worker's default slots come from it; one that takes a lock per job says 1."""
        return 1

    def load(self) -> None:
        """Load weights (blocking; the worker runs it in a thread at start)."""

    def capability(self) -> Capability:
        return Capability(
            intent=self.intent,
            models=[self.model_name],
            params=self.params.schema(),
            info=self.info(),
            owner_only=self.owner_only,
        )

    def info(self) -> dict[str, Any]:
        """What clients may want to know that is not a parameter: context
        length, size limits, the device. Advertised with the capability."""
        return {}

    def validate(self, work: Work) -> None:
        """Raise :class:`BadInput` for a job this backend cannot run. No model call.

        The default checks the declared parameters; a backend that checks more
        calls ``self.params.parse(work.params)`` too."""
        self.params.parse(work.params)

    @abstractmethod
    async def run(self, work: Work, out: Emitter) -> WorkResult:
        """Run one validated job, streaming through ``out``; return its result."""

    def close(self) -> None:
        """Free the model (the worker calls it on stop)."""
