"""The client operations of a workflow, as handlers over the instances a client call leased.

Each is an ``@Effect.gen`` program over ``InstanceTx``\\ s; the runtime commits what it
buffered if, and only if, it succeeds.

* ``trigger``: per prepared item, an idempotency key already used by a retained run gives
  that run (``idempotent``); a concurrency key with a run still pending fails with
  ``ConflictError`` — or gives that run with ``coalesce="skip"`` (``coalesced``); otherwise
  a ``pending`` run is written with its alarm now (``created``). A batch is one
  transaction: all items or none.
* ``cancel_idle``: cancel a run no worker holds (this handler holds its lease).
* ``request_cancel``: write the cancel request of a run a worker is executing; the worker
  stops at its next step boundary.
* ``delete``: delete a finished run with its cancel instance and idempotency mark.
"""

from __future__ import annotations

import functools
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Never

import attrs

from durable_effect._codec import decode_json
from durable_effect._effect import Effect, Gen
from durable_effect._events import Event
from durable_effect.errors import (
    ConflictError,
    InstanceNotFoundError,
    InvalidStateError,
    ValidationError,
)
from durable_effect.jobs._exec import validated
from durable_effect.jobs._instance import InstanceTx, TxHooks
from durable_effect.storage._port import InstanceSnapshot
from durable_effect.workflow._children import finished_event, has_children, must_wake_parent
from durable_effect.workflow._events import (
    RunCancelled,
    RunCoalesced,
    RunDeleted,
    RunTriggered,
    StepCancelled,
)
from durable_effect.workflow._records import (
    CANCEL_FLAG,
    INPUT_KEY,
    KEY_STATE,
    META,
    CancelFlag,
    KeyState,
    PatchMark,
    RunMeta,
    drop_mark,
    idem_ref,
    key_ref,
    mark_of,
    put_end,
    run_ref,
    set_mark,
)
from durable_effect.workflow._results import FINISHED, Coalesce, TriggerResult
from durable_effect.workflow._run_state import finished_alarm, run_event_fields

__all__ = [
    "ACTIVE_TEXT",
    "FINISHED_TEXT",
    "Copied",
    "Prepared",
    "cancel_idle",
    "check_active",
    "check_finished",
    "delete",
    "request_cancel",
    "trigger",
]

ACTIVE_TEXT = "pending, leased or sleeping"
FINISHED_TEXT = "completed, failed or cancelled"

_RunErrors = InstanceNotFoundError | InvalidStateError | ValidationError


@attrs.frozen(kw_only=True)
class Prepared:
    """A validated trigger item, with the id its run gets if one is created."""

    run_id: str
    input_data: bytes
    idempotency_key: str | None
    concurrency_key: str | None
    labels: dict[str, str]
    coalesce: Coalesce | None
    #: The run's deadline is this long after its trigger (``None``: no deadline).
    run_timeout: timedelta | None = None
    #: What a fork copies into the new run (``_rerun``), and the run it was forked from.
    copied: Copied | None = None
    forked_from: str | None = None
    #: The run starting this one as a child.
    parent_run_id: str | None = None


@attrs.frozen(kw_only=True)
class Copied:
    """The history a fork starts with: step records (by key), the next step index, the
    patch markers."""

    records: Mapping[str, bytes]
    next_index: int
    patches: list[PatchMark]


def check_active(
    meta: RunMeta | None, instance_id: str, operation: str = "cancel"
) -> Effect[RunMeta, InstanceNotFoundError | InvalidStateError]:
    """The meta of an active run, or the error ``operation`` (``cancel``, ``send``) fails
    with."""
    if meta is None:
        return Effect.fail(InstanceNotFoundError(instance_id=instance_id))
    if meta.status in FINISHED:
        return Effect.fail(
            InvalidStateError(expected=ACTIVE_TEXT, actual=meta.status, operation=operation)
        )
    return Effect.succeed(meta)


def check_finished(
    meta: RunMeta | None, instance_id: str, operation: str
) -> Effect[RunMeta, InstanceNotFoundError | InvalidStateError]:
    """The meta of a finished run, or the error ``operation`` fails with."""
    if meta is None:
        return Effect.fail(InstanceNotFoundError(instance_id=instance_id))
    if meta.status not in FINISHED:
        return Effect.fail(
            InvalidStateError(expected=FINISHED_TEXT, actual=meta.status, operation=operation)
        )
    return Effect.succeed(meta)


def _peek(tx: InstanceTx, instance_id: str) -> Effect[InstanceSnapshot, Never]:
    hooks: TxHooks | None = tx.hooks
    if hooks is None:  # pragma: no cover - the engine always gives hooks
        raise RuntimeError("workflow operations need the runtime's hooks")
    return Effect.promise(lambda: hooks.peek(instance_id))


@Effect.gen
def _committed_meta(tx: InstanceTx, instance_id: str) -> Gen[RunMeta | None, ValidationError]:
    """The committed metadata of another run (read beside ``tx``, without a lease)."""
    snap = yield from _peek(tx, instance_id)
    return (yield from validated(functools.partial(META.load, snap.records)))


# -- trigger --------------------------------------------------------------------------------------


