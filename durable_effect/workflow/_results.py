"""What the workflow client hands back: runs, steps and trigger results (frozen values).

Times are aware UTC datetimes. ``RunStatus`` is a run's lifecycle:
``pending → leased → completed | failed | cancelled``, plus ``sleeping`` while it waits for
a durable sleep, a step retry or an event.
"""

from __future__ import annotations

from collections.abc import Mapping
from datetime import datetime
from typing import Generic, Literal, TypeAlias, TypeVar

import attrs

from durable_effect._duration import DurationInput
from durable_effect.errors import (
    NonDeterminismError,
    RetryExhaustedError,
    RunCancelledError,
    RunFailedError,
    RunTimeoutError,
    StepTimeoutError,
)

__all__ = [
    "ACTIVE",
    "FINISHED",
    "Coalesce",
    "Disposition",
    "EventWait",
    "PendingEvent",
    "PendingEvents",
    "Progress",
    "Run",
    "RunErrors",
    "RunStatus",
    "SendResult",
    "StepRecord",
    "StepStatus",
    "TriggerRequest",
    "TriggerResult",
]

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741
V = TypeVar("V")

RunStatus: TypeAlias = Literal["pending", "leased", "sleeping", "completed", "failed", "cancelled"]
StepStatus: TypeAlias = Literal["completed", "failed"]
Coalesce: TypeAlias = Literal["skip"]
Disposition: TypeAlias = Literal["created", "idempotent", "coalesced"]
#: What waiting for a run's end can fail with besides the workflow's declared errors (a
#: failed, cancelled or timed-out run): the client's ``wait_output`` and a step's
#: ``run_workflow`` alike.
RunErrors: TypeAlias = (
    RunFailedError
    | RunTimeoutError
    | RunCancelledError
    | RetryExhaustedError
    | StepTimeoutError
    | NonDeterminismError
)

#: Statuses of a run that is over (only these can be deleted or retriggered).
FINISHED: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
#: Statuses of a run that is not over (only these can be cancelled).
ACTIVE: frozenset[str] = frozenset({"pending", "leased", "sleeping"})


@attrs.frozen(kw_only=True)
class Progress:
    """What ``step.progress(current, total, message)`` reported last."""

    current: int
    total: int | None = None
    message: str | None = None


@attrs.frozen(kw_only=True)
class Run(Generic[I, O]):
    """One run of a workflow, as committed.

    ``error`` is ``"<Tag>: <message>"`` for a failed run. ``current_step`` is the step the run
    was in (or last reached) at its last checkpoint. ``attempt`` counts how many times a
    worker took the run (1 on the first lease, one more after each sleep, retry wait or
    takeover of a crashed worker's run). A worker's taking of the run is committed with its
    first checkpoint (just before its first step's effect runs, or its end): a worker that
    died before that left no trace.
    """

    id: str
    workflow: str
    status: RunStatus
    input: I
    output: O | None
    error: str | None
    labels: dict[str, str]
    progress: Progress | None
    attempt: int
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    current_step: str | None
    idempotency_key: str | None = None
    concurrency_key: str | None = None
    #: The run that started this one as a child (``step.run_workflow``), if any.
    parent_run_id: str | None = None
    #: The run this one was forked from (``fork``), if any.
    forked_from: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the run is over (completed, failed or cancelled)."""
        return self.status in FINISHED


@attrs.frozen(kw_only=True)
class StepRecord:
    """A committed step of a run: its output (completed) or its error (failed)."""

    name: str
    index: int
    status: StepStatus
    output: object
    error: str | None
    started_at: datetime
    completed_at: datetime | None
    attempts: int = 1


@attrs.frozen(kw_only=True)
class TriggerResult:
    """What a trigger did: ``created`` a run, found it by key (``idempotent``), or joined
    the pending run of its concurrency key (``coalesced``)."""

    run_id: str
    disposition: Disposition


@attrs.frozen
class TriggerRequest(Generic[I]):
    """One item of ``batch_trigger``, with the options of ``trigger``:
    ``TriggerRequest(input, idempotency_key=..., labels=...)`` (the input may be positional)."""

    input: I
    idempotency_key: str | None = attrs.field(default=None, kw_only=True)
    concurrency_key: str | None = attrs.field(default=None, kw_only=True)
    labels: Mapping[str, str] | None = attrs.field(default=None, kw_only=True)
    coalesce: Coalesce | None = attrs.field(default=None, kw_only=True)
    run_timeout: DurationInput | None = attrs.field(default=None, kw_only=True)


@attrs.frozen(kw_only=True)
class SendResult:
    """What ``send`` did: ``accepted`` the event (queued for the run), or found its
    ``event_id`` already sent to this run (``duplicate``: nothing queued, nothing emitted)."""

    run_id: str
    accepted: bool
    duplicate: bool


@attrs.frozen(kw_only=True)
class EventWait:
    """What a sleeping run waits for: an event (of class ``event``, by name, or any when
    ``None``) at step ``step``, since ``since``, until ``until`` (``None``: no timeout)."""

    step: str
    event: str | None
    since: datetime
    until: datetime | None = None


@attrs.frozen(kw_only=True)
class PendingEvent(Generic[V]):
    """An event sent to a run and not (yet) consumed by a wait, oldest first by ``seq``."""

    seq: int
    event: V
    event_id: str | None
    sent_at: datetime


@attrs.frozen(kw_only=True)
class PendingEvents(Generic[V]):
    """A run's queued events and what it waits for (``None``: it waits for no event)."""

    run_id: str
    waiting: EventWait | None
    events: list[PendingEvent[V]]
