"""Workflow telemetry: Durably's events (``run:trigger`` … ``run:delete``).

Every event carries ``run_id``, ``job_name`` (the workflow's registered name, Durably's
``jobName``), ``instance_id`` and ``labels``; the wire form uses camelCase (``runId``,
``stepName``…). Values (inputs, outputs, log data) are JSON builtins.

>>> from datetime import datetime, timezone
>>> ev = StepCompleted(event_id="e", timestamp=datetime(2026, 1, 1, tzinfo=timezone.utc),
...     instance_id="workflow:w:r1", run_id="r1", job_name="w", step_name="fetch",
...     step_index=0, output={"n": 1})
>>> ev.type, ev.to_wire()["stepName"], ev.to_wire()["runId"]
('step:complete', 'fetch', 'r1')
"""

from __future__ import annotations

from datetime import datetime
from typing import ClassVar

import attrs

from durable_effect._events import Event, to_camel
from durable_effect.workflow._results import Progress

__all__ = [
    "LogWritten",
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
    "RunTriggered",
    "StepCancelled",
    "StepCompleted",
    "StepFailed",
    "StepStarted",
    "WorkflowEvent",
]


@attrs.frozen(kw_only=True)
class WorkflowEvent(Event):
    """An event of a workflow run."""

    source: str = "workflow"
    instance_id: str
    run_id: str
    job_name: str
    labels: dict[str, str] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class RunTriggered(WorkflowEvent):
    """A run was created (pending)."""

    type: ClassVar[str] = "run:trigger"
    input: object = None
    idempotency_key: str | None = None
    concurrency_key: str | None = None
    #: The run that started it as a child, or the run it was forked from.
    parent_run_id: str | None = None
    forked_from: str | None = None


@attrs.frozen(kw_only=True)
class RunChildStarted(WorkflowEvent):
    """The run started a child run (``step.run_workflow``, or ``start_workflow``: ``wait``
    false)."""

    type: ClassVar[str] = "run:child-started"
    step_name: str
    child_workflow: str
    child_run_id: str
    wait: bool = True


@attrs.frozen(kw_only=True)
class RunChildFinished(WorkflowEvent):
    """A child run of the run finished (``status``: completed, failed or cancelled)."""

    type: ClassVar[str] = "run:child-finished"
    child_workflow: str
    child_run_id: str
    status: str


@attrs.frozen(kw_only=True)
class RunResumed(WorkflowEvent):
    """A failed or cancelled run was resumed (``pending`` again, after its last completed
    step)."""

    type: ClassVar[str] = "run:resume"
    previous_status: str


@attrs.frozen(kw_only=True)
class RunCoalesced(WorkflowEvent):
    """A trigger joined the pending run of its concurrency key (``coalesce="skip"``)."""

    type: ClassVar[str] = "run:coalesced"
    concurrency_key: str


@attrs.frozen(kw_only=True)
class RunLeased(WorkflowEvent):
    """A worker took the run (first start, after a sleep or retry wait, or a takeover)."""

    type: ClassVar[str] = "run:leased"
    attempt: int
    lease_owner: str | None = None
    lease_expires_at: datetime | None = None


@attrs.frozen(kw_only=True)
class RunLeaseRenewed(WorkflowEvent):
    """The worker executing the run renewed its lease."""

    type: ClassVar[str] = "run:lease-renewed"
    lease_owner: str
    lease_expires_at: datetime


@attrs.frozen(kw_only=True)
class RunProgressed(WorkflowEvent):
    """``step.progress`` was reported (and committed)."""

    type: ClassVar[str] = "run:progress"
    progress: Progress

    def to_wire(self) -> dict[str, object]:
        out = super().to_wire()
        progress = self.progress
        out["progress"] = {to_camel(k): v for k, v in attrs.asdict(progress).items()}
        return out


@attrs.frozen(kw_only=True)
class RunEventSent(WorkflowEvent):
    """An event was queued for the run (``send``): its sequence number in the run's inbox,
    the sender's ``event_id`` (``sent_event_id``) and the event as JSON builtins."""

    type: ClassVar[str] = "run:event-sent"
    seq: int
    sent_event_id: str | None = None
    event: object = None


@attrs.frozen(kw_only=True)
class RunEventReceived(WorkflowEvent):
    """A ``step.wait_for_event`` took a queued event (committed with the step)."""

    type: ClassVar[str] = "run:event-received"
    step_name: str
    seq: int
    sent_event_id: str | None = None
    event: object = None


@attrs.frozen(kw_only=True)
class StepStarted(WorkflowEvent):
    """A step's effect is about to run (not emitted for replayed steps)."""

    type: ClassVar[str] = "step:start"
    step_name: str
    step_index: int
    attempt: int = 1


@attrs.frozen(kw_only=True)
class StepCompleted(WorkflowEvent):
    """A step's result was committed."""

    type: ClassVar[str] = "step:complete"
    step_name: str
    step_index: int
    output: object = None
    duration_ms: int = 0
    attempt: int = 1


@attrs.frozen(kw_only=True)
class StepFailed(WorkflowEvent):
    """A step's effect failed (``will_retry``: a durable retry is scheduled)."""

    type: ClassVar[str] = "step:fail"
    step_name: str
    step_index: int
    error: str
    stack: str | None = None
    attempt: int = 1
    will_retry: bool = False


@attrs.frozen(kw_only=True)
class StepCancelled(WorkflowEvent):
    """The run was cancelled while this step was in progress; its result is not recorded."""

    type: ClassVar[str] = "step:cancel"
    step_name: str
    step_index: int | None = None


@attrs.frozen(kw_only=True)
class LogWritten(WorkflowEvent):
    """A ``step.log`` line."""

    type: ClassVar[str] = "log:write"
    level: str
    message: str
    step_name: str | None = None
    data: dict[str, object] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class RunCompleted(WorkflowEvent):
    """The run completed with ``output``."""

    type: ClassVar[str] = "run:complete"
    output: object = None
    duration_ms: int = 0


@attrs.frozen(kw_only=True)
class RunFailed(WorkflowEvent):
    """The run failed (``error`` is ``"<Tag>: <message>"``)."""

    type: ClassVar[str] = "run:fail"
    error: str
    failed_step_name: str | None = None
    stack: str | None = None


@attrs.frozen(kw_only=True)
class RunCancelled(WorkflowEvent):
    """The run was cancelled."""

    type: ClassVar[str] = "run:cancel"


@attrs.frozen(kw_only=True)
class RunDeleted(WorkflowEvent):
    """A finished run was deleted."""

    type: ClassVar[str] = "run:delete"
