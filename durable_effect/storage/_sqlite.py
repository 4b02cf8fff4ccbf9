"""`SqliteStorage`: the `Storage` port on one stdlib ``sqlite3`` file in WAL mode.

This module owns the port's operations: it checks their arguments on the event loop, turns
each write into a function run inside a transaction, and reads rows back into the port's
values. The schema, its statements and the two connections live in ``_sqlite_schema``; the
write queue, group commit and where each transaction runs in ``_sqlite_batch``; ops and the
storage thread in ``_sqlite_ops``.

Group commit: writes queue while a transaction runs and then share the next one; a lone write
waits for no timer. Short transactions run inline on the event loop (a durable ``FULL`` one
only while the loop has nothing else to do); the rest, and every durable commit while the
loop is busy, run on the storage thread.

Durability: commits use the ``synchronous`` setting (``FULL`` by default: a commit that
returned survives power loss; ``NORMAL``: it survives a crash of the process, and may be lost,
never corrupted, on power loss). Lease-only transactions (``acquire``, ``extend``,
``release``, ``claim_due`` with no ``commit`` in the batch) never fsync: lease rows lost in an
OS crash belonged to processes that died with it, a later durable commit's fsync of the WAL
also makes every earlier frame durable, and the database file is only ever checkpointed with
syncing on, so durable commits are never put at risk. See ``docs/storage.md``.
"""

from __future__ import annotations

import asyncio
import os
import sqlite3
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Literal, Self, TypeVar

from durable_effect.errors import LeaseLostError, StorageError
from durable_effect.storage import _sqlite_schema as schema
from durable_effect.storage._checks import check_feed as _check_feed
from durable_effect.storage._checks import check_feed_read as _check_feed_read
from durable_effect.storage._checks import check_id as _check_id
from durable_effect.storage._checks import check_index as _check_index
from durable_effect.storage._checks import check_indexes as _check_indexes
from durable_effect.storage._checks import check_limit as _check_limit
from durable_effect.storage._checks import check_listing as _check_listing
from durable_effect.storage._checks import check_scan as _check_scan
from durable_effect.storage._checks import check_text as _check_text
from durable_effect.storage._checks import instant as _instant
from durable_effect.storage._checks import prefix_upper
from durable_effect.storage._checks import ttl_of as _ttl
from durable_effect.storage._checks import unique_ids as _unique_ids
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
from durable_effect.storage._sqlite_batch import GroupCommit
from durable_effect.storage._sqlite_ops import Op, Txn
from durable_effect.storage._sqlite_schema import SCHEMA_VERSION

__all__ = ["SCHEMA_VERSION", "SqliteStorage"]

T = TypeVar("T")

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_CHUNK: Final = 500  # ids per IN (...) list
_INLINE_READ: Final = 16  # a ``load`` of at most this many ids may run on the event loop
_INLINE_SCAN: Final = 1000  # a ``scan_index`` reading at most this many rows, likewise
_INLINE_FEED: Final = 200  # a ``read_feed`` of at most this many entries may run on the loop
#: Whether a record exists (a commit guard; local here to keep the guard in the commit path).
_HAS_RECORD: Final = "SELECT 1 FROM records WHERE instance_id = ? AND key = ?"
#: A lease's holder and generation, and whether a record exists: one commit's fence and its
#: one guard in one statement.
_FENCE_AND_GUARD: Final = (
    f"SELECT owner, generation, EXISTS ({_HAS_RECORD}) FROM leases WHERE instance_id = ?"
)


