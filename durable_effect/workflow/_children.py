"""Child runs: ``step.run_workflow`` / ``step.start_workflow``, and the cancellation tree.

* **start** — the first time a run reaches the step, the child run is created (``pending``,
  ``parent_run_id`` recorded, its deadline capped by the parent's) in ONE commit with the
  parent's step record naming it. Its id is derived from the parent's run id and the step's
  name, so a replay (after a crash, a sleep…) finds the step record, or finds the child
  already there, and never starts a second one. With ``idempotency_key`` a retained run of
  the child workflow with that key is the child instead (a run another parent or a client
  started: it is not this run's to cancel, and a waiting parent is recorded beside the key,
  ``Waiter``, so that run's end wakes it too). ``run:child-started``.
* **wait** (``run_workflow``) — a durable wait with no worker held: the parent looks at the
  child; finished, the step completes with its output (or fails with its own error, decoded
  by the child workflow's ``error_schema``; ``RunCancelledError`` for a cancelled child);
  otherwise the parent sleeps, its suspending commit refused when the child's ``end``
  record exists (the child ended after the look: the parent looks again at once). A child
  ending wakes its sleeping parent (alarm now, only while the parent waits for that very
  child) right after its end commit, and announces ``run:child-finished``. The end commit
  also sets ``wake_parent`` and the child's alarm now; the flag is cleared only once the
  wake is delivered (or needs none), so a wake that could not be made — the worker died
  between the two, or the parent was held at that moment (by a sibling's end, a client
  call, a dead worker's lease) — is made again by the child's alarm, a little later each
  time (50 ms growing to 5 s). A parent seen not sleeping for this child needs no wake and
  its lease is not taken: its suspend, after this end, is refused by the ``end`` record.
  A run cancelled while no worker held it wakes its parent the same way, through its
  alarm. The parents waiting for a run of an idempotency key they did not start are woken
  right after its end too (best effort); should that be lost, their own alarm looks again
  later (1 minute, growing to 1 hour).
* **cancellation** — a cancelled run with children has ``cancel_children`` set and its
  alarm due; that alarm writes a cancel request for every unfinished child and wakes it, so
  the child ends ``cancelled`` at its next step boundary (and cancels its own children the
  same way: trees of any depth).
"""

from __future__ import annotations

import contextlib
import hashlib
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, Protocol

import attrs

from durable_effect._codec import Codec, decode_json
from durable_effect._effect import Effect
from durable_effect.errors import (
    LeaseLostError,
    RunCancelledError,
    RunFailedError,
    StorageError,
    TaggedError,
    ValidationError,
)
from durable_effect.jobs._instance import InstanceRef, InstanceTx, TxHooks, validate_id
from durable_effect.workflow._checkpoint import Checkpoints
from durable_effect.workflow._events import (
    RunChildFinished,
    RunChildStarted,
    RunTriggered,
    StepCompleted,
    StepFailed,
    StepStarted,
)
from durable_effect.workflow._failures import ErrorClasses
from durable_effect.workflow._records import (
    CANCEL_FLAG,
    END_KEY,
    INPUT_KEY,
    META,
    OUTPUT_KEY,
    CancelFlag,
    RunMeta,
    StepRec,
    add_waiter,
    cancel_ref,
    check_labels,
    idem_ref,
    load_steps,
    mark_of,
    run_id_fits,
    run_ref,
    set_mark,
    waiters_of,
)
from durable_effect.workflow._results import FINISHED
from durable_effect.workflow._run_state import (
    Aborted,
    RunState,
    millis,
    run_event_fields,
)
from durable_effect.workflow._values import error_text

__all__ = [
    "ChildRuns",
    "ChildSpec",
    "cancel_children",
    "child_run_id",
    "finished_event",
    "has_children",
    "must_wake_parent",
    "parent_wake",
    "wake_parent",
    "wake_retry_at",
]

POLL_MIN = timedelta(minutes=1)
POLL_MAX = timedelta(hours=1)
#: How soon a finished child tries again to wake a parent that was held (growing, capped).
WAKE_RETRY_MIN = timedelta(milliseconds=50)
WAKE_RETRY_MAX = timedelta(seconds=5)


class ChildSpec(Protocol):
    """What a child run needs of its workflow definition."""

    job_type: str

    @property
    def input_codec(self) -> Codec[Any]: ...

    @property
    def run_timeout(self) -> timedelta | None: ...

    @property
    def errors(self) -> ErrorClasses: ...

    def decode_output(self, data: bytes, output_type: str | None) -> Any: ...


