"""Workflows: step-checkpointed runs with leases, idempotency and concurrency keys.

``Workflow.make(input_schema, run, ...)`` defines one; ``client.workflow(definition)``
triggers and inspects its runs. See ``docs/workflows.md``.
"""

from __future__ import annotations

from durable_effect.workflow._definition import WorkflowDefinition
from durable_effect.workflow._events import (
    LogWritten,
    RunCancelled,
    RunChildFinished,
    RunChildStarted,
    RunCoalesced,
    RunCompleted,
    RunDeleted,
    RunEventReceived,
    RunEventSent,
    RunFailed,
    RunLeased,
    RunLeaseRenewed,
    RunProgressed,
    RunResumed,
    RunTriggered,
    StepCancelled,
    StepCompleted,
    StepFailed,
    StepStarted,
    WorkflowEvent,
)
from durable_effect.workflow._results import (
    EventWait,
    PendingEvent,
    PendingEvents,
    Progress,
    Run,
    RunStatus,
    SendResult,
    StepRecord,
    TriggerRequest,
    TriggerResult,
)
from durable_effect.workflow._step import Step, StepLog
from durable_effect.workflow._workflow import Workflow

__all__ = [
    "EventWait",
    "LogWritten",
    "PendingEvent",
    "PendingEvents",
    "Progress",
    "Run",
    "RunCancelled",
    "RunChildFinished",
    "RunChildStarted",
    "RunCoalesced",
    "RunCompleted",
    "RunDeleted",
    "RunEventReceived",
    "RunEventSent",
    "RunFailed",
    "RunLeaseRenewed",
    "RunLeased",
    "RunProgressed",
    "RunResumed",
    "RunStatus",
    "RunTriggered",
    "SendResult",
    "Step",
    "StepCancelled",
    "StepCompleted",
    "StepFailed",
    "StepLog",
    "StepRecord",
    "StepStarted",
    "TriggerRequest",
    "TriggerResult",
    "Workflow",
    "WorkflowDefinition",
    "WorkflowEvent",
]
