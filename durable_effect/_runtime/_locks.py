"""In-process exclusion per instance: handlers of one instance never overlap in a process.

Across processes the storage lease does the same job; this lock keeps a process from
fighting itself for leases (a client call and an alarm of the same instance).
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Sequence
from contextlib import asynccontextmanager

__all__ = ["LocalLocks"]


class _Entry:
    __slots__ = ("lock", "users")

    def __init__(self) -> None:
        self.lock = asyncio.Lock()
        self.users = 0


class LocalLocks:
    """A lock per instance id, created on demand and dropped when nobody uses it."""

    def __init__(self) -> None:
        self._entries: dict[str, _Entry] = {}

    def busy(self, instance_id: str) -> bool:
        """Whether some handler in this process holds or waits for ``instance_id``."""
        entry = self._entries.get(instance_id)
        return entry is not None and entry.users > 0

    @asynccontextmanager
    async def hold(self, instance_ids: Sequence[str]) -> AsyncIterator[None]:
        """Hold the locks of ``instance_ids`` (taken in sorted order: no deadlock)."""
        ordered = sorted(set(instance_ids))
        entries = []
        for iid in ordered:
            entry = self._entries.get(iid)
            if entry is None:
                entry = self._entries[iid] = _Entry()
            entry.users += 1
            entries.append((iid, entry))
        taken: list[_Entry] = []
        try:
            for _, entry in entries:
                await entry.lock.acquire()
                taken.append(entry)
            yield
        finally:
            for entry in taken:
                entry.lock.release()
            for iid, entry in entries:
                entry.users -= 1
                if entry.users == 0:
                    del self._entries[iid]

    async def try_hold(self, instance_id: str) -> bool:
        """Take ``instance_id``'s lock if nobody holds or waits for it; never waits.

        Release with ``release``. Checking and taking happen without suspending: a fresh,
        uncontended ``asyncio.Lock`` is acquired at once.
        """
        if self.busy(instance_id):
            return False
        entry = self._entries[instance_id] = _Entry()
        entry.users = 1
        await entry.lock.acquire()
        return True

    def release(self, instance_id: str) -> None:
        """Release a lock taken with ``try_hold``."""
        entry = self._entries[instance_id]
        entry.lock.release()
        entry.users -= 1
        if entry.users == 0:
            del self._entries[instance_id]
