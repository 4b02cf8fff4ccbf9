"""`RunState`: one execution's buffered view of one run, and the signals that end it.

Every part of an execution — the checkpoints, the step runner, the driver — works on the
same ``RunState``: the run's ``InstanceTx``, its metadata as this execution sees it, its
step records by name, and where the execution stands (the step running, the step the run
is in, the signal that ended it). Nothing here commits; ``_checkpoint`` does.

Signals derive from ``BaseException`` (not ``Exception``), so user code wrapping a step in
``try_promise`` cannot turn them into typed failures; the interpreter carries them as
defects to the top of the run, where the driver reads them.
"""

from __future__ import annotations

import traceback
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Any, Never

import attrs

from durable_effect._events import Event, new_event_id
from durable_effect.errors import LeaseLostError, NonDeterminismError, StorageError
from durable_effect.jobs._instance import InstanceRef, InstanceTx, Savepoint
from durable_effect.workflow._records import (
    META,
    STEP_CODEC,
    RunMeta,
    StepRec,
    load_steps,
    step_key,
)

__all__ = [
    "Aborted",
    "Cancelled",
    "Diverged",
    "Mark",
    "RunState",
    "Signal",
    "Suspended",
    "TimedOut",
    "finished_alarm",
    "millis",
    "run_event_fields",
    "stack_of",
]

_MS = timedelta(milliseconds=1)


# -- signals ------------------------------------------------------------------------------------


class Signal(BaseException):
    """Ends the execution; user code never handles it."""


class Suspended(Signal):
    """The run sleeps (a ``step.sleep`` or a step retry): commit and end the handler."""


class Cancelled(Signal):
    """A cancel request was found at a step boundary."""

    def __init__(self, step: str | None, index: int | None) -> None:
        super().__init__(step)
        self.step = step
        self.index = index


class TimedOut(Signal):
    """The run is past its deadline: it ends failed with ``RunTimeoutError``."""


class Diverged(Signal):
    """The code's steps no longer match the run's recorded ones (``_versions``): the run
    ends failed with ``error``."""

    def __init__(self, error: NonDeterminismError) -> None:
        super().__init__(str(error))
        self.error = error


class Aborted(Signal):
    """The lease was lost (or storage failed): stop without committing anything more."""

    def __init__(self, cause: LeaseLostError | StorageError) -> None:
        super().__init__(str(cause))
        self.cause = cause


# -- small shared rules -------------------------------------------------------------------------


def run_event_fields(ref: InstanceRef, now: datetime, labels: Mapping[str, str]) -> dict[str, Any]:
    """The fields every event of run ``ref`` carries (``WorkflowEvent``'s)."""
    return {
        "event_id": new_event_id(),
        "timestamp": now,
        "instance_id": ref.instance_id,
        "run_id": ref.id,
        "job_name": ref.job_name,
        "labels": dict(labels),
    }


def finished_alarm(retain: timedelta | None, now: datetime) -> datetime | None:
    """The alarm of a run that finishes at ``now``: none. A run past its ``retain`` is
    purged by the workflow's retention sweep (``_retention``), which finds it by its index
    entry; runs finished under releases from before it keep a purge alarm of their own
    (``_driver.expire`` handles it)."""
    return None


def stack_of(error: BaseException) -> str | None:
    """The formatted traceback of ``error`` (``None`` if it was never raised)."""
    if error.__traceback__ is None:
        return None
    return "".join(traceback.format_exception(error))


def millis(delta: timedelta) -> int:
    """A non-negative duration in whole milliseconds (rounded)."""
    return max(0, round(delta / _MS))


@attrs.frozen
class Mark:
    """Where the buffer stood: its savepoint and how many events it held."""

    point: Savepoint
    events: int


# -- the state ----------------------------------------------------------------------------------


