"""Shared pieces of the workflow tests: schemas, counters, runtimes on memory, SQLite or PG."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar, Literal, TypeVar

import attrs
import msgspec

from durable_effect import Effect, StorageError, TaggedError
from durable_effect._events import Event
from durable_effect.jobs._base import JobDefinition
from durable_effect.storage import (
    Acquired,
    Claimed,
    FeedEntry,
    IndexHit,
    InstanceSnapshot,
    InstanceWrite,
    Lease,
    MemoryStorage,
    Storage,
)
from durable_effect.testing._runtime import TestRuntime
from tests.jobs.conftest import POSTGRES, storage_for

EventT = TypeVar("EventT", bound=Event)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STORAGES = ("memory", "sqlite", POSTGRES)


def storage_url(kind: str, tmp_path: Path) -> str | Storage:
    """``memory://``, a fresh SQLite file under ``tmp_path``, or a PostgreSQL schema of its own."""
    return storage_for(kind, tmp_path, "wf.db")


def shared_storage(kind: str, tmp_path: Path) -> Storage | str:
    """A storage two runtimes can share: one ``MemoryStorage`` or ``PostgresStorage`` object,
    or one SQLite file.

    The runtimes' tests take a crashed or stalled worker's lease over by moving the
    ``TestClock`` past its expiry, so on PostgreSQL leases expire by the callers' clock here
    (``lease_clock="caller"``; the default, the server's clock, is tested in
    ``tests/storage/test_postgres_clock.py``).
    """
    if kind == "memory":
        return MemoryStorage()
    return storage_for(kind, tmp_path, "shared.db", lease_clock="caller")


def runtime(
    kind: str, tmp_path: Path, *, lease_ttl: timedelta | None = None, **defs: JobDefinition
) -> TestRuntime:
    """A ``TestRuntime`` over ``defs`` on memory, SQLite or PostgreSQL storage."""
    return TestRuntime(dict(defs), storage=storage_url(kind, tmp_path), lease_ttl=lease_ttl)


class Order(msgspec.Struct):
    """A workflow input."""

    order_id: str
    qty: int = 1


class Receipt(msgspec.Struct):
    """A step result (a module-level Struct: replayed as itself)."""

    order_id: str
    total: int


@attrs.frozen
class Money:
    """An attrs step result."""

    cents: int
    currency: str


@dataclass(frozen=True)
class Point:
    """A dataclass step result."""

    x: int
    y: int


@attrs.frozen(kw_only=True, eq=False)
class Boom(TaggedError):
    """A typed failure of a step."""

    tag: ClassVar[Literal["Boom"]] = "Boom"
    code: int


class Calls:
    """Counts how many times each named side effect ran."""

    def __init__(self) -> None:
        self.log: list[str] = []

    def count(self, name: str) -> int:
        return self.log.count(name)

    def effect(self, name: str, value: object) -> Effect[object]:
        """An effect that records ``name`` and gives ``value``."""

        def run() -> object:
            self.log.append(name)
            return value

        return Effect.sync(run)


async def snapshot(rt: TestRuntime, instance_id: str) -> InstanceSnapshot:
    """The committed records and alarm of an instance."""
    snapshots = await rt.jobs.storage.load([instance_id])
    return snapshots[instance_id]


async def plant(rt: TestRuntime, instance_id: str, puts: Mapping[str, bytes]) -> None:
    """Write records into an instance directly (as someone with access to the store could)."""
    storage = rt.jobs.storage
    got = await storage.acquire(
        [instance_id], owner="planter", now=rt.clock.now(), ttl=timedelta(seconds=5)
    )
    assert got is not None, f"{instance_id} is held"
    await storage.commit(got.leases, [InstanceWrite(instance_id=instance_id, puts=dict(puts))])


def of_type(events: Sequence[Event], cls: type[EventT]) -> list[EventT]:
    """The events of one class, in order."""
    return [e for e in events if isinstance(e, cls)]


