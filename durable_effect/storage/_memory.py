"""`MemoryStorage`: the reference semantics of the `Storage` port, in plain dicts.

Meant for users' tests and as the executable reading of the port's invariants: every method
runs to completion without awaiting anything, so each call is atomic with respect to the
event loop. Data lives as long as the object (``close`` then ``open`` keeps it); nothing is
shared between two objects.

>>> import asyncio
>>> from datetime import UTC, datetime, timedelta
>>> async def demo() -> list[str]:
...     async with MemoryStorage() as storage:
...         now = datetime(2030, 1, 1, tzinfo=UTC)
...         ttl = timedelta(seconds=30)
...         got = await storage.acquire(["order:1"], owner="w1", now=now, ttl=ttl)
...         assert got is not None
...         write = InstanceWrite(instance_id="order:1", puts={"s": b"1"})
...         await storage.commit(got.leases, [write])
...         return list(await storage.list_instances("order:"))
>>> asyncio.run(demo())
['order:1']
"""

from __future__ import annotations

import asyncio
import bisect
import weakref
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from typing import Self

from durable_effect.errors import LeaseLostError, StorageError
from durable_effect.storage._checks import check_feed as _check_feed
from durable_effect.storage._checks import check_feed_read as _check_feed_read
from durable_effect.storage._checks import check_index as _check_index
from durable_effect.storage._checks import check_indexes as _check_indexes
from durable_effect.storage._checks import check_limit as _check_limit
from durable_effect.storage._checks import check_listing as _check_listing
from durable_effect.storage._checks import check_scan as _check_scan
from durable_effect.storage._checks import check_text as _check_text
from durable_effect.storage._checks import instant as _instant
from durable_effect.storage._checks import ttl_of as _ttl
from durable_effect.storage._checks import unique_ids as _unique_ids
from durable_effect.storage._checks import validate_commit as _validate_commit
from durable_effect.storage._port import (
    Acquired,
    Claimed,
    FeedEntry,
    GuardFailed,
    IndexHit,
    InstanceSnapshot,
    InstanceWrite,
    Keep,
    Lease,
    Storage,
)

__all__ = ["MemoryStorage"]


