"""The retention sweep: finished runs past ``retain`` purged in small batches, one alarm.

A workflow with ``retain`` lists each finished run in ``wf:{name}:x:{status}`` under its
purge instant (``workflow._index``). One alarm per workflow — that of its bookkeeping
instance ``jobmeta:{name}:workflow`` — runs the sweep: it reads the oldest due entries
(at most `SWEEP_BATCH`), purges those runs with their idempotency marks, cancel
requests and inboxes (the events sent to them) in one commit, and re-arms:

* at once when more are due — so a backlog (100,000 runs past a shortened ``retain``, a
  worker that was down) is purged as a stream of short transactions, each one claim of
  an alarm like any other: alarms due meanwhile are claimed in between, oldest first, and
  no write lock is ever held for more than one batch;
* else at the next purge instant in the index, or ``retain`` from now when there is none
  (a run finishing later cannot be due before that).

A run is purged only if, read again under its lease, it is still finished and past its
retention; an entry whose run is gone is dropped. Runs a handler holds are left for a
later sweep. Reads treat a run past its retention as gone before the sweep gets to it.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Never

from durable_effect._effect import Effect
from durable_effect.errors import LeaseLostError, StorageError, ValidationError
from durable_effect.jobs._index_keys import instant_key, key_instant
from durable_effect.jobs._instance import InstanceRef, InstanceTx
from durable_effect.workflow._index import expiry_indexes
from durable_effect.workflow._records import META, cancel_ref, drop_mark, idem_ref, inbox_ref

if TYPE_CHECKING:
    from durable_effect.workflow._definition import WorkflowDefinition

__all__ = ["SWEEP_BATCH", "sweep"]

#: Runs purged per commit: about a millisecond of work on SQLite, so an alarm due meanwhile
#: waits at most that long for the write lock (measured: 100,000 runs purged with the alarm
#: lateness p99 of a worker within 2x of idle; 64 per commit was 3.7x; docs/benchmarks.md).
SWEEP_BATCH: Final = 16
#: How long the sweep waits when every due run it found was held by a handler.
_HELD_RETRY: Final = timedelta(seconds=1)
#: Above every instance id (ids have at most 1024 characters): "past every run at this key".
_LAST_ID: Final = "\U0010ffff" * 1024


async def sweep(
    definition: WorkflowDefinition[Any, Any, Any, Any], tx: InstanceTx
) -> Effect[None, Never]:
    """The sweep alarm of workflow ``tx.ref.job_name`` (``tx``: its bookkeeping instance)."""
    retain = definition.retain
    hooks = tx.hooks
    if retain is None or hooks is None:
        tx.set_alarm(None)
        return Effect.succeed(None)
    name = tx.ref.job_name
    now = tx.now()
    indexes = expiry_indexes(name)
    try:
        due = await hooks.scan_index(indexes, limit=SWEEP_BATCH + 1, until=instant_key(now))
        batch = [hit.instance_id for hit in due[:SWEEP_BATCH]]
        purged = await _purge(definition, tx, batch, now) if batch else 0
        if len(due) > SWEEP_BATCH or purged < len(batch):
            tx.set_alarm(now if purged else now + _HELD_RETRY)
            return Effect.succeed(None)
        after = (instant_key(now), _LAST_ID)
        later = await hooks.scan_index(indexes, limit=1, after=after)
    except (LeaseLostError, StorageError) as exc:
        failed: Effect[None, Any] = Effect.fail(exc)  # nothing committed; it fires again
        return failed
    tx.set_alarm(key_instant(later[0].key) if later else now + retain)
    return Effect.succeed(None)


async def _purge(
    definition: WorkflowDefinition[Any, Any, Any, Any],
    tx: InstanceTx,
    instance_ids: Sequence[str],
    now: datetime,
) -> int:
    """Purge the runs ``instance_ids`` that are past their retention; how many entries were
    dealt with (purged, or dropped as stale)."""
    hooks = tx.hooks
    assert hooks is not None
    snapshots = await hooks.peek_many(instance_ids)
    groups: list[list[InstanceRef]] = []
    for instance_id in instance_ids:
        ref = InstanceRef.parse(instance_id)
        group = [ref, cancel_ref(ref.job_name, ref.id), inbox_ref(ref.job_name, ref.id)]
        try:
            meta = META.load(snapshots[instance_id].records)
        except ValidationError:
            meta = None
        if meta is not None and meta.idempotency_key is not None:
            group.append(idem_ref(ref.job_name, meta.idempotency_key))
        groups.append(group)

    def apply(txs: Sequence[InstanceTx]) -> int:
        done, at = 0, 0
        for group in groups:
            run, cancel, inbox, *marks = txs[at : at + len(group)]
            at += len(group)
            done += _purge_one(definition, run, (cancel, inbox), marks, now)
        return done

    done = await hooks.try_commit_with(tx, [ref for group in groups for ref in group], apply)
    if done is not None:
        return done
    total = 0  # one of them is held: one run at a time, leaving the held ones for later
    for group in groups:

        def apply_one(txs: Sequence[InstanceTx]) -> int:
            run, cancel, inbox, *marks = txs
            return _purge_one(definition, run, (cancel, inbox), marks, now)

        total += await hooks.try_commit_with(tx, group, apply_one) or 0
    return total


def _purge_one(
    definition: WorkflowDefinition[Any, Any, Any, Any],
    run: InstanceTx,
    sides: Sequence[InstanceTx],
    marks: Sequence[InstanceTx],
    now: datetime,
) -> int:
    """Purge one run (read under its lease) if it is past its retention; 1 if its entry was
    dealt with."""
    try:
        meta = META.load(run)
    except ValidationError:
        meta = None  # unreadable now: its entry said it was due, so it goes
    if meta is not None and not definition.expired(meta, now):
        return 1  # resumed since, or not due yet: its entries say so now
    run.purge()
    for side in sides:  # its cancel request and its inbox
        if side.exists:
            side.purge()
    for mark in marks:
        drop_mark(mark, run.ref.id)
    return 1
