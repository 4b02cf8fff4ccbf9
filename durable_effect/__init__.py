"""durable_effect: durable jobs and workflows written as typed, Effect-style programs.

The public surface. Implementation lives in private ``_modules``; this module re-exports.
"""

from __future__ import annotations

from durable_effect._effect import Effect, Err, Gen, Ok
from durable_effect.errors import (
    ConflictError,
    DuplicateEventError,
    ExecutionError,
    InstanceNotFoundError,
    InvalidStateError,
    JobNotFoundError,
    LeaseLostError,
    RetryExhaustedError,
    RunCancelledError,
    SchedulerError,
    StepTimeoutError,
    StorageError,
    TaggedError,
    TimeoutException,
    ValidationError,
)

__all__ = [
    "ConflictError",
    "DuplicateEventError",
    "Effect",
    "Err",
    "ExecutionError",
    "Gen",
    "InstanceNotFoundError",
    "InvalidStateError",
    "JobNotFoundError",
    "LeaseLostError",
    "Ok",
    "RetryExhaustedError",
    "RunCancelledError",
    "SchedulerError",
    "StepTimeoutError",
    "StorageError",
    "TaggedError",
    "TimeoutException",
    "ValidationError",
]