def child_run_id(parent_workflow: str, child_workflow: str, parent_run_id: str, name: str) -> str:
    """The id of the child run step ``name`` of run ``parent_run_id`` starts."""
    digest = hashlib.sha256(f"{parent_workflow}\x00{parent_run_id}\x00{name}".encode()).hexdigest()
    derived = f"{parent_run_id}.{digest[:16]}"
    return derived if run_id_fits(child_workflow, derived) else f"c{digest}"


def _resolve(hooks: TxHooks, workflow: object) -> tuple[str, ChildSpec]:
    """The registered name and definition of ``workflow`` (a name or a definition)."""
    for name, definition in hooks.registered():
        if (name == workflow if isinstance(workflow, str) else definition is workflow) and (
            getattr(definition, "job_type", None) == "workflow"
        ):
            spec: ChildSpec = definition  # type: ignore[assignment]  # a WorkflowDefinition
            return name, spec
    shown = workflow if isinstance(workflow, str) else type(workflow).__name__
    raise TypeError(
        f"child workflow {shown!r} is not a workflow registered with this "
        "create_durable_jobs (register the child workflow beside its parent)"
    )


class ChildRuns:
    """The child steps of one execution (module docstring)."""

    def __init__(self, state: RunState, checkpoints: Checkpoints) -> None:
        self.state = state
        self.checkpoints = checkpoints
        self.hooks = checkpoints.hooks

    async def step(
        self,
        name: str,
        workflow: object,
        value: object,
        idempotency_key: str | None,
        labels: Mapping[str, str] | None,
        *,
        wait: bool,
    ) -> Effect[Any, BaseException]:
        """``run_workflow`` (``wait``) or ``start_workflow`` step ``name``."""
        state = self.state
        child_name, spec = _resolve(self.hooks, workflow)
        rec = state.steps.get(name)
        if rec is not None and rec.status == "completed" and rec.output is not None:
            if not wait:
                return Effect.succeed(decode_json(rec.output.encode("utf-8")))
            return Effect.succeed(spec.decode_output(rec.output.encode("utf-8"), rec.output_type))
        if rec is None or rec.child_run_id is None:
            state.check_deadline()
            try:
                data = spec.input_codec.encode(spec.input_codec.validate(value))
                checked = {} if labels is None else check_labels(labels)
                if idempotency_key is not None:
                    validate_id(idempotency_key, field="idempotency_key")
            except ValidationError as exc:
                return Effect.fail(exc)
            await self.checkpoints.announce()
            rec = await self._start(
                name,
                child_name=child_name,
                spec=spec,
                data=data,
                labels=checked,
                key=idempotency_key,
                wait=wait,
            )
        if not wait:
            return Effect.succeed(rec.child_run_id)
        return await self._wait(rec, spec)

    async def _start(
        self,
        name: str,
        *,
        child_name: str,
        spec: ChildSpec,
        data: bytes,
        labels: dict[str, str],
        key: str | None,
        wait: bool,
    ) -> StepRec:
        state = self.state
        now = state.now()
        derived = child_run_id(state.workflow, child_name, state.run_id, name)
        refs = [run_ref(child_name, derived)]
        if key is not None:
            refs.append(idem_ref(child_name, key))
        found = state.steps.get(name)
        index = found.index if found is not None else state.meta.next_index
        if found is None:
            state.evolve(next_index=index + 1)
        deadline = state.meta.deadline
        if spec.run_timeout is not None:
            own = now + spec.run_timeout
            deadline = own if deadline is None else min(deadline, own)
        made: list[StepRec] = []

        def create(txs: Sequence[InstanceTx]) -> None:
            ctx = txs[0]
            child_id = derived
            existing = mark_of(txs[1]) if len(txs) > 1 else None
            if existing is not None:
                child_id = existing  # a retained run of the key is the child
                if wait:  # its end wakes this run too (``wake_parent``)
                    add_waiter(txs[1], state.workflow, state.run_id)
            elif META.load(ctx) is None:
                META.save(
                    ctx,
                    RunMeta(
                        status="pending",
                        created_at=now,
                        labels=labels,
                        idempotency_key=key,
                        run_timeout=None if deadline is None else max(deadline - now, _MS),
                        deadline=deadline,
                        parent_run_id=state.run_id,
                        parent_workflow=state.workflow,
                    ),
                )
                ctx.put(INPUT_KEY, data)
                ctx.set_alarm(now)
                if len(txs) > 1:
                    set_mark(txs[1], derived)
                ctx.emit(
                    RunTriggered(
                        **run_event_fields(ctx.ref, now, labels),
                        input=decode_json(data),
                        idempotency_key=key,
                        parent_run_id=state.run_id,
                    )
                )
            rec = StepRec(
                name=name,
                index=index,
                status="sleeping" if wait else "completed",
                started_at=now,
                first_started_at=now,
                completed_at=None if wait else now,
                output=None if wait else f'"{child_id}"',
                child_workflow=child_name,
                child_run_id=child_id,
            )
            state.put_step(rec)
            state.emit(StepStarted(**state.fields(), step_name=name, step_index=index))
            state.emit(
                RunChildStarted(
                    **state.fields(),
                    step_name=name,
                    child_workflow=child_name,
                    child_run_id=child_id,
                    wait=wait,
                )
            )
            if not wait:
                state.emit(StepCompleted(**state.fields(), step_name=name, step_index=index))
            made.append(rec)

        try:
            await self.hooks.checkpoint_with_all(state.tx, refs, create)
        except (LeaseLostError, StorageError) as exc:
            state.stop(Aborted(exc))
        rec = made[0]
        state.steps[name] = rec
        return rec

    async def _wait(self, rec: StepRec, spec: ChildSpec) -> Effect[Any, BaseException]:
        state = self.state
        assert rec.child_run_id is not None
        assert rec.child_workflow is not None
        child = run_ref(rec.child_workflow, rec.child_run_id)
        try:
            snap = await self.hooks.peek(child.instance_id)
            meta = META.load(snap.records)
        except (LeaseLostError, StorageError) as exc:
            state.stop(Aborted(exc))
        now = state.now()
        state.current = rec.name
        if meta is None or meta.status in FINISHED:
            return await self._finished(rec, spec, meta, snap.records.get(OUTPUT_KEY))
        state.check_deadline()
        state.evolve(current_step=rec.name)
        poll = min(max(now - rec.started_at, POLL_MIN), POLL_MAX)
        state.suspend_guards = ((child.instance_id, END_KEY),)
        return state.suspend(now + poll)

    async def _finished(
        self, rec: StepRec, spec: ChildSpec, meta: RunMeta | None, output: bytes | None
    ) -> Effect[Any, BaseException]:
        state = self.state
        child_id = rec.child_run_id
        assert child_id is not None
        now = state.now()
        if meta is not None and meta.status == "completed" and output is not None:
            done = attrs.evolve(
                rec,
                status="completed",
                completed_at=now,
                output=output.decode("utf-8"),
                output_type=meta.output_type,
            )
            mark = state.mark()
            state.put_step(done)
            state.emit(
                StepCompleted(
                    **state.fields(),
                    step_name=rec.name,
                    step_index=rec.index,
                    output=decode_json(output),
                    duration_ms=millis(now - rec.started_at),
                )
            )
            await self.checkpoints.commit_or_cancel(mark, rec.name, rec.index)
            state.steps[rec.name] = done
            state.current = None
            return Effect.succeed(spec.decode_output(output, meta.output_type))
        error: TaggedError
        if meta is None:
            error = RunFailedError(run_id=child_id, error="the child run is gone")
        elif meta.status == "cancelled":
            error = RunCancelledError(run_id=child_id)
        elif meta.failure is not None:
            error = spec.errors.restore(meta.failure, child_id)
        else:
            error = RunFailedError(run_id=child_id, error=meta.error or "unknown error")
        text = error_text(error)
        failed = attrs.evolve(rec, status="failed", completed_at=now, error=text)
        state.put_step(failed)
        state.steps[rec.name] = failed
        state.evolve(failed_step=rec.name)
        state.emit(
            StepFailed(
                **state.fields(),
                step_name=rec.name,
                step_index=rec.index,
                error=text,
                stack=None,
                attempt=1,
                will_retry=False,
            )
        )
        state.current = None
        return Effect.fail(error)


