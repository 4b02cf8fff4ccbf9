"""Kept leases: an engine holding on to a lease for a moment after a client call.

On a backend whose round trip costs more than its work (PostgreSQL: ~0.1 ms on loopback,
several on a network), a client call is two round trips — ``acquire`` (lease and read) and
``commit`` — of which the first is pure overhead when the same process calls the same
instance again straight away. ``Storage.lease_linger`` seconds > 0 let the engine commit
such a call without releasing its lease and keep the lease with the committed snapshot: the
next call on that instance within the linger reuses both, one round trip instead of two.

Why the kept snapshot is the committed state: while a lease is live nobody else can commit
to its instance (commits are fenced) and ``claim_due`` grants no lease over it, so the only
writer is the holder; and a lease is reused only while at least half its TTL remains (by
the runtime clock), so it cannot have expired meanwhile.

What keeping costs others, and how it is bounded:

* another process's call on a kept instance finds it held: its ``acquire`` signals that
  (``Storage.add_wanted_listener``; on PostgreSQL a ``NOTIFY``) and the keeper releases the
  lease at once if it is idle (if a call is using it, the waiter's next attempt, a few
  milliseconds later, signals again and finds it idle); without the signal the wait is at
  most ``lease_linger`` after the instance's last call, when the sweep releases it (a
  release notifies waiters);
* an alarm is never delayed by it: a call whose instance's alarm falls due within the
  linger is not kept, a kept lease whose alarm fell due is not reused, and
  ``release_due`` lets the engine release kept leases of due alarms before every claim;
* any other use of the instance in this engine (a multi-instance call, a checkpoint into
  it, a cancel) first ``drop``s its kept lease.

The engine holds the instance's in-process lock while it takes, uses and puts back a kept
lease; this module only keeps the table and the sweep timer (event-loop time).
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable, Coroutine, Sequence
from datetime import datetime, timedelta

from durable_effect.storage._port import InstanceSnapshot, Lease

__all__ = ["KeptLeases"]


class _Kept:
    __slots__ = ("idle_since", "lease", "snapshot")

    def __init__(self, lease: Lease, snapshot: InstanceSnapshot, idle_since: float) -> None:
        self.lease = lease
        self.snapshot = snapshot
        self.idle_since = idle_since


class KeptLeases:
    """The leases one engine keeps between client calls, released after ``linger`` idle.

    ``release`` is the engine's quiet release (it never raises). Every method is called
    from the engine's event loop.
    """

    def __init__(
        self,
        linger: float,
        lease_ttl: timedelta,
        release: Callable[[Sequence[Lease]], Coroutine[None, None, None]],
    ) -> None:
        self.linger = linger
        self._min_left = lease_ttl / 2
        self._linger_delta = timedelta(seconds=linger)
        self._release = release
        self._kept: dict[str, _Kept] = {}  # insertion order: the oldest idle first
        self._timer: asyncio.TimerHandle | None = None
        self._releasing: set[asyncio.Task[None]] = set()

    @property
    def enabled(self) -> bool:
        return self.linger > 0

    @property
    def holding(self) -> bool:
        """Whether any lease is kept right now."""
        return bool(self._kept)

    def may_keep(
        self, lease: Lease, now: datetime, *, exists: bool, alarm_at: datetime | None
    ) -> bool:
        """Whether a call that leaves its instance so may keep ``lease`` after committing."""
        return (
            self.linger > 0
            and exists
            and lease.expires_at - now > self._min_left
            and (alarm_at is None or alarm_at > now + self._linger_delta)
        )

    def keep(self, lease: Lease, snapshot: InstanceSnapshot) -> None:
        """Hold ``lease`` (committed without release; ``snapshot`` is what it committed)."""
        loop = asyncio.get_running_loop()
        self._kept[lease.instance_id] = _Kept(lease, snapshot, loop.time())
        if self._timer is None:
            self._timer = loop.call_at(loop.time() + self.linger, self._sweep)

    async def take(self, instance_id: str, now: datetime) -> tuple[Lease, InstanceSnapshot] | None:
        """The kept lease and snapshot of ``instance_id`` if still good for a call (removed)."""
        kept = self._kept.pop(instance_id, None)
        if kept is None:
            return None
        alarm_at = kept.snapshot.alarm_at
        if kept.lease.expires_at - now > self._min_left and (alarm_at is None or alarm_at > now):
            return kept.lease, kept.snapshot
        await self._release([kept.lease])  # too close to expiry to trust for a whole call
        return None

    async def drop(self, instance_ids: Sequence[str]) -> None:
        """Release the kept leases of ``instance_ids`` (the engine is about to acquire them)."""
        if not self._kept:
            return
        leases = [k.lease for i in instance_ids if (k := self._kept.pop(i, None)) is not None]
        if leases:
            await self._release(leases)

    async def release_due(self, now: datetime) -> None:
        """Release the kept leases of instances whose alarm is due at ``now`` (before a claim)."""
        if not self._kept:
            return
        due = [
            i
            for i, k in self._kept.items()
            if k.snapshot.alarm_at is not None and k.snapshot.alarm_at <= now
        ]
        await self.drop(due)

    async def close(self) -> None:
        """Release every kept lease and wait for the sweep's releases in flight."""
        if self._timer is not None:
            self._timer.cancel()
            self._timer = None
        await self.drop(list(self._kept))
        if self._releasing:
            await asyncio.gather(*self._releasing, return_exceptions=True)

    def wanted(self, instance_id: str) -> None:
        """Somebody's ``acquire`` found ``instance_id`` held: release it if we keep it idle."""
        kept = self._kept.pop(instance_id, None)
        if kept is not None:
            self._release_soon(asyncio.get_running_loop(), [kept.lease])

    def _release_soon(self, loop: asyncio.AbstractEventLoop, leases: list[Lease]) -> None:
        task = loop.create_task(self._release(leases))
        self._releasing.add(task)
        task.add_done_callback(self._releasing.discard)

    def _sweep(self) -> None:
        """Release what has been idle for ``linger``; re-arm for the oldest that remains."""
        self._timer = None
        loop = asyncio.get_running_loop()
        cutoff = loop.time() - self.linger
        idle: list[Lease] = []
        while self._kept:
            instance_id, kept = next(iter(self._kept.items()))
            if kept.idle_since > cutoff:
                self._timer = loop.call_at(kept.idle_since + self.linger, self._sweep)
                break
            del self._kept[instance_id]
            idle.append(kept.lease)
        if idle:
            self._release_soon(loop, idle)
