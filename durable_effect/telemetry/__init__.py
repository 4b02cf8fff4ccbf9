"""Telemetry: the ``Tracker`` protocol, ``HttpTracker`` and the event types.

Every event a job, workflow or worker emits goes to ``jobs.on(...)`` listeners and to each
tracker passed as ``tracker=`` to ``create_durable_jobs``. Events are frozen objects with
snake_case attributes; ``to_wire()`` gives the camelCase JSON that ``HttpTracker`` posts.

>>> from durable_effect import telemetry
>>> telemetry.JobRetryExhausted.type, telemetry.WorkerError.type
('job.retryExhausted', 'worker:error')
"""

from __future__ import annotations

from durable_effect._events import (
    DebounceFlushed,
    DebounceStarted,
    ErrorInfo,
    Event,
    JobEvent,
    JobExecuted,
    JobFailed,
    JobRetryExhausted,
    JobStarted,
    JobTerminated,
    TaskScheduled,
    Tracker,
)
from durable_effect._worker import WorkerError
from durable_effect.telemetry._http import HttpTracker

__all__ = [
    "DebounceFlushed",
    "DebounceStarted",
    "ErrorInfo",
    "Event",
    "HttpTracker",
    "JobEvent",
    "JobExecuted",
    "JobFailed",
    "JobRetryExhausted",
    "JobStarted",
    "JobTerminated",
    "TaskScheduled",
    "Tracker",
    "WorkerError",
]
