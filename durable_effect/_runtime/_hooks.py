"""`HandlerHooks`: what a long handler (a workflow run) gets beyond one final commit.

The engine gives every handler's ``InstanceTx`` these hooks (``TxHooks`` in
``jobs/_instance``): checkpoints — commits made *during* the handler under its leases,
fenced by their generation, optionally guarded (``unless_present``) or releasing the leases
(the handler's last) — a commit together with another instance leased for a moment
(``checkpoint_with``), a lease-free read of another instance (``peek``), the current lease
of an instance (``lease_of``) and a listener for lease renewals (``on_renewed``). Each
checkpoint commit carries its events as feed entries (``HookHost.feed_of``).

The hooks use the engine only through the small ``HookHost`` protocol below.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence
from typing import Protocol, TypeVar

from durable_effect._events import Event
from durable_effect.jobs._instance import InstanceRef, InstanceTx
from durable_effect.storage._port import Acquired, InstanceSnapshot, Lease, Storage

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
        host = self._host
        # No wait for ``other``'s local lock while holding our own: two handlers that
        # checkpoint into each other would deadlock. The lease wait is bounded instead.
        acquired = await host.acquire([other.instance_id])
        other_tx = host.new_tx(other, acquired.snapshots[other.instance_id])
        try:
            result = mutate(other_tx)
        except BaseException:
            await host.release_quietly(acquired.leases)
            raise
        writes = [w for w in (tx.to_write(), other_tx.to_write()) if w is not None]
        unfed = self.unfed
        try:
            both = [*self._leases, *acquired.leases]
            feed = self._feed([*tx.events, *other_tx.events])
            await host.storage.commit(both, writes, release=False, feed=feed)
        except BaseException:
            self.unfed = unfed
            await host.release_quietly(acquired.leases)
            raise
        await host.release_quietly(acquired.leases)
        tx.rebase()
        self._publish(tx)
        host.publish(other_tx.events)
        return result

    async def peek(self, instance_id: str) -> InstanceSnapshot:
        snapshots = await self._host.storage.load([instance_id])
        return snapshots[instance_id]
