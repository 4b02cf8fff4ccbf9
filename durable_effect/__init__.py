"""durable_effect: durable jobs and workflows written as typed, Effect-style programs.

The public surface. Implementation lives in private ``_modules``; this module re-exports.
"""

from __future__ import annotations

from durable_effect._backoff import Backoff, Retry
from durable_effect._client._jobs_client import JobsClient
from durable_effect._duration import Duration
from durable_effect._effect import Effect, Err, Gen, Ok
from durable_effect._jobs import DurableJobs, create_durable_jobs
from durable_effect._worker import Worker
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
from durable_effect.jobs._continuous import Continuous, ContinuousDefinition
from durable_effect.jobs._continuous_context import ContinuousContext
from durable_effect.jobs._debounce import Debounce
from durable_effect.jobs._debounce_context import DebounceContext, DebounceEventContext
from durable_effect.jobs._debounce_definition import DebounceDefinition
from durable_effect.jobs._task import Task, TaskDefinition
from durable_effect.jobs._task_context import TaskContext

__all__ = [
    "Backoff",
    "ConflictError",
    "Continuous",
    "ContinuousContext",
    "ContinuousDefinition",
    "Debounce",
    "DebounceContext",
    "DebounceDefinition",
    "DebounceEventContext",
    "DuplicateEventError",
    "Duration",
    "DurableJobs",
    "Effect",
    "Err",
    "ExecutionError",
    "Gen",
    "InstanceNotFoundError",
    "InvalidStateError",
    "JobNotFoundError",
    "JobsClient",
    "LeaseLostError",
    "Ok",
    "Retry",
    "RetryExhaustedError",
    "RunCancelledError",
    "SchedulerError",
    "StepTimeoutError",
    "StorageError",
    "TaggedError",
    "Task",
    "TaskContext",
    "TaskDefinition",
    "TimeoutException",
    "ValidationError",
    "Worker",
    "create_durable_jobs",
]
