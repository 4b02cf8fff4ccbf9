"""`HandlerHooks`: what a long handler (a workflow run) gets beyond one final commit.

The engine gives every handler's ``InstanceTx`` these hooks (``TxHooks`` in
``jobs/_instance``): checkpoints — commits made *during* the handler under its leases,
fenced by their generation, optionally guarded (``unless_present``) or releasing the leases
(the handler's last) — a commit together with another instance leased for a moment
(``checkpoint_with``), or with several leased only if none is held (``try_commit_with``),
lease-free reads of other instances (``peek``, ``peek_many``) and of index entries
(``scan_index``), the current lease of an instance (``lease_of``) and a listener for lease
renewals (``on_renewed``). Each checkpoint commit carries its events as feed entries
(``HookHost.feed_of``).

The hooks use the engine only through the small ``HookHost`` protocol below.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Protocol, TypeVar

from durable_effect._events import Event
from durable_effect._runtime._registry import Registry
from durable_effect.jobs._instance import InstanceRef, InstanceTx
from durable_effect.storage._port import Acquired, IndexHit, InstanceSnapshot, Lease, Storage

__all__ = ["HandlerHooks", "HookHost"]

R = TypeVar("R")

_LOG = logging.getLogger("durable_effect")


class HookHost(Protocol):
    """What the hooks need of the engine."""

    storage: Storage
    #: Whether commits append their events to the storage feed.
    feed: bool

    def feed_of(self, events: Sequence[Event]) -> Sequence[bytes]:
        """The feed entries of ``events`` for a commit (none when the feed is off)."""
        ...

    def publish(self, events: Sequence[Event]) -> None:
        """Deliver events to listeners and trackers."""
        ...

    async def acquire(self, ids: Sequence[str]) -> Acquired:
        """Lease ``ids`` (bounded wait; ``StorageError`` when they stay held)."""
        ...

    @property
    def registry(self) -> Registry:
        """The registered jobs."""
        ...

    async def try_acquire(self, ids: Sequence[str]) -> Acquired | None:
        """Lease ``ids`` without waiting (``None`` when one of them is held)."""
        ...

    def new_tx(self, ref: InstanceRef, snapshot: InstanceSnapshot) -> InstanceTx:
        """A buffered view of ``ref`` over ``snapshot`` (no hooks of its own)."""
        ...

    async def release_quietly(self, leases: Sequence[Lease]) -> None:
        """Release ``leases``; a failure is logged (they expire), never raised."""
        ...


class HandlerHooks:
    """``TxHooks`` for one handler: checkpoints under the handler's (renewed) leases.

    ``leases`` is the same list the renewal updates in place, so checkpoints always use
    the current generation. ``released``: a checkpoint released them (the handler's last).
    ``unfed``: events published by a checkpoint that had nothing to commit; they go into the
    feed with the next commit.
    """

    def __init__(self, host: HookHost, leases: list[Lease]) -> None:
        self._host = host
        self._leases = leases
        self._renewed: list[Callable[[Lease], Event | None]] = []
        self.released = False
        self.unfed: list[Event] = []

    def _feed(self, events: Sequence[Event]) -> Sequence[bytes]:
        """The feed of a checkpoint commit: the events not fed yet, then ``events``."""
        if self.unfed:
            events = [*self.unfed, *events]
            self.unfed = []
        return self._host.feed_of(events)

    def _publish(self, tx: InstanceTx) -> None:
        """Deliver the events buffered so far (a checkpoint made them true)."""
        events = list(tx.events)
        tx.events.clear()
        self._host.publish(events)

    async def checkpoint(
        self,
        tx: InstanceTx,
        *,
        unless_present: Sequence[tuple[str, str]] = (),
        release: bool = False,
    ) -> None:
        write = tx.to_write()
        if write is not None or unless_present or release:
            writes = [] if write is None else [write]
            unfed = self.unfed
            try:
                await self._host.storage.commit(
                    self._leases,
                    writes,
                    release=release,
                    unless_present=unless_present,
                    feed=self._feed(tx.events),
                )
            except BaseException:
                self.unfed = unfed  # not committed: they go with a later commit
                raise
            tx.rebase()
            if release:
                self.released = True
        elif self._host.feed:
            self.unfed.extend(tx.events)
        self._publish(tx)

    def lease_of(self, instance_id: str) -> Lease | None:
        for lease in self._leases:
            if lease.instance_id == instance_id:
                return lease
        return None

    def on_renewed(self, listener: Callable[[Lease], Event | None]) -> None:
        self._renewed.append(listener)

    def notify_renewed(self, leases: Sequence[Lease]) -> None:
        """Tell the renewal listeners about ``leases``; publish the events they return."""
        events: list[Event] = []
        for lease in leases:
            for listener in self._renewed:
                try:
                    event = listener(lease)
                except Exception:
                    _LOG.exception("lease renewal listener failed")
                    continue
                if event is not None:
                    events.append(event)
        self._host.publish(events)

    async def checkpoint_with(
        self, tx: InstanceTx, other: InstanceRef, mutate: Callable[[InstanceTx], R]
    ) -> R:
        # No wait for ``other``'s local lock while holding our own: two handlers that
        # checkpoint into each other would deadlock. The lease wait is bounded instead.
        acquired = await self._host.acquire([other.instance_id])
        return await self._commit_with(tx, [other], acquired, lambda txs: mutate(txs[0]))

    def registered(self) -> Sequence[tuple[str, object]]:
        return list(self._host.registry)

    async def checkpoint_with_all(
        self,
        tx: InstanceTx,
        others: Sequence[InstanceRef],
        mutate: Callable[[Sequence[InstanceTx]], R],
    ) -> R:
        acquired = await self._host.acquire([ref.instance_id for ref in others])
        return await self._commit_with(tx, others, acquired, mutate)

    async def try_commit_with(
        self,
        tx: InstanceTx,
        others: Sequence[InstanceRef],
        mutate: Callable[[Sequence[InstanceTx]], R],
    ) -> R | None:
        acquired = await self._host.try_acquire([ref.instance_id for ref in others])
        if acquired is None:
            return None
        return await self._commit_with(tx, others, acquired, mutate)

    async def _commit_with(
        self,
        tx: InstanceTx,
        others: Sequence[InstanceRef],
        acquired: Acquired,
        mutate: Callable[[Sequence[InstanceTx]], R],
    ) -> R:
        """Apply ``mutate`` to the leased ``others``, commit them with ``tx``'s buffered
        writes (keeping the handler's leases) and the feed of every event, release them,
        publish what they emitted."""
        host = self._host
        other_txs = [host.new_tx(ref, acquired.snapshots[ref.instance_id]) for ref in others]
        try:
            result = mutate(other_txs)
        except BaseException:
            await host.release_quietly(acquired.leases)
            raise
        writes = [w for t in (tx, *other_txs) if (w := t.to_write()) is not None]
        unfed = self.unfed
        try:
            both = [*self._leases, *acquired.leases]
            feed = self._feed([*tx.events, *(e for t in other_txs for e in t.events)])
            await host.storage.commit(both, writes, release=False, feed=feed)
        except BaseException:
            self.unfed = unfed
            await host.release_quietly(acquired.leases)
            raise
        await host.release_quietly(acquired.leases)
        tx.rebase()
        self._publish(tx)
        host.publish([event for t in other_txs for event in t.events])
        return result

    async def peek(self, instance_id: str) -> InstanceSnapshot:
        snapshots = await self._host.storage.load([instance_id])
        return snapshots[instance_id]

    async def peek_many(self, instance_ids: Sequence[str]) -> Mapping[str, InstanceSnapshot]:
        return await self._host.storage.load(instance_ids)

    async def scan_index(
        self,
        indexes: Sequence[str],
        *,
        limit: int,
        after: tuple[str, str] | None = None,
        until: str | None = None,
    ) -> Sequence[IndexHit]:
        return await self._host.storage.scan_index(indexes, limit=limit, after=after, until=until)