_MS = timedelta(milliseconds=1)


# -- a child's end, a parent's cancel ---------------------------------------------------------


def finished_event(
    workflow: str, run_id: str, meta: RunMeta, now: datetime
) -> RunChildFinished | None:
    """``run:child-finished`` of run ``run_id`` ending now with ``meta`` (``None``: it has
    no parent)."""
    if meta.parent_run_id is None or meta.parent_workflow is None:
        return None
    parent = run_ref(meta.parent_workflow, meta.parent_run_id)
    return RunChildFinished(
        **run_event_fields(parent, now, {}),
        child_workflow=workflow,
        child_run_id=run_id,
        status=meta.status,
    )


def _waits_for(records: Mapping[str, bytes], child_id: str) -> bool:
    """Whether a run (its records) sleeps waiting for run ``child_id`` to end."""
    current = META.load(records)
    if current is None or current.status != "sleeping":
        return False
    waits = [r for r in load_steps(records) if r.name == current.current_step]
    return any(r.child_run_id == child_id for r in waits)


def parent_wake(now: datetime, child_id: str) -> Callable[[Sequence[InstanceTx]], bool]:
    """The change that wakes a parent sleeping until child ``child_id`` ends: its alarm
    now (a parent waiting for something else is left asleep). ``True``: the change is
    made or none is needed."""

    def wake(txs: Sequence[InstanceTx]) -> bool:
        if _waits_for(txs[0].records(), child_id):
            txs[0].set_alarm(now)
        return True

    return wake


