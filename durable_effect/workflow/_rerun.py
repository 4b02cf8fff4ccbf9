"""Running a finished run again: ``fork`` (a new run starting with a copy of its history)
and ``resume`` (the same run, continuing after its last completed step).

* **fork** — of a finished run only (``InvalidStateError`` otherwise): a new ``pending`` run
  with the same input, labels and concurrency key (not the idempotency key) whose step
  records *before* ``from_step`` — all of them up to the last completed step when
  ``from_step`` is ``None`` — are copied, so those steps replay instead of running again,
  with the patch markers recorded before that point (``_versions``). ``from_step`` must
  name a completed step (``ValidationError``). The new run records ``forked_from`` and gets
  a fresh deadline. The copied records of ``step.start_workflow`` / ``step.run_workflow``
  steps keep their output (the child's id, the child's output) but not the child they name:
  that child belongs to the original run, so cancelling the fork leaves it alone. A copied
  event wait replays its event, which stays counted in the original run's inbox
  (``StepRec.event_from``): the new run's inbox starts empty, and the events the original
  run never took are not carried over (events still queued when a run ends are never
  delivered).
* **resume** — of a ``failed`` or ``cancelled`` run only (``InvalidStateError`` otherwise):
  the run becomes ``pending`` again with its alarm now, its cancel request is dropped and
  its deadline starts afresh; its steps are kept, so the next execution replays the
  completed ones and runs the rest (``attempt`` grows with that lease). A durable sleep or a
  retry wait it was in keeps its wake time; so does an event wait, and it sees the
  events sent after the resume only: those still queued when the run ended are never
  delivered (``RunMeta.events_from``; they stay readable, as for any finished run, until
  the resume). Its ``end`` record is dropped, so sends are accepted again. ``run:resume``
  is emitted.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from datetime import datetime

import attrs

from durable_effect._effect import Effect, Gen
from durable_effect.errors import InstanceNotFoundError, InvalidStateError, ValidationError
from durable_effect.jobs._exec import validated
from durable_effect.jobs._instance import InstanceTx
from durable_effect.workflow._events import RunResumed
from durable_effect.workflow._inbox import next_seq
from durable_effect.workflow._operations import Copied
from durable_effect.workflow._records import (
    END_KEY,
    META,
    STEP_CODEC,
    RunMeta,
    StepRec,
    load_steps,
    step_key,
)
from durable_effect.workflow._run_state import run_event_fields

__all__ = ["RESUMABLE", "copy_history", "resume"]

#: The statuses a run can be resumed from.
RESUMABLE = frozenset({"failed", "cancelled"})
_RESUMABLE_TEXT = "failed or cancelled"


def copy_history(
    records: Mapping[str, bytes], meta: RunMeta, run_id: str, from_step: str | None
) -> Copied:
    """What a fork of run ``run_id`` starts with (module docstring); ``ValidationError``
    when ``from_step`` names no completed step of the run."""
    steps = load_steps(records)
    if from_step is None:
        done = [i for i, rec in enumerate(steps) if rec.status == "completed"]
        cut = done[-1] + 1 if done else 0
    else:
        given: object = from_step
        if not isinstance(given, str):
            raise ValidationError(
                schema="from_step",
                message=f"must be a step name (str) or None, got {type(given).__name__}",
                path="from_step",
            )
        found = [i for i, rec in enumerate(steps) if rec.name == from_step]
        if not found or steps[found[0]].status != "completed":
            names = [rec.name for rec in steps if rec.status == "completed"]
            raise ValidationError(
                schema="from_step",
                message=f"run {run_id!r} has no completed step {from_step!r} "
                f"(its completed steps: {names})",
                path="from_step",
            )
        cut = found[0]
    kept = [_copied(rec, run_id) for rec in steps[:cut]]
    return Copied(
        records={step_key(rec.index): STEP_CODEC.encode(rec) for rec in kept},
        next_index=kept[-1].index + 1 if kept else 0,
        patches=[mark for mark in meta.patches if mark.position < cut],
    )


def _copied(rec: StepRec, run_id: str) -> StepRec:
    """A step record as a fork of run ``run_id`` copies it: without the child it names, and
    a wait that took an event says from which run's inbox, so the new run's own inbox
    (empty at first) counts none of its events taken."""
    rec = attrs.evolve(rec, child_workflow=None, child_run_id=None)
    if rec.event_seq is None or rec.event_from is not None:
        return rec
    return attrs.evolve(rec, event_from=run_id)


@Effect.gen
def resume(
    txs: Sequence[InstanceTx], expired: Callable[[RunMeta, datetime], bool]
) -> Gen[None, InstanceNotFoundError | InvalidStateError | ValidationError]:
    """Resume a failed or cancelled run: ``txs`` = the run, its cancel instance, its inbox
    (module docstring); ``expired`` tells whether a finished run is past its retention."""
    rtx, ctx, itx = txs[0], txs[1], txs[2]
    loaded = yield from validated(lambda: META.load(rtx))
    now = rtx.now()
    if loaded is None or expired(loaded, now):
        yield from InstanceNotFoundError(instance_id=rtx.instance_id)
    assert loaded is not None
    meta: RunMeta = loaded
    if meta.status not in RESUMABLE:
        yield from InvalidStateError(
            expected=_RESUMABLE_TEXT, actual=meta.status, operation="resume"
        )
    resumed = attrs.evolve(
        meta,
        status="pending",
        completed_at=None,
        error=None,
        failure=None,
        failed_step=None,
        output_type=None,
        key_polls=0,
        deadline=None if meta.run_timeout is None else now + meta.run_timeout,
        events_from=(yield from validated(lambda: next_seq(itx.records()))),
    )
    META.save(rtx, resumed)
    rtx.delete(END_KEY)  # it is not over: a send is accepted, a waiting parent sleeps
    rtx.set_alarm(now)
    if ctx.exists:  # the cancel request the run honoured: it must not stop it again
        ctx.purge()
    fields = run_event_fields(rtx.ref, now, meta.labels)
    rtx.emit(RunResumed(**fields, previous_status=meta.status))
    return None