@Effect.gen
def trigger(
    name: str,
    expired: Callable[[RunMeta, datetime], bool],
    txs: Mapping[str, InstanceTx],
    items: Sequence[Prepared],
) -> Gen[list[TriggerResult], ConflictError | ValidationError]:
    """Apply prepared triggers of workflow ``name`` to the leased instances ``txs`` (by
    instance id: every new run, idempotency mark and concurrency key involved).

    ``expired`` tells whether the run an idempotency mark names is past its retention.
    """
    results: list[TriggerResult] = []
    events: list[tuple[InstanceTx, Event]] = []
    created: set[str] = set()
    for item in items:
        ref = run_ref(name, item.run_id)
        rtx = txs[ref.instance_id]
        now = rtx.now()
        itx: InstanceTx | None = None
        if item.idempotency_key is not None:
            itx = txs[idem_ref(name, item.idempotency_key).instance_id]
            existing = mark_of(itx)
            if existing is not None:
                if existing in created:
                    retained = True
                else:
                    meta = yield from _committed_meta(rtx, run_ref(name, existing).instance_id)
                    retained = meta is not None and not expired(meta, now)
                if retained:
                    results.append(TriggerResult(run_id=existing, disposition="idempotent"))
                    continue
        if item.concurrency_key is not None:
            key = item.concurrency_key
            ktx = txs[key_ref(name, key).instance_id]
            found = yield from validated(functools.partial(KEY_STATE.load, ktx))
            state = KeyState() if found is None else found
            pending = state.pending
            if pending is not None and pending not in created:
                other = yield from _committed_meta(rtx, run_ref(name, pending).instance_id)
                if other is None or other.status != "pending":
                    pending = None  # the mark is stale
            if pending is not None:
                if item.coalesce != "skip":
                    yield from ConflictError(
                        key=key,
                        message=f"run {pending} of workflow {name!r} is already pending "
                        "for this concurrency key",
                    )
                coalesced = RunCoalesced(
                    **run_event_fields(run_ref(name, pending), now, item.labels),
                    concurrency_key=key,
                )
                events.append((rtx, coalesced))
                results.append(TriggerResult(run_id=pending, disposition="coalesced"))
                continue
            KEY_STATE.save(ktx, KeyState(pending=item.run_id, leased=state.leased))
        copied = item.copied
        META.save(
            rtx,
            RunMeta(
                status="pending",
                created_at=now,
                labels=dict(item.labels),
                idempotency_key=item.idempotency_key,
                concurrency_key=item.concurrency_key,
                run_timeout=item.run_timeout,
                deadline=None if item.run_timeout is None else now + item.run_timeout,
                parent_run_id=item.parent_run_id,
                forked_from=item.forked_from,
                next_index=0 if copied is None else copied.next_index,
                patches=[] if copied is None else list(copied.patches),
            ),
        )
        rtx.put(INPUT_KEY, item.input_data)
        for key, data in ({} if copied is None else copied.records).items():
            rtx.put(key, data)
        rtx.set_alarm(now)
        if itx is not None:
            set_mark(itx, item.run_id)
        created.add(item.run_id)
        triggered = RunTriggered(
            **run_event_fields(ref, now, item.labels),
            input=decode_json(item.input_data),
            idempotency_key=item.idempotency_key,
            concurrency_key=item.concurrency_key,
            parent_run_id=item.parent_run_id,
            forked_from=item.forked_from,
        )
        events.append((rtx, triggered))
        results.append(TriggerResult(run_id=item.run_id, disposition="created"))
    for tx, event in events:
        tx.emit(event)
    return results


# -- cancel / delete ------------------------------------------------------------------------------


@Effect.gen
def cancel_idle(tx: InstanceTx, retain: timedelta | None) -> Gen[None, _RunErrors]:
    """Cancel a run no worker holds (this handler holds its lease); ``retain`` is the
    workflow's retention (``None``: kept forever)."""
    loaded = yield from validated(lambda: META.load(tx))
    meta = yield from check_active(loaded, tx.instance_id)
    now: datetime = tx.now()
    fields = run_event_fields(tx.ref, now, meta.labels)
    if meta.status == "sleeping" and meta.current_step is not None:
        tx.emit(StepCancelled(**fields, step_name=meta.current_step))
    children = has_children(tx.records())  # its next alarm, at once, cancels them
    wake = must_wake_parent(meta)  # its next alarm, at once, wakes its waiting parent
    cancelled = attrs.evolve(
        meta,
        status="cancelled",
        completed_at=now,
        cancel_children=children,
        wake_parent=wake,
        waiting=None,
    )
    META.save(tx, cancelled)
    put_end(tx)  # a parent suspending to wait for it is refused by it
    tx.set_alarm(now if children or wake else finished_alarm(retain, now))
    child_end = finished_event(tx.ref.job_name, tx.ref.id, cancelled, now)
    if child_end is not None:
        tx.emit(child_end)
    tx.emit(RunCancelled(**run_event_fields(tx.ref, now, meta.labels)))
    return None


@Effect.gen
def request_cancel(ctx: InstanceTx, run_instance_id: str) -> Gen[None, _RunErrors]:
    """Write a cancel request for a run a worker holds (``ctx`` is its ``wfcancel:…``)."""
    snap = yield from _peek(ctx, run_instance_id)
    loaded = yield from validated(lambda: META.load(snap.records))
    yield from check_active(loaded, run_instance_id)
    if ctx.get(CANCEL_FLAG.key) is None:
        CANCEL_FLAG.save(ctx, CancelFlag(requested_at=ctx.now()))
    return None


@Effect.gen
def delete(txs: Sequence[InstanceTx]) -> Gen[None, _RunErrors]:
    """Delete a finished run: ``txs`` = the run, its cancel instance, its inbox, its
    idempotency mark."""
    rtx, ctx, itx, *rest = txs
    loaded = yield from validated(lambda: META.load(rtx))
    meta = yield from check_finished(loaded, rtx.instance_id, "delete_run")
    rtx.purge()
    for side in (ctx, itx):
        if side.exists:
            side.purge()
    for itx in rest:
        drop_mark(itx, rtx.ref.id)
    rtx.emit(RunDeleted(**run_event_fields(rtx.ref, rtx.now(), meta.labels)))
    return None
