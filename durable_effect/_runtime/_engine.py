"""The engine: runs one handler of one (or a few) instances as one storage transaction.

``call`` (client operations) and ``fire`` (alarms) share the same shape:

1. exclusion — the in-process lock of each instance, then its storage lease
   (``acquire``, the lease ``claim_due`` already granted, or — for a client call on one
   instance, when the storage has a ``lease_linger`` — the lease and snapshot this engine
   kept from the previous call there, see ``_kept``);
2. an ``InstanceTx`` per instance over the snapshot read under the lease;
3. the handler's ``Effect`` runs with the runtime clock and the job's log annotations;
   the lease is renewed while it runs (``_renewal``), and the handler's ``InstanceTx``
   carries the checkpoint hooks a long handler commits with (``_hooks``);
4. success → one ``commit`` of every buffered write, releasing the leases (fenced: a
   handler whose lease was taken over commits nothing; a kept lease is not released);
   failure → the leases are released
   and nothing is written. A handler that already released its leases in a last checkpoint
   (``TxHooks.checkpoint(..., release=True)``, a workflow run's end) costs nothing more;
5. the handler's telemetry events are published (those of failed calls too). The events a
   commit made true also go into that commit, as entries of the storage feed (``_feed``), so
   that other processes can follow what this one does; the events of a failed call, and
   lease renewals (no commit), are published here only.

The engine reads time only from its ``Clock``. Shells and queries reach storage and the
event bus only through the engine's small read/wait/publish methods, never directly.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

from durable_effect import _clock, _log
from durable_effect._effect import Effect, from_exit
from durable_effect._events import Event
from durable_effect._exit import Exit
from durable_effect._interpreter import run_exit
from durable_effect._runtime._bus import EventBus, Listener
from durable_effect._runtime._feed import feed_entries
from durable_effect._runtime._hooks import HandlerHooks
from durable_effect._runtime._indexes import IndexBuild
from durable_effect._runtime._kept import KeptLeases
from durable_effect._runtime._locks import LocalLocks
from durable_effect._runtime._registry import Registry
from durable_effect._runtime._renewal import Renewals
from durable_effect.errors import LeaseLostError, StorageError
from durable_effect.jobs._index_keys import JOB_META_TYPE
from durable_effect.jobs._instance import InstanceRef, InstanceTx
from durable_effect.storage._port import (
    Acquired,
    Claimed,
    FeedEntry,
    IndexHit,
    InstanceSnapshot,
    InstanceWrite,
    Lease,
    Storage,
)

__all__ = ["DEFAULT_LEASE_TTL", "Engine"]

R = TypeVar("R")
Err = TypeVar("Err", bound=BaseException)

DEFAULT_LEASE_TTL = timedelta(seconds=30)
_LOG = logging.getLogger("durable_effect")


class Engine:
    """Runs handlers against a storage under leases; see the module docstring."""

    def __init__(
        self,
        *,
        storage: Storage,
        clock: _clock.Clock,
        registry: Registry,
        bus: EventBus,
        owner: str,
        lease_ttl: timedelta = DEFAULT_LEASE_TTL,
        feed: bool = True,
    ) -> None:
        if lease_ttl <= timedelta(0):
            raise ValueError(f"lease_ttl must be positive, got {lease_ttl!r}")
        self.storage = storage
        self.clock = clock
        self.registry = registry
        self.bus = bus
        self.owner = owner
        self.lease_ttl = lease_ttl
        #: Whether commits append their events to the storage feed.
        self.feed = feed
        self.locks = LocalLocks()
        self.renewals = Renewals(self.extend, lease_ttl.total_seconds() / 3)
        self.kept = KeptLeases(storage.lease_linger, lease_ttl, self.release_quietly)
        #: The index entries of registered jobs: known complete, or built (``_indexes``).
        self.indexes = IndexBuild(self)
        if self.kept.enabled:
            storage.add_wanted_listener(self.kept.wanted)

    # -- client calls --------------------------------------------------------------------

    async def call(
        self,
        refs: Sequence[InstanceRef],
        handler: Callable[[Sequence[InstanceTx]], Effect[R, Err]],
        *,
        log_level: int | None = None,
        new: bool = False,
    ) -> Effect[R, Err | StorageError]:
        """Run ``handler`` over ``refs`` under their leases; the outcome as an effect.

        The returned effect replays the handler's success or failure (after commit or
        rollback), fails with ``StorageError`` if storage failed (nothing was written), and
        re-raises a defect.

        ``new``: the one instance of ``refs`` is expected not to exist yet (a run id just
        made): the handler runs over an empty snapshot and commits with
        ``Storage.commit_new`` — one write, no lease — when it succeeds; if the instance
        turns out to exist or be leased, nothing was written and the call runs as usual.
        """
        ids = [ref.instance_id for ref in refs]
        if len(ids) == 1 and await self.locks.try_hold(ids[0]):
            # Uncontended (the usual case): the same lock, without ``hold``'s waiting list.
            try:
                return await self._call_held(refs, ids, handler, log_level, new)
            finally:
                self.locks.release(ids[0])
        async with self.locks.hold(ids):
            return await self._call_held(refs, ids, handler, log_level, new)

    async def _call_held(
        self,
        refs: Sequence[InstanceRef],
        ids: Sequence[str],
        handler: Callable[[Sequence[InstanceTx]], Effect[R, Err]],
        log_level: int | None,
        new: bool = False,
    ) -> Effect[R, Err | StorageError]:
        """``call`` once the in-process locks of ``ids`` are held."""
        single = len(ids) == 1
        if new and single:
            done = await self._call_new(refs[0], handler, log_level)
            if done is not None:
                return from_exit(done)
        kept = (
            await self.kept.take(ids[0], self.clock.now()) if single and self.kept.holding else None
        )
        if kept is not None:
            leases = [kept[0]]
            snapshots: Mapping[str, InstanceSnapshot] = {ids[0]: kept[1]}
        else:
            try:
                acquired = await self.acquire(ids)
            except StorageError as exc:
                return Effect.fail(exc)
            leases = list(acquired.leases)
            snapshots = acquired.snapshots
        hooks = HandlerHooks(self, leases)
        txs = [self.new_tx(ref, snapshots[ref.instance_id], hooks) for ref in refs]
        exit_ = await self._run_and_settle(
            refs[0], leases, txs, handler, log_level, hooks=hooks, keep=single
        )
        return from_exit(exit_)

    async def _call_new(
        self,
        ref: InstanceRef,
        handler: Callable[[Sequence[InstanceTx]], Effect[R, Err]],
        log_level: int | None,
    ) -> Exit[R, Err | StorageError] | None:
        """``call`` on an instance that should not exist yet (``new``), in one write.

        ``None`` — nothing written, nothing published — when the leased path must decide:
        the instance exists or is leased (``commit_new`` said so), or the handler did not
        succeed over the assumed empty snapshot (its failure may depend on what is there).
        The in-process lock of the instance is held, so no handler of this process runs
        there meanwhile; ``commit_new`` makes the write exclusive across processes.
        """
        tx = self.new_tx(ref, InstanceSnapshot(instance_id=ref.instance_id, records={}))
        annotations = {
            "job_type": ref.job_type,
            "job_name": ref.job_name,
            "instance_id": ref.instance_id,
        }
        with _clock.ClockScope(self.clock), _log.annotate(annotations, log_level):
            try:
                effect = handler([tx])
            except Exception:  # a defect: the leased path raises it again, as usual
                return None
            exit_: Exit[R, Err | StorageError] = await run_exit(effect)
        write = tx.to_write() if exit_.is_ok else None
        if write is None or write.purge:
            return None
        events = list(tx.events)
        try:
            written = await self.storage.commit_new(
                write,
                owner=self.owner,
                now=self.clock.now(),
                ttl=self.lease_ttl,
                feed=self.feed_of(events),
            )
        except StorageError as exc:
            self.bus.publish(events)  # the events of a failed call are delivered too
            return Exit.fail(exc)
        if not written:
            return None
        self.bus.publish(events)
        return exit_

    async def try_call(
        self,
        refs: Sequence[InstanceRef],
        handler: Callable[[Sequence[InstanceTx]], Effect[R, Err]],
        *,
        log_level: int | None = None,
    ) -> Effect[R, Err | StorageError] | None:
        """Like ``call``, but never waits: ``None`` (nothing ran) if an instance is held.

        For operations that must not queue behind a long handler (cancelling a workflow run
        that a worker is executing).
        """
        ids = [ref.instance_id for ref in refs]
        if any(self.locks.busy(iid) for iid in ids):
            return None
        async with self.locks.hold(ids):
            await self.kept.drop(ids)
            try:
                acquired = await self.storage.acquire(
                    ids, owner=self.owner, now=self.clock.now(), ttl=self.lease_ttl
                )
            except StorageError as exc:
                return Effect.fail(exc)
            if acquired is None:
                return None
            leases = list(acquired.leases)
            hooks = HandlerHooks(self, leases)
            txs = [self.new_tx(ref, acquired.snapshots[ref.instance_id], hooks) for ref in refs]
            exit_ = await self._run_and_settle(
                refs[0], leases, txs, handler, log_level, hooks=hooks
            )
            return from_exit(exit_)

    async def read(self, refs: Sequence[InstanceRef]) -> Mapping[str, InstanceSnapshot]:
        """Committed snapshots without a lease (for status and state queries)."""
        return await self.storage.load([ref.instance_id for ref in refs])

    async def read_tx(self, ref: InstanceRef) -> InstanceTx:
        """A read-only ``InstanceTx`` over the committed snapshot (never committed)."""
        snapshots = await self.read([ref])
        return self.new_tx(ref, snapshots[ref.instance_id])

    # -- what shells and queries use besides handlers ------------------------------------

    async def load(self, instance_ids: Sequence[str]) -> Mapping[str, InstanceSnapshot]:
        """Committed snapshots of ``instance_ids`` (no lease)."""
        return await self.storage.load(instance_ids)

    async def list_instances(
        self, prefix: str, *, after: str | None = None, limit: int | None = None
    ) -> Sequence[str]:
        """Instance ids starting with ``prefix``, in id order (``Storage.list_instances``)."""
        return await self.storage.list_instances(prefix, after=after, limit=limit)

    async def scan_index(
        self,
        indexes: Sequence[str],
        *,
        limit: int,
        after: tuple[str, str] | None = None,
        until: str | None = None,
        descending: bool = False,
    ) -> Sequence[IndexHit]:
        """Index entries in ``(key, instance_id)`` order (``Storage.scan_index``)."""
        return await self.storage.scan_index(
            indexes, limit=limit, after=after, until=until, descending=descending
        )

    async def count_index(self, indexes: Sequence[str]) -> Mapping[str, int]:
        """How many entries each index holds (``Storage.count_index``)."""
        return await self.storage.count_index(indexes)

    async def ensure_indexes(self, names: Sequence[str]) -> None:
        """Make sure the index entries of the registered jobs ``names`` are complete
        (building those a store from before indexes lacks, ``_indexes``)."""
        await self.indexes.ensure(names)

    async def wait_for_change(self, timeout: float) -> None:
        """Until something was committed (in this process or, where the storage can tell,
        another) or ``timeout`` real seconds passed."""
        await self.storage.wait_for_change(timeout)

    async def next_alarm_at(self) -> datetime | None:
        """The earliest alarm of the storage (held or not)."""
        return await self.storage.next_alarm_at()

    async def read_feed(self, *, after: int, limit: int) -> Sequence[FeedEntry]:
        """Feed entries past ``after`` (what every process committed; ``Storage.read_feed``)."""
        return await self.storage.read_feed(after=after, limit=limit)

    async def feed_head(self) -> int:
        """The sequence number of the newest feed entry (``Storage.feed_head``)."""
        return await self.storage.feed_head()

    async def extend(self, lease: Lease, *, now: datetime | None = None) -> Lease:
        """Renew ``lease`` for the engine's TTL from ``now`` (default: the clock's now)."""
        at = self.clock.now() if now is None else now
        return await self.storage.extend(lease, now=at, ttl=self.lease_ttl)

    def publish(self, events: Sequence[Event]) -> None:
        """Deliver ``events`` to listeners and trackers (never failing the caller)."""
        self.bus.publish(events)

    def subscribe(self, event_type: str, listener: Listener) -> Callable[[], None]:
        """Call ``listener`` with every event of ``event_type``; returns the unsubscribe."""
        return self.bus.on(event_type, listener)

    # -- alarms --------------------------------------------------------------------------

    async def claim_due(self, *, limit: int) -> Sequence[Claimed]:
        """``Storage.claim_due`` at the clock's now, once kept leases of due alarms are released."""
        now = self.clock.now()
        await self.kept.release_due(now)
        return await self.storage.claim_due(
            now=now, owner=self.owner, ttl=self.lease_ttl, limit=limit
        )

    async def close(self) -> None:
        """Release the leases kept between calls (before the storage closes)."""
        await self.kept.close()

    async def fire(self, claimed: Claimed) -> bool:
        """Run the alarm handler of a claimed instance. False if it was skipped.

        Skipped (lease released, alarm left for a later claim) when a handler of the same
        instance is already running in this process. An alarm of an instance no registered
        job owns is pushed back by a minute and reported.
        """
        iid = claimed.lease.instance_id
        if not await self.locks.try_hold(iid):
            await self.release_quietly([claimed.lease])
            return False
        try:
            found = self.registry.for_instance(iid)
            if found is None:
                _LOG.error("alarm of %r: no registered job owns this instance", iid)
                later = self.clock.now() + timedelta(minutes=1)
                await self._commit_quietly(
                    [claimed.lease], [InstanceWrite(instance_id=iid, alarm=later)]
                )
                return True
            ref, definition = found
            leases = [claimed.lease]
            hooks = HandlerHooks(self, leases)
            tx = self.new_tx(ref, claimed.snapshot, hooks)
            due_at = claimed.due_at

            on_alarm = (
                definition.on_meta_alarm if ref.job_type == JOB_META_TYPE else definition.on_alarm
            )

            def handler(txs: Sequence[InstanceTx]) -> Effect[None, Any]:
                return on_alarm(txs[0], due_at)

            try:
                outcome = await self._run_and_settle(
                    ref, leases, [tx], handler, definition.log_level, hooks=hooks
                )
                if outcome.is_defect:
                    raise outcome.error
            except Exception:  # a defect escaped the job's alarm handler: a bug, not user code
                _LOG.exception("alarm handler of %r failed; retrying in a minute", iid)
                await self._push_back(iid)
                return True
            if not outcome.is_ok:
                _LOG.error("alarm of %r could not be committed; it will fire again", iid)
            return True
        finally:
            self.locks.release(iid)

    async def _push_back(self, instance_id: str) -> None:
        try:
            acquired = await self.acquire([instance_id])
        except StorageError:
            return
        later = self.clock.now() + timedelta(minutes=1)
        await self._commit_quietly(
            acquired.leases, [InstanceWrite(instance_id=instance_id, alarm=later)]
        )

    # -- internals -----------------------------------------------------------------------

    def new_tx(
        self, ref: InstanceRef, snapshot: InstanceSnapshot, hooks: HandlerHooks | None = None
    ) -> InstanceTx:
        """A buffered view of ``ref`` over ``snapshot`` (reading the engine's clock), with the
        indexer of the job that owns it (its index entries commit with its records)."""
        return InstanceTx(ref, snapshot, self.clock.now, hooks, self.registry.indexer_for(ref))

    async def try_acquire(self, ids: Sequence[str]) -> Acquired | None:
        """Lease ``ids`` (all or none) without waiting; ``None`` when one of them is held."""
        await self.kept.drop(ids)
        return await self.storage.acquire(
            ids, owner=self.owner, now=self.clock.now(), ttl=self.lease_ttl
        )

    async def acquire(self, ids: Sequence[str]) -> Acquired:
        """Lease ``ids``, waiting (bounded) while another process holds one of them."""
        delay = 0.002
        limit = max(self.lease_ttl.total_seconds() * 1.5, 1.0)
        # Bounded in real (loop) time: wake-ups by unrelated changes must not use it up.
        loop = asyncio.get_running_loop()
        started = loop.time()
        while True:
            await self.kept.drop(ids)  # ours, kept since a call: released, not waited for
            acquired = await self.storage.acquire(
                ids, owner=self.owner, now=self.clock.now(), ttl=self.lease_ttl
            )
            if acquired is not None:
                return acquired
            waited = loop.time() - started
            if waited >= limit:
                raise StorageError(
                    operation="acquire",
                    cause=f"{', '.join(ids)} stayed leased by another worker for {waited:.1f} s",
                )
            await self.storage.wait_for_change(min(delay, limit - waited))
            delay = min(delay * 2, 0.25)

    async def _run_and_settle(
        self,
        ref: InstanceRef,
        leases: list[Lease],
        txs: Sequence[InstanceTx],
        handler: Callable[[Sequence[InstanceTx]], Effect[R, Err]],
        log_level: int | None,
        *,
        hooks: HandlerHooks | None = None,
        keep: bool = False,
    ) -> Exit[R, Err | StorageError]:
        """Run the handler, then commit (success) or release (failure) — see the module doc.

        ``keep``: a client call on one instance; its lease may be kept after the commit
        (``KeptLeases.may_keep``) instead of released.
        """
        annotations = {
            "job_type": ref.job_type,
            "job_name": ref.job_name,
            "instance_id": ref.instance_id,
        }
        renewal = self.renewals.start(leases, None if hooks is None else hooks.notify_renewed)
        try:
            with _clock.ClockScope(self.clock), _log.annotate(annotations, log_level):
                try:
                    effect = handler(txs)
                except Exception as exc:  # building the effect failed: a defect
                    exit_: Exit[R, Err | StorageError] = Exit.die(exc)
                else:
                    exit_ = await run_exit(effect)
        finally:
            renewal.stop()
        events: list[Event] = [event for tx in txs for event in tx.events]
        # A last checkpoint released the leases (it was fenced: it proved them current).
        released = hooks is not None and hooks.released
        try:
            if exit_.is_ok:
                writes = [w for tx in txs if (w := tx.to_write()) is not None]
                current = renewal.leases
                if released and not writes:
                    return exit_
                # Even with nothing left to write (a workflow checkpointed everything) the
                # commit checks the fence: a handler whose lease was taken over must not
                # report success. Backends make a lease-only commit cheap (no fsync). (Writes
                # after a releasing checkpoint are refused here: those leases are gone.)
                kept = self._snapshot_to_keep(txs[0], current) if keep else None
                unfed = hooks.unfed if hooks is not None else []
                feed = self.feed_of([*unfed, *events]) if unfed or events else ()
                try:
                    await self.storage.commit(current, writes, release=kept is None, feed=feed)
                    if kept is not None:
                        self.kept.keep(current[0], kept)
                except LeaseLostError as exc:
                    await self.release_quietly(current)  # the leases that were not lost
                    return Exit.fail(StorageError(operation="commit", cause=exc))
                except StorageError as exc:
                    await self.release_quietly(current)
                    return Exit.fail(exc)
            elif not released:
                await self.release_quietly(renewal.leases)
        finally:
            self.bus.publish(events)
        return exit_

    def feed_of(self, events: Sequence[Event]) -> Sequence[bytes]:
        """The feed entries of ``events`` for a commit (none when the feed is off)."""
        if not self.feed or not events:
            return ()
        return feed_entries(events)

    def _snapshot_to_keep(self, tx: InstanceTx, leases: Sequence[Lease]) -> InstanceSnapshot | None:
        """What a one-instance call will have committed, if its lease may be kept after it.

        ``None``: release the lease with the commit (``KeptLeases.may_keep`` said no).
        """
        if len(leases) != 1 or not self.kept.enabled:
            return None
        records = tx.records()
        alarm_at = tx.alarm_at
        exists = bool(records) or alarm_at is not None  # ``tx.exists``, records read once
        if not self.kept.may_keep(leases[0], self.clock.now(), exists=exists, alarm_at=alarm_at):
            return None
        return InstanceSnapshot(instance_id=tx.instance_id, records=records, alarm_at=alarm_at)

    async def release_quietly(self, leases: Sequence[Lease]) -> None:
        """Release ``leases``; a failure is logged (they expire), never raised."""
        try:
            await self.storage.release(leases)
        except StorageError:
            _LOG.warning("could not release %d lease(s); they will expire", len(leases))

    async def _commit_quietly(
        self, leases: Sequence[Lease], writes: Sequence[InstanceWrite]
    ) -> None:
        try:
            await self.storage.commit(leases, writes, release=True)
        except (StorageError, LeaseLostError):
            _LOG.warning("could not commit alarm change for %s", [w.instance_id for w in writes])