def must_wake_parent(meta: RunMeta) -> bool:
    """Whether a run ending now has a parent to wake (``RunMeta.wake_parent``)."""
    return meta.parent_run_id is not None and meta.parent_workflow is not None


async def wake_parent(tx: InstanceTx, hooks: TxHooks, meta: RunMeta) -> bool:
    """After the end of run ``tx`` (``meta``): the alarm now of its parent and of the runs
    waiting for it through its idempotency key, when they sleep waiting for it. ``False``
    when its parent was held at that moment (or the storage failed): try again later
    (``wake_retry_at``; module docstring)."""
    workflow, run_id, now = tx.ref.job_name, tx.ref.id, tx.now()
    parent: InstanceRef | None = None
    others: list[InstanceRef] = []
    if meta.parent_run_id is not None and meta.parent_workflow is not None:
        parent = run_ref(meta.parent_workflow, meta.parent_run_id)
    if meta.idempotency_key is not None:
        with contextlib.suppress(LeaseLostError, StorageError, ValidationError):
            mark = await hooks.peek(idem_ref(workflow, meta.idempotency_key).instance_id)
            if mark_of(mark.records) == run_id:
                waiting = waiters_of(mark.records)
                others.extend(run_ref(w.workflow, w.run_id) for w in waiting)
    woken = True
    for ref in dict.fromkeys([*([] if parent is None else [parent]), *others]):
        try:
            if not _waits_for((await hooks.peek(ref.instance_id)).records, run_id):
                continue  # a suspend after this end is refused by its ``end`` record
            done = await hooks.try_commit_with(tx, [ref], parent_wake(now, run_id))
        except ValidationError:  # unreadable: no wake would help
            continue
        except (LeaseLostError, StorageError):
            done = None
        if done is None and ref == parent:  # held: its own child's end must reach it
            woken = False
    return woken


def wake_retry_at(meta: RunMeta, now: datetime) -> datetime:
    """When a finished run whose parent was held tries to wake it again."""
    since = now - (meta.completed_at or now)
    return now + min(max(since, WAKE_RETRY_MIN), WAKE_RETRY_MAX)


def has_children(records: Mapping[str, bytes]) -> bool:
    """Whether a run's step records name a child run."""
    return any(rec.child_run_id is not None for rec in load_steps(records))


async def cancel_children(tx: InstanceTx, hooks: TxHooks) -> None:
    """Write a cancel request for every unfinished child of the (cancelled) run ``tx`` and
    wake it (module docstring)."""
    now: datetime = tx.now()
    for rec in load_steps(tx.records()):
        if rec.child_run_id is None or rec.child_workflow is None:
            continue
        child = run_ref(rec.child_workflow, rec.child_run_id)
        meta = META.load((await hooks.peek(child.instance_id)).records)
        if meta is None or meta.status in FINISHED or meta.parent_run_id != tx.ref.id:
            continue  # gone, over, or a run of its idempotency key someone else started

        def request(ctx: InstanceTx) -> None:
            if ctx.get(CANCEL_FLAG.key) is None:
                CANCEL_FLAG.save(ctx, CancelFlag(requested_at=now))

        await hooks.checkpoint_with(tx, cancel_ref(rec.child_workflow, rec.child_run_id), request)

        def wake(txs: Sequence[InstanceTx]) -> None:
            current = META.load(txs[0])
            if current is not None and current.status not in FINISHED:
                txs[0].set_alarm(now)

        await hooks.try_commit_with(tx, [child], wake)