class SqliteStorage(Storage):
    """The `Storage` port on a SQLite file (WAL, group commit, one background thread).

    ``wait_for_change`` wakes on commits and releases made through this object; changes made
    by other processes are only seen when its ``timeout`` runs out (a polling fallback).
    The object is used from one asyncio event loop (the one that opened it). A write whose
    caller is cancelled after it was queued or started may still be applied.
    """

    scheme = "sqlite"

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        synchronous: Literal["full", "normal"] = "full",
        busy_timeout_ms: int = 5000,
    ) -> None:
        if synchronous not in ("full", "normal"):
            raise ValueError(f"synchronous must be 'full' or 'normal', got {synchronous!r}")
        if busy_timeout_ms < 0:
            raise ValueError(f"busy_timeout_ms must be >= 0, got {busy_timeout_ms}")
        if os.fspath(path) in ("", ":memory:"):
            raise ValueError("SqliteStorage needs a file (WAL); use memory:// for MemoryStorage")
        self.path: Final = os.fspath(path)
        self.synchronous: Final = synchronous
        self.busy_timeout_ms: Final = busy_timeout_ms
        self._group = GroupCommit(
            self.path,
            synchronous=synchronous,
            busy_timeout_ms=busy_timeout_ms,
            on_change=self._signal,
        )
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opened = False
        #: A change since the last ``wait_for_change`` returned, and the futures waiting.
        self._changed = False
        self._waiters: set[asyncio.Future[None]] = set()

    def __repr__(self) -> str:
        return f"SqliteStorage({self.path!r}, synchronous={self.synchronous!r})"

    @property
    def transactions_committed(self) -> int:
        """Write transactions this object committed (a group commit counts once)."""
        return self._group.transactions_committed

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, enable WAL and create or migrate the schema (idempotent).

        Safe when several processes open the same file at once: migrations run inside
        ``BEGIN IMMEDIATE`` and re-check the version there.
        """
        if self._opened:
            return
        self._loop = asyncio.get_running_loop()
        self._changed = False
        await self._group.start()
        self._opened = True

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def close(self) -> None:
        """Finish queued writes, then close the connections and stop the thread."""
        if not self._opened:
            return
        self._opened = False
        self._signal()  # wake waiters: nothing more will change here
        await self._group.stop()

    async def read_pragma(self, name: str) -> object:
        """The value of one of a few pragmas on this object's writer connection (diagnostics).

        ``name`` is one of ``journal_mode``, ``synchronous`` (``2`` FULL, ``1`` NORMAL),
        ``busy_timeout`` and ``wal_autocheckpoint``.
        """
        if name not in schema.PRAGMAS:
            raise ValueError(f"unsupported pragma {name!r}; one of {sorted(schema.PRAGMAS)}")
        self._check_open("read_pragma")

        def read(conn: sqlite3.Connection) -> object:
            row = conn.execute(f"PRAGMA {name}").fetchone()
            return None if row is None else row[0]

        return await self._group.read("read_pragma", read)

    # -- leases ----------------------------------------------------------------------------

    async def acquire(
        self,
        instance_ids: Sequence[str],
        *,
        owner: str,
        now: datetime,
        ttl: timedelta,
    ) -> Acquired | None:
        ids = _unique_ids(instance_ids)
        moment = _instant(now)
        expires_at = moment + _ttl(ttl)
        now_us, expires_us = _to_us(moment), _to_us(expires_at)
        _check_text(owner, "owner")
        if not ids:
            self._check_open("acquire")
            return Acquired(leases=[], snapshots={})

        def apply_one(txn: Txn) -> Acquired | None:
            (instance_id,) = ids
            generation = txn.next_generation()
            granted = txn.conn.execute(
                schema.TAKE_LEASE, (instance_id, owner, generation, expires_us, now_us)
            )
            if granted.rowcount != 1:
                return None  # held: the upsert's WHERE left the row as it was
            lease = Lease(
                instance_id=instance_id, owner=owner, generation=generation, expires_at=expires_at
            )
            return Acquired(
                leases=[lease], snapshots={instance_id: _snapshot(txn.conn, instance_id)}
            )

        def apply(txn: Txn) -> Acquired | None:
            conn = txn.conn
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                held = conn.execute(
                    f"SELECT 1 FROM leases WHERE instance_id IN ({marks}) AND expires_at > ?"
                    " LIMIT 1",
                    (*chunk, now_us),
                ).fetchone()
                if held is not None:
                    return None
            first = txn.next_generation(len(ids))
            conn.executemany(
                schema.PUT_LEASE, [(i, owner, first + n, expires_us) for n, i in enumerate(ids)]
            )
            leases = [
                Lease(instance_id=i, owner=owner, generation=first + n, expires_at=expires_at)
                for n, i in enumerate(ids)
            ]
            return Acquired(leases=leases, snapshots=_snapshots(conn, ids))

        fn = apply_one if len(ids) == 1 else apply
        return await self._write("acquire", fn, durable=False, signals=False, weight=len(ids))

    async def extend(self, lease: Lease, *, now: datetime, ttl: timedelta) -> Lease:
        expires_at = _instant(now) + _ttl(ttl)
        expires_us = _to_us(expires_at)

        def apply(txn: Txn) -> Lease:
            _check_current(txn.conn, lease)
            txn.conn.execute(schema.EXTEND_LEASE, (expires_us, lease.instance_id))
            return Lease(
                instance_id=lease.instance_id,
                owner=lease.owner,
                generation=lease.generation,
                expires_at=expires_at,
            )

        return await self._write("extend", apply, durable=False, signals=False)

    async def release(self, leases: Sequence[Lease]) -> None:
        if not leases:
            self._check_open("release")
            return
        rows = [(lease.instance_id, lease.owner, lease.generation) for lease in leases]

        def apply(txn: Txn) -> None:
            txn.conn.executemany(schema.DELETE_LEASE, rows)

        await self._write("release", apply, durable=False, signals=True, weight=len(rows))

    # -- records ---------------------------------------------------------------------------

    async def load(self, instance_ids: Sequence[str]) -> Mapping[str, InstanceSnapshot]:
        self._check_open("load")
        ids = list(instance_ids)

        def read(conn: sqlite3.Connection) -> Mapping[str, InstanceSnapshot]:
            if len(ids) == 1:  # one statement reads one instance consistently by itself
                return {ids[0]: _snapshot(conn, ids[0])}
            conn.execute("BEGIN")
            try:
                return _snapshots(conn, ids)
            finally:
                conn.execute("COMMIT")

        return await self._group.read("load", read, inline=len(ids) <= _INLINE_READ)

    async def commit(
        self,
        leases: Sequence[Lease],
        writes: Sequence[InstanceWrite],
        *,
        release: bool = True,
        unless_present: Sequence[tuple[str, str]] = (),
        feed: Sequence[bytes] = (),
    ) -> None:
        rows, weight, alarm_changed = _commit_rows(leases, writes)
        retain = self.feed_retain
        entries = _check_feed(feed, retain) if feed and leases else []
        weight += len(entries)
        guards = [(_check_id(i), _key(k)) for i, k in unless_present] if unless_present else []
        if not leases and not guards:
            self._check_open("commit")
            return
        single = release and len(leases) == 1 and not guards

        def apply(txn: Txn) -> tuple[str, str] | None:
            conn = txn.conn
            if len(guards) == 1 and len(leases) == 1:  # the fence and the guard in one read
                (lease,), (guard,) = leases, guards
                row = conn.execute(_FENCE_AND_GUARD, (*guard, lease.instance_id)).fetchone()
                if row is None or row[0] != lease.owner or row[1] != lease.generation:
                    raise _lost(lease)
                if row[2]:
                    return guard
            elif guards:  # fenced first, then the guards: nothing written yet either way
                for lease in leases:
                    _check_current(conn, lease)
                for guard in guards:
                    if conn.execute(_HAS_RECORD, guard).fetchone() is not None:
                        return guard
            if single:  # the fencing check and the release in one statement
                (lease,) = leases
                deleted = conn.execute(
                    schema.DELETE_LEASE, (lease.instance_id, lease.owner, lease.generation)
                )
                if deleted.rowcount != 1:
                    raise _lost(lease)
            elif not guards:
                for lease in leases:
                    _check_current(conn, lease)
            _apply_rows(conn, rows)
            if release and not single:
                conn.executemany(
                    schema.DELETE_LEASE, [(x.instance_id, x.owner, x.generation) for x in leases]
                )
            if entries:
                _append_feed(conn, entries, retain)
            return None

        found = await self._write(
            "commit", apply, durable=True, signals=alarm_changed or release, weight=weight
        )
        if found is not None:
            raise GuardFailed(*found)

    async def commit_new(
        self,
        write: InstanceWrite,
        *,
        owner: str,
        now: datetime,
        ttl: timedelta,
        feed: Sequence[bytes] = (),
    ) -> bool:
        """One transaction: the instance is checked absent and unleased, then written.

        Any lease row refuses it, expired ones too: such a row's holder would still pass
        the fence of a later commit, so only the leased path (which takes the row over with
        a new generation) may write there.
        """
        _instant(now)
        _ttl(ttl)
        _check_text(owner, "owner")
        if write.purge:
            raise ValueError("commit_new writes a new instance: it cannot purge one")
        instance_id = _check_id(write.instance_id)
        probe = Lease(instance_id=instance_id, owner=owner, generation=0, expires_at=now)
        rows, weight, alarm_changed = _commit_rows([probe], [write])
        retain = self.feed_retain
        entries = _check_feed(feed, retain) if feed else []
        weight += len(entries)

        def apply(txn: Txn) -> bool:
            conn = txn.conn
            if conn.execute(schema.IN_USE, (instance_id,) * 4).fetchone()[0]:
                return False
            _apply_rows(conn, rows, new=True)
            if entries:
                _append_feed(conn, entries, retain)
            return True

        return await self._write(
            "commit_new", apply, durable=True, signals=alarm_changed, weight=weight
        )

    # -- alarms ----------------------------------------------------------------------------

    async def claim_due(
        self,
        *,
        now: datetime,
        owner: str,
        ttl: timedelta,
        limit: int,
    ) -> Sequence[Claimed]:
        moment = _instant(now)
        expires_at = moment + _ttl(ttl)
        _check_limit(limit)
        _check_text(owner, "owner")
        if limit == 0:
            self._check_open("claim_due")
            return []
        now_us, expires_us = _to_us(moment), _to_us(expires_at)

        def apply(txn: Txn) -> Sequence[Claimed]:
            conn = txn.conn
            due: list[tuple[str, int, dict[str, bytes]]] = []
            for instance_id, at, key, value in conn.execute(schema.CLAIM, (now_us, now_us, limit)):
                if not due or due[-1][0] != instance_id:
                    due.append((instance_id, at, {}))
                if key is not None:
                    due[-1][2][key] = value
            if not due:
                return []
            first = txn.next_generation(len(due))
            conn.executemany(
                schema.PUT_LEASE,
                [(i, owner, first + n, expires_us) for n, (i, _, _) in enumerate(due)],
            )
            claimed: list[Claimed] = []
            for n, (i, at, records) in enumerate(due):
                due_at = _from_us(at)
                lease = Lease(
                    instance_id=i, owner=owner, generation=first + n, expires_at=expires_at
                )
                snapshot = InstanceSnapshot(instance_id=i, records=records, alarm_at=due_at)
                claimed.append(Claimed(lease=lease, due_at=due_at, snapshot=snapshot))
            return claimed

        return await self._write("claim_due", apply, durable=False, signals=False, weight=limit)

    async def next_alarm_at(self) -> datetime | None:
        self._check_open("next_alarm_at")

        def read(conn: sqlite3.Connection) -> datetime | None:
            row = conn.execute(schema.NEXT_ALARM).fetchone()
            return None if row is None or row[0] is None else _from_us(row[0])

        return await self._group.read("next_alarm_at", read, inline=True)

    async def wait_for_change(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for an alarm change or a release made here.

        Wakes on this object's commits that changed an alarm or released leases, and on its
        ``release`` calls. Other processes are not watched: their changes are picked up when
        the timeout runs out, so callers poll with a bounded timeout. A change since the
        previous call returned makes the next call return at once (never a lost wake-up; at
        most one spurious return, which the port allows).
        """
        loop = self._check_open("wait_for_change")
        if not self._changed:
            # A future and a timer, not ``wait_for`` over ``Event.wait``: no task per wait.
            waiter: asyncio.Future[None] = loop.create_future()
            self._waiters.add(waiter)
            timer = loop.call_later(max(timeout, 0.0), _time_out, waiter)
            try:
                await waiter
            finally:
                timer.cancel()
                self._waiters.discard(waiter)
            if not self._changed:
                return  # timed out
        self._changed = False

    async def list_instances(
        self,
        prefix: str,
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> Sequence[str]:
        self._check_open("list_instances")
        _check_listing(prefix, after, limit)
        conditions = ["instance_id >= ?"]
        params: list[object] = [prefix]
        upper = prefix_upper(prefix)
        if upper is not None:
            conditions.append("instance_id < ?")
            params.append(upper)
        if after is not None:
            conditions.append("instance_id > ?")
            params.append(after)
        where = " AND ".join(conditions)
        sql = (
            f"SELECT instance_id FROM records WHERE {where} UNION"
            f" SELECT instance_id FROM alarms WHERE {where} ORDER BY instance_id LIMIT ?"
        )
        args = (*params, *params, -1 if limit is None else limit)

        def read(conn: sqlite3.Connection) -> Sequence[str]:
            return [row[0] for row in conn.execute(sql, args).fetchall()]

        return await self._group.read("list_instances", read)

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
        if not names or limit == 0:
            return []
        sql = schema.scan_sql(
            len(names), after=after is not None, until=until is not None, descending=descending
        )
        arm: list[object] = []
        if after is not None:
            arm.extend(after)
        if until is not None:
            arm.append(until)
        arm.append(limit)
        params: list[object] = []
        for name in names:
            params.append(name)
            params.extend(arm)
        if len(names) > 1:
            params.append(limit)

        def read(conn: sqlite3.Connection) -> Sequence[IndexHit]:
            rows = conn.execute(sql, params).fetchall()
            return [IndexHit(index=n, key=k, instance_id=i) for n, k, i in rows]

        return await self._group.read("scan_index", read, inline=limit * len(names) <= _INLINE_SCAN)

    async def load_index(self, instance_ids: Sequence[str]) -> Mapping[str, Mapping[str, str]]:
        self._check_open("load_index")
        ids = list(instance_ids)

        def read(conn: sqlite3.Connection) -> Mapping[str, Mapping[str, str]]:
            found: dict[str, dict[str, str]] = {i: {} for i in ids}
            for start in range(0, len(ids), _CHUNK):
                chunk = ids[start : start + _CHUNK]
                marks = ", ".join("?" * len(chunk))
                rows = conn.execute(schema.LOAD_INDEX.format(marks=marks), chunk)
                for instance_id, name, key in rows:
                    found[instance_id][name] = key
            return found

        return await self._group.read("load_index", read, inline=len(ids) <= _INLINE_READ)

    async def count_index(self, indexes: Sequence[str]) -> Mapping[str, int]:
        self._check_open("count_index")
        names = _check_indexes(indexes)
        if not names:
            return {}
        sql = schema.COUNT_INDEX.format(marks=", ".join("?" * len(names)))

        def read(conn: sqlite3.Connection) -> Mapping[str, int]:
            found = dict(conn.execute(sql, names).fetchall())
            return {n: int(found.get(n, 0)) for n in names}

        return await self._group.read("count_index", read, inline=True)

    # -- feed ------------------------------------------------------------------------------

    async def read_feed(self, *, after: int, limit: int) -> Sequence[FeedEntry]:
        self._check_open("read_feed")
        _check_feed_read(after, limit)

        def read(conn: sqlite3.Connection) -> Sequence[FeedEntry]:
            rows = conn.execute(schema.READ_FEED, (after, limit)).fetchall()
            return [FeedEntry(seq=seq, data=data) for seq, data in rows]

        return await self._group.read("read_feed", read, inline=limit <= _INLINE_FEED)

    async def feed_head(self) -> int:
        self._check_open("feed_head")

        def read(conn: sqlite3.Connection) -> int:
            row = conn.execute(schema.FEED_HEAD).fetchone()
            return 0 if row is None or row[0] is None else int(row[0])

        return await self._group.read("feed_head", read, inline=True)

    # -- internals -------------------------------------------------------------------------

    def _check_open(self, operation: str) -> asyncio.AbstractEventLoop:
        """The loop this storage serves; ``StorageError`` unless open and used from it."""
        if not self._opened:
            raise StorageError(operation=operation, cause="the storage is not open")
        if self._group.lost is not None:
            raise StorageError(operation=operation, cause=self._group.lost)
        loop = asyncio.get_running_loop()
        if loop is not self._loop:
            raise StorageError(
                operation=operation, cause="the storage is used from another event loop"
            )
        return loop

    async def _write(
        self,
        name: str,
        apply: Callable[[Txn], T],
        *,
        durable: bool,
        signals: bool,
        weight: int = 1,
    ) -> T:
        self._check_open(name)
        op: Op[T] = Op(name, apply, durable=durable, signals=signals, weight=weight)
        return await self._group.write(op)

    def _signal(self) -> None:
        self._changed = True
        waiters, self._waiters = self._waiters, set()
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)


