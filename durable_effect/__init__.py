"""durable_effect: durable jobs and workflows written as typed, Effect-style programs.

The public surface. Implementation lives in private ``_modules``; this module re-exports.
"""

from __future__ import annotations

from durable_effect._backoff import Backoff, Retry
from durable_effect._client._continuous import ContinuousHandle
from durable_effect._client._debounce import DebounceHandle
from durable_effect._client._jobs_client import JobsClient
from durable_effect._client._task import TaskHandle
from durable_effect._client._workflow import WorkflowHandle
from durable_effect._clock import Clock
from durable_effect._duration import Duration
from durable_effect._effect import Effect, Err, Gen, Ok
from durable_effect._jobs import DurableJobs, create_durable_jobs
from durable_effect._version import __version__
from durable_effect._worker import Worker
from durable_effect.errors import (
    ConflictError,
    DuplicateEventError,
    ExecutionError,
    InstanceNotFoundError,
    InvalidStateError,
    JobNotFoundError,
    LeaseLostError,
    NonDeterminismError,
    RetryExhaustedError,
    RunCancelledError,
    RunFailedError,
    RunTimeoutError,
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
from durable_effect.jobs._instances import InstanceInfo, InstancePage
from durable_effect.jobs._task import Task, TaskDefinition
from durable_effect.jobs._task_context import (
    TaskContext,
    TaskErrorContext,
    TaskEventContext,
    TaskIdleContext,
)
from durable_effect.workflow import (
    Progress,
    Run,
    SendResult,
    Step,
    StepRecord,
    TriggerRequest,
    TriggerResult,
    Workflow,
    WorkflowDefinition,
)
from durable_effect.workflow._pages import RunPage

__all__ = [
    "Backoff",
    "Clock",
    "ConflictError",
    "Continuous",
    "ContinuousContext",
    "ContinuousDefinition",
    "ContinuousHandle",
    "Debounce",
    "DebounceContext",
    "DebounceDefinition",
    "DebounceEventContext",
    "DebounceHandle",
    "DuplicateEventError",
    "DurableJobs",
    "Duration",
    "Effect",
    "Err",
    "ExecutionError",
    "Gen",
    "InstanceInfo",
    "InstanceNotFoundError",
    "InstancePage",
    "InvalidStateError",
    "JobNotFoundError",
    "JobsClient",
    "LeaseLostError",
    "NonDeterminismError",
    "Ok",
    "Progress",
    "Retry",
    "RetryExhaustedError",
    "Run",
    "RunCancelledError",
    "RunFailedError",
    "RunTimeoutError",
    "RunPage",
    "SchedulerError",
    "SendResult",
    "Step",
    "StepRecord",
    "StepTimeoutError",
    "StorageError",
    "TaggedError",
    "Task",
    "TaskContext",
    "TaskDefinition",
    "TaskErrorContext",
    "TaskEventContext",
    "TaskHandle",
    "TaskIdleContext",
    "TimeoutException",
    "TriggerRequest",
    "TriggerResult",
    "ValidationError",
    "Worker",
    "Workflow",
    "WorkflowDefinition",
    "WorkflowHandle",
    "__version__",
    "create_durable_jobs",
]
