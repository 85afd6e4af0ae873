"""The MTOR volunteer worker: `mtor worker serve` and its model backends.

Importing this package is cheap: model libraries (torch, transformers) load
only when a backend loads its model.
"""

from __future__ import annotations

from worker.backends.base import Backend, BadInput, Device, DeviceError, Emitter, JobError
from worker.backends.registry import (
    UnknownIntent,
    available_intents,
    backend_class,
    register_backend,
)
from worker.config import WorkerConfig
from worker.loop import Worker, WorkerRejected

__all__ = [
    "Backend",
    "BadInput",
    "Device",
    "DeviceError",
    "Emitter",
    "JobError",
    "UnknownIntent",
    "Worker",
    "WorkerConfig",
    "WorkerRejected",
    "available_intents",
    "backend_class",
    "register_backend",
]