def types_of(events: Sequence[Event], run_id: str | None = None) -> list[str]:
    """The event types, in order (of one run when ``run_id`` is given)."""
    return [e.type for e in events if run_id is None or getattr(e, "run_id", None) == run_id]


class CrashableStorage(Storage):
    """A storage a test can "kill": afterwards every call fails, as if the process died.

    Used to simulate a worker crashing mid-run: it can neither commit nor renew nor release
    anything, so its leases simply expire.
    """

    scheme = "crashable"

    def __init__(self, inner: Storage) -> None:
        self.inner = inner
        self.dead = False

    def kill(self) -> None:
        """From now on every call fails with ``StorageError``."""
        self.dead = True

    def _check(self, operation: str) -> None:
        if self.dead:
            raise StorageError(operation=operation, cause="the process crashed")

    async def open(self) -> None:
        self._check("open")
        await self.inner.open()

    async def close(self) -> None:
        if not self.dead:
            await self.inner.close()

    async def acquire(
        self, instance_ids: Sequence[str], *, owner: str, now: datetime, ttl: timedelta
    ) -> Acquired | None:
        self._check("acquire")
        return await self.inner.acquire(instance_ids, owner=owner, now=now, ttl=ttl)

    async def extend(self, lease: Lease, *, now: datetime, ttl: timedelta) -> Lease:
        self._check("extend")
        return await self.inner.extend(lease, now=now, ttl=ttl)

    async def release(self, leases: Sequence[Lease]) -> None:
        self._check("release")
        await self.inner.release(leases)

    async def load(self, instance_ids: Sequence[str]) -> Mapping[str, InstanceSnapshot]:
        self._check("load")
        return await self.inner.load(instance_ids)

    async def commit(
        self,
        leases: Sequence[Lease],
        writes: Sequence[InstanceWrite],
        *,
        release: bool = True,
        unless_present: Sequence[tuple[str, str]] = (),
        feed: Sequence[bytes] = (),
    ) -> None:
        self._check("commit")
        await self.inner.commit(
            leases, writes, release=release, unless_present=unless_present, feed=feed
        )

    async def claim_due(
        self, *, now: datetime, owner: str, ttl: timedelta, limit: int
    ) -> Sequence[Claimed]:
        self._check("claim_due")
        return await self.inner.claim_due(now=now, owner=owner, ttl=ttl, limit=limit)

    async def next_alarm_at(self) -> datetime | None:
        self._check("next_alarm_at")
        return await self.inner.next_alarm_at()

    async def wait_for_change(self, timeout: float) -> None:
        self._check("wait_for_change")
        await self.inner.wait_for_change(timeout)

    async def list_instances(
        self, prefix: str, *, after: str | None = None, limit: int | None = None
    ) -> Sequence[str]:
        self._check("list_instances")
        return await self.inner.list_instances(prefix, after=after, limit=limit)

    async def scan_index(
        self,
        indexes: Sequence[str],
        *,
        limit: int,
        after: tuple[str, str] | None = None,
        until: str | None = None,
        descending: bool = False,
    ) -> Sequence[IndexHit]:
        self._check("scan_index")
        return await self.inner.scan_index(
            indexes, limit=limit, after=after, until=until, descending=descending
        )

    async def count_index(self, indexes: Sequence[str]) -> Mapping[str, int]:
        self._check("count_index")
        return await self.inner.count_index(indexes)

    async def read_feed(self, *, after: int, limit: int) -> Sequence[FeedEntry]:
        self._check("read_feed")
        return await self.inner.read_feed(after=after, limit=limit)

    async def feed_head(self) -> int:
        self._check("feed_head")
        return await self.inner.feed_head()

    async def load_index(self, instance_ids: Sequence[str]) -> Mapping[str, Mapping[str, str]]:
        self._check("load_index")
        return await self.inner.load_index(instance_ids)