# -- rows <-> values ---------------------------------------------------------------------------


def _time_out(waiter: asyncio.Future[None]) -> None:
    if not waiter.done():
        waiter.set_result(None)


def _lost(lease: Lease) -> LeaseLostError:
    return LeaseLostError(
        instance_id=lease.instance_id, owner=lease.owner, generation=lease.generation
    )


def _append_feed(conn: sqlite3.Connection, entries: Sequence[bytes], retain: int) -> None:
    """Append ``entries`` (one insert per `schema.FEED_CHUNK`); every tenth of ``retain``
    appended, trim what is older than the newest ``retain`` (a bounded delete)."""
    last = 0
    for start in range(0, len(entries), schema.FEED_CHUNK):
        chunk = entries[start : start + schema.FEED_CHUNK]
        last = conn.execute(schema.append_feed(len(chunk)), chunk).lastrowid or 0
    step = max(retain // 10, 1)
    if last // step != (last - len(entries)) // step and last > retain:
        conn.execute(schema.TRIM_FEED, (last - retain, 2 * step + len(entries)))


def _apply_rows(conn: sqlite3.Connection, rows: Sequence[_WriteRows], *, new: bool = False) -> None:
    """Apply a commit's checked writes (`_commit_rows`); ``new``: to instances known to have
    nothing stored (no alarm or index entry to clear)."""
    for instance_id, purge, deletes, puts, alarm, index in rows:
        if purge:
            conn.execute(schema.PURGE_RECORDS, (instance_id,))
        if deletes:
            conn.executemany(schema.DELETE_RECORD, [(instance_id, k) for k in deletes])
        if len(puts) == 1:
            conn.execute(schema.PUT_RECORD, (instance_id, *puts[0]))
        elif puts:
            conn.executemany(schema.PUT_RECORD, [(instance_id, k, v) for k, v in puts])
        if alarm is None:
            if not new:
                conn.execute(schema.DELETE_ALARM, (instance_id,))
        elif not isinstance(alarm, Keep):
            conn.execute(schema.PUT_ALARM, (instance_id, alarm))
        if purge or index is not None:
            if not new:
                conn.execute(schema.CLEAR_INDEX, (instance_id,))
            if index:
                conn.executemany(schema.PUT_INDEX, [(instance_id, n, k) for n, k in index])


def _check_current(conn: sqlite3.Connection, lease: Lease) -> None:
    row = conn.execute(schema.SELECT_LEASE, (lease.instance_id,)).fetchone()
    if row is None or row[0] != lease.owner or row[1] != lease.generation:
        raise _lost(lease)


def _snapshot(conn: sqlite3.Connection, instance_id: str) -> InstanceSnapshot:
    """The snapshot of one instance, in one statement."""
    records: dict[str, bytes] = {}
    alarm_at: datetime | None = None
    for key, value, due_at in conn.execute(schema.SNAPSHOT, (instance_id, instance_id)):
        if key is None:
            alarm_at = _from_us(due_at)
        else:
            records[key] = value
    return InstanceSnapshot(instance_id=instance_id, records=records, alarm_at=alarm_at)


def _records(conn: sqlite3.Connection, instance_ids: Sequence[str]) -> dict[str, dict[str, bytes]]:
    """The records of ``instance_ids`` (those with none are absent), one query per 500."""
    records: dict[str, dict[str, bytes]] = {}
    for start in range(0, len(instance_ids), _CHUNK):
        chunk = instance_ids[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT instance_id, key, value FROM records WHERE instance_id IN ({marks})", chunk
        )
        for instance_id, key, value in rows:
            records.setdefault(instance_id, {})[key] = value
    return records


def _snapshots(
    conn: sqlite3.Connection, instance_ids: Sequence[str]
) -> dict[str, InstanceSnapshot]:
    """Snapshots of ``instance_ids``: their records and alarms, two queries per 500."""
    records = _records(conn, instance_ids)
    alarms: dict[str, datetime] = {}
    for start in range(0, len(instance_ids), _CHUNK):
        chunk = instance_ids[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT instance_id, due_at FROM alarms WHERE instance_id IN ({marks})", chunk
        )
        alarms.update((i, _from_us(at)) for i, at in rows)
    return {
        i: InstanceSnapshot(instance_id=i, records=records.get(i, {}), alarm_at=alarms.get(i))
        for i in instance_ids
    }


_WriteRows = tuple[
    str,
    bool,
    Sequence[str],
    Sequence[tuple[str, bytes]],
    int | Keep | None,
    Sequence[tuple[str, str]] | None,
]
_NONE: Final[tuple[Any, ...]] = ()


def _commit_rows(
    leases: Sequence[Lease], writes: Sequence[InstanceWrite]
) -> tuple[list[_WriteRows], int, bool]:
    """Check a commit's writes (``ValueError``): their statement parameters, their row count
    and whether any changes an alarm.

    Text that cannot be encoded (lone surrogates) is refused by ``sqlite3`` itself when bound,
    as a ``UnicodeEncodeError`` (a ``ValueError``), before the transaction commits.
    """
    covered = leases[0].instance_id if len(leases) == 1 else {x.instance_id for x in leases}
    rows: list[_WriteRows] = []
    weight = len(leases)
    alarm_changed = False
    for write in writes:
        instance_id = write.instance_id
        if instance_id != covered if isinstance(covered, str) else instance_id not in covered:
            raise ValueError(f"write for {instance_id!r} is not covered by a lease")
        puts = [(_key(k), _blob(v)) for k, v in write.puts.items()] if write.puts else _NONE
        deletes = sorted(_key(key) for key in write.deletes) if write.deletes else _NONE
        index = None if isinstance(write.index, Keep) else _check_index(write)
        alarm = write.alarm
        if isinstance(alarm, datetime):
            alarm_changed = True
            rows.append((instance_id, write.purge, deletes, puts, _to_us(alarm), index))
        else:
            alarm_changed |= alarm is None
            rows.append((instance_id, write.purge, deletes, puts, alarm, index))
        weight += 1 + len(puts) + len(deletes) + (0 if index is None else len(index))
        if write.purge:  # deletes every record and entry it has: rows not listed here
            weight += _PURGE_WEIGHT
    return rows, weight, alarm_changed


#: The rows a purge is taken to delete (records, index entries, their counts) when deciding
#: where a batch runs: a batch of purges is not a few microseconds of work on the loop.
_PURGE_WEIGHT: Final = 16


def _key(key: str) -> str:
    if "\x00" in key:
        raise ValueError(f"record keys are strings without NUL, got {key!r}")
    return key


def _blob(value: bytes) -> bytes:
    if type(value) is bytes:
        return value
    if isinstance(value, bytes | bytearray | memoryview):
        return bytes(value)
    raise ValueError(f"record values are bytes, got {type(value).__name__}")


def _to_us(instant: datetime) -> int:
    """Microseconds since the Unix epoch; ``ValueError`` for a naive datetime."""
    try:
        return (instant - _EPOCH) // _MICROSECOND
    except TypeError:
        raise ValueError(f"instants must be aware datetimes, got naive {instant!r}") from None


def _from_us(micros: int) -> datetime:
    return _EPOCH + timedelta(0, 0, micros)  # positional: measurably faster than keywords