class MemoryStorage(Storage):
    """Records, alarms and leases in dicts; ``wait_for_change`` wakes on in-process changes."""

    scheme = "memory"

    def __init__(self, *, share_with: MemoryStorage | None = None) -> None:
        # The store itself; ``share_with`` makes a second object on the same store, as two
        # processes would open one database (``wait_for_change`` wakes every object).
        self._shared: _SharedStore = _SharedStore() if share_with is None else share_with._shared
        self._records = self._shared.records
        self._alarms = self._shared.alarms
        self._leases = self._shared.leases
        self._shared.objects.add(self)
        self._opened = False
        self._changed: asyncio.Event | None = None

    def __repr__(self) -> str:
        return "MemoryStorage()"

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Mark the storage usable (idempotent). Data from an earlier open is still there."""
        if not self._opened:
            self._changed = None  # an event belongs to one loop; the next open may use another
        self._opened = True

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def close(self) -> None:
        """Mark the storage unusable; the data stays in the object, leases are kept."""
        if self._opened:
            self._signal()  # wake waiters: nothing more will change here
        self._opened = False

    # -- leases ----------------------------------------------------------------------------

    async def acquire(
        self,
        instance_ids: Sequence[str],
        *,
        owner: str,
        now: datetime,
        ttl: timedelta,
    ) -> Acquired | None:
        self._check_open("acquire")
        ids = _unique_ids(instance_ids)
        _check_text(owner, "owner")
        expires_at = _instant(now) + _ttl(ttl)
        moment = _instant(now)
        if any(not self._is_free(i, moment) for i in ids):
            return None
        leases = [self._grant(i, owner, expires_at) for i in ids]
        return Acquired(leases=leases, snapshots={i: self._snapshot(i) for i in ids})

    async def extend(self, lease: Lease, *, now: datetime, ttl: timedelta) -> Lease:
        self._check_open("extend")
        expires_at = _instant(now) + _ttl(ttl)
        self._check_current(lease)
        renewed = Lease(
            instance_id=lease.instance_id,
            owner=lease.owner,
            generation=lease.generation,
            expires_at=expires_at,
        )
        self._leases[lease.instance_id] = renewed
        return renewed

    async def release(self, leases: Sequence[Lease]) -> None:
        self._check_open("release")
        released = False
        for lease in leases:
            if self._is_current(lease):
                del self._leases[lease.instance_id]
                released = True
        if released:
            self._signal()

    # -- records ---------------------------------------------------------------------------

    async def load(self, instance_ids: Sequence[str]) -> Mapping[str, InstanceSnapshot]:
        self._check_open("load")
        return {i: self._snapshot(i) for i in instance_ids}

    async def commit(
        self,
        leases: Sequence[Lease],
        writes: Sequence[InstanceWrite],
        *,
        release: bool = True,
        unless_present: Sequence[tuple[str, str]] = (),
        feed: Sequence[bytes] = (),
    ) -> None:
        self._check_open("commit")
        _validate_commit(leases, writes)
        entries = _check_feed(feed, self.feed_retain) if feed else []
        for lease in leases:
            self._check_current(lease)
        for instance_id, key in unless_present:
            if key in self._records.get(instance_id, ()):
                raise GuardFailed(instance_id, key)
        alarm_changed = False
        for write in writes:
            alarm_changed |= self._apply(write)
        if entries and leases:
            self._shared.append_feed(entries, self.feed_retain)
        if release:
            for lease in leases:
                self._leases.pop(lease.instance_id, None)
        if alarm_changed or (release and leases):
            self._signal()

    # -- alarms ----------------------------------------------------------------------------

    async def claim_due(
        self,
        *,
        now: datetime,
        owner: str,
        ttl: timedelta,
        limit: int,
    ) -> Sequence[Claimed]:
        self._check_open("claim_due")
        _check_text(owner, "owner")
        moment = _instant(now)
        expires_at = moment + _ttl(ttl)
        _check_limit(limit)
        due = sorted(
            ((at, i) for i, at in self._alarms.items() if at <= moment),
        )
        claimed: list[Claimed] = []
        for at, instance_id in due:
            if len(claimed) >= limit:
                break
            if not self._is_free(instance_id, moment):
                continue
            lease = self._grant(instance_id, owner, expires_at)
            claimed.append(Claimed(lease=lease, due_at=at, snapshot=self._snapshot(instance_id)))
        return claimed

    async def next_alarm_at(self) -> datetime | None:
        self._check_open("next_alarm_at")
        return min(self._alarms.values(), default=None)

    async def wait_for_change(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for a commit that changed an alarm or a release.

        A change that happened since the previous ``wait_for_change`` returned makes the next
        call return at once (so a change between a caller's last read and its wait is never
        missed); this may cause one spurious return, which the port allows.
        """
        self._check_open("wait_for_change")
        event = self._event()
        if not event.is_set():
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except TimeoutError:
                return
        event.clear()

    async def list_instances(
        self,
        prefix: str,
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> Sequence[str]:
        self._check_open("list_instances")
        _check_listing(prefix, after, limit)
        ids = sorted(
            i
            for i in self._records.keys() | self._alarms.keys()
            if i.startswith(prefix) and (after is None or i > after)
        )
        return ids if limit is None else ids[:limit]

    # -- indexes ---------------------------------------------------------------------------

    async def scan_index(
        self,
        indexes: Sequence[str],
        *,
        limit: int,
        after: tuple[str, str] | None = None,
        until: str | None = None,
        descending: bool = False,
    ) -> Sequence[IndexHit]:
        self._check_open("scan_index")
        names = _check_scan(indexes, limit, after, until)
        found: list[tuple[str, str, str]] = []
        for name in names:
            entries = self._shared.indexes.get(name, [])
            if descending:
                end = len(entries) if after is None else bisect.bisect_left(entries, after)
                for key, instance_id in reversed(entries[max(0, end - limit) : end]):
                    if until is not None and key < until:
                        break
                    found.append((key, instance_id, name))
            else:
                start = 0 if after is None else bisect.bisect_right(entries, after)
                for key, instance_id in entries[start : start + limit]:
                    if until is not None and key > until:
                        break
                    found.append((key, instance_id, name))
        found.sort(reverse=descending)
        out: dict[tuple[str, str], str] = {}  # a position several indexes hold comes once
        for key, instance_id, name in found:
            position = (key, instance_id)
            if position in out:
                out[position] = min(out[position], name)
            elif len(out) == limit:
                break
            else:
                out[position] = name
        return [IndexHit(index=n, key=k, instance_id=i) for (k, i), n in out.items()]

    async def load_index(self, instance_ids: Sequence[str]) -> Mapping[str, Mapping[str, str]]:
        self._check_open("load_index")
        entries = self._shared.entries
        return {i: dict(entries.get(i, {})) for i in instance_ids}

    async def count_index(self, indexes: Sequence[str]) -> Mapping[str, int]:
        self._check_open("count_index")
        return {n: len(self._shared.indexes.get(n, ())) for n in _check_indexes(indexes)}

    def _set_index(self, instance_id: str, entries: Mapping[str, str]) -> None:
        """Make ``entries`` the whole set of index entries of ``instance_id``."""
        shared = self._shared
        for name, key in shared.entries.pop(instance_id, {}).items():
            listed = shared.indexes[name]
            del listed[bisect.bisect_left(listed, (key, instance_id))]
            if not listed:
                del shared.indexes[name]
        if entries:
            shared.entries[instance_id] = dict(entries)
            for name, key in entries.items():
                bisect.insort(shared.indexes.setdefault(name, []), (key, instance_id))

    # -- feed ------------------------------------------------------------------------------

    async def read_feed(self, *, after: int, limit: int) -> Sequence[FeedEntry]:
        self._check_open("read_feed")
        _check_feed_read(after, limit)
        shared = self._shared
        feed = shared.feed
        if not feed:
            return []
        start = max(after + 1 - feed[0].seq, 0)  # seqs are contiguous here
        return feed[start : start + limit]

    async def feed_head(self) -> int:
        self._check_open("feed_head")
        return self._shared.feed_seq

    # -- internals -------------------------------------------------------------------------

    def _check_open(self, operation: str) -> None:
        if not self._opened:
            raise StorageError(operation=operation, cause="the storage is not open")

    def _is_free(self, instance_id: str, now: datetime) -> bool:
        lease = self._leases.get(instance_id)
        return lease is None or lease.expires_at <= now

    def _is_current(self, lease: Lease) -> bool:
        current = self._leases.get(lease.instance_id)
        return (
            current is not None
            and current.generation == lease.generation
            and current.owner == lease.owner
        )

    def _check_current(self, lease: Lease) -> None:
        if not self._is_current(lease):
            raise LeaseLostError(
                instance_id=lease.instance_id, owner=lease.owner, generation=lease.generation
            )

    def _grant(self, instance_id: str, owner: str, expires_at: datetime) -> Lease:
        self._shared.generation += 1
        lease = Lease(
            instance_id=instance_id,
            owner=owner,
            generation=self._shared.generation,
            expires_at=expires_at,
        )
        self._leases[instance_id] = lease
        return lease

    def _snapshot(self, instance_id: str) -> InstanceSnapshot:
        return InstanceSnapshot(
            instance_id=instance_id,
            records=dict(self._records.get(instance_id, {})),
            alarm_at=self._alarms.get(instance_id),
        )

    def _apply(self, write: InstanceWrite) -> bool:
        """Apply one write (purge, deletes, puts, alarm); whether the alarm changed."""
        instance_id = write.instance_id
        records = self._records.get(instance_id, {})
        if write.purge:
            records = {}
        for key in write.deletes:
            records.pop(key, None)
        for key, value in write.puts.items():
            records[key] = bytes(value)
        if records:
            self._records[instance_id] = records
        else:
            self._records.pop(instance_id, None)
        index = _check_index(write)
        if index is not None:
            self._set_index(instance_id, dict(index))
        elif write.purge and instance_id in self._shared.entries:
            self._set_index(instance_id, {})
        alarm = write.alarm
        if isinstance(alarm, Keep):
            return False
        if alarm is None:
            self._alarms.pop(instance_id, None)
        else:
            self._alarms[instance_id] = _instant(alarm)
        return True

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    def _signal(self) -> None:
        for other in self._shared.objects:
            if other._changed is not None:
                other._changed.set()
        self._event().set()


class _SharedStore:
    """The data of one memory store, shared by the objects opened on it."""

    def __init__(self) -> None:
        self.records: dict[str, dict[str, bytes]] = {}
        self.alarms: dict[str, datetime] = {}
        self.leases: dict[str, Lease] = {}
        #: Index entries: by instance (name -> key), and by index (sorted (key, instance)).
        self.entries: dict[str, dict[str, str]] = {}
        self.indexes: dict[str, list[tuple[str, str]]] = {}
        self.generation = 0
        self.objects: weakref.WeakSet[MemoryStorage] = weakref.WeakSet()
        self.feed: list[FeedEntry] = []
        self.feed_seq = 0

    def append_feed(self, entries: Sequence[bytes], retain: int) -> None:
        """Append ``entries`` with the next sequence numbers; keep the newest ``retain``
        (trimmed in steps of a tenth of it, so appends stay cheap on average)."""
        seq = self.feed_seq
        self.feed.extend(FeedEntry(seq=seq + n, data=data) for n, data in enumerate(entries, 1))
        self.feed_seq = seq + len(entries)
        if len(self.feed) > retain + max(retain // 10, 1):
            del self.feed[: len(self.feed) - retain]