class RunState:
    """One execution's view of one run (see the module docstring)."""

    def __init__(self, tx: InstanceTx, meta: RunMeta) -> None:
        self.tx = tx
        self.ref = tx.ref
        self.meta = meta
        self.workflow = tx.ref.job_name
        self.run_id = tx.ref.id
        #: How many times a worker took the run, this execution included once it starts.
        self.attempt = meta.attempt
        #: The step records by name (the first of a repeated name wins).
        self.steps: dict[str, StepRec] = {}
        for rec in load_steps(tx.records()):
            self.steps.setdefault(rec.name, rec)
        #: The signal that ended the execution (every later step operation re-raises it).
        self.signal: Signal | None = None
        #: The step whose effect is running (steps never nest).
        self.busy: str | None = None
        #: The step the run is in (a cancel then names it).
        self.current: str | None = None
        #: Records that refuse the commit suspending the run (a waited-for child's end, an
        #: event wait's next event).
        self.suspend_guards: tuple[tuple[str, str], ...] = ()

    # -- reading and writing ----------------------------------------------------------------------

    def now(self) -> datetime:
        return self.tx.now()

    def fields(self) -> dict[str, Any]:
        """The fields of an event of this run, now."""
        return run_event_fields(self.ref, self.tx.now(), self.meta.labels)

    def emit(self, event: Event) -> None:
        self.tx.emit(event)

    def save(self, meta: RunMeta) -> None:
        """Buffer ``meta`` as the run's metadata."""
        self.meta = meta
        META.save(self.tx, meta)

    def evolve(self, **changes: Any) -> None:
        """Buffer the metadata with ``changes``."""
        self.save(attrs.evolve(self.meta, **changes))

    def put_step(self, rec: StepRec) -> None:
        """Buffer a step record (``steps`` is updated by whoever commits it)."""
        self.tx.put(step_key(rec.index), STEP_CODEC.encode(rec))

    def mark(self) -> Mark:
        """Where the buffer stands now (to ``undo`` what follows)."""
        return Mark(self.tx.savepoint(), len(self.tx.events))

    def undo(self, mark: Mark) -> None:
        """Drop every write and event buffered since ``mark``."""
        self.tx.rollback(mark.point)
        self.drop_events(mark)

    def drop_events(self, mark: Mark) -> None:
        """Drop the events buffered since ``mark`` (their writes stay)."""
        del self.tx.events[mark.events :]

    # -- control ------------------------------------------------------------------------------

    def stop(self, signal: Signal) -> Never:
        """End the execution with ``signal`` (remembered: later operations re-raise it)."""
        self.signal = signal
        raise signal

    # -- the deadline ---------------------------------------------------------------------------

    def past_deadline(self) -> bool:
        """Whether the run's deadline (``run_timeout``) has passed."""
        deadline = self.meta.deadline
        return deadline is not None and self.tx.now() >= deadline

    def check_deadline(self) -> None:
        """A step boundary: a run past its deadline stops here (``TimedOut``)."""
        if self.past_deadline():
            self.stop(TimedOut())

    def wake_alarm(self, wake: datetime | None) -> datetime | None:
        """The alarm of a run sleeping until ``wake`` (``None``: until something wakes it):
        never later than its deadline."""
        deadline = self.meta.deadline
        if deadline is None:
            return wake
        return deadline if wake is None else min(wake, deadline)

    def suspend(self, wake: datetime | None) -> Never:
        """End the execution: the run sleeps until ``wake`` (``None``: until something
        wakes it), or its deadline if that comes first."""
        self.evolve(status="sleeping")
        self.tx.set_alarm(self.wake_alarm(wake))
        self.stop(Suspended())

    def check_open(self, what: str, *, inside_step: bool = False) -> None:
        """Refuse a step operation after the end, or while another step's effect runs."""
        if self.signal is not None:
            raise self.signal
        if self.busy is not None and not inside_step:
            raise RuntimeError(
                f"{what} while step {self.busy!r} is running: steps of a run execute one at a "
                "time (do not nest steps or run them concurrently)"
            )
