"""`SqliteStorage`: the `Storage` port on one stdlib ``sqlite3`` file in WAL mode.

This module owns the SQLite schema and its migrations, the background thread that makes every
``sqlite3`` call, and group commit. The event loop never blocks on SQLite: each storage object
has one dedicated thread owning one connection, and the loop talks to it through a queue.

Group commit: writes (``commit``, ``acquire``, ``extend``, ``release``, ``claim_due``) go to a
queue. While a transaction is running, new writes wait; when it ends, everything queued runs
together in the next transaction. One fenced or failing write fails alone (see
``SqliteStorage._transact``: fencing is decided before a write touches anything, and any other
failure rolls the transaction back and re-runs the others without the failing write). Every
caller resumes only after the shared ``COMMIT``. A lone write goes straight into a
transaction: dispatch waits for no timer, only for the current turn of the event loop, so
writes started in the same turn (an ``asyncio.gather``) share one transaction.

Durability: commits use the ``synchronous`` setting (``FULL`` by default: a commit that
returned survives power loss; ``NORMAL``: it survives a crash of the process, and may be lost,
never corrupted, on power loss). Transactions that only touch leases (``acquire``,
``extend``, ``release``, ``claim_due`` with no ``commit`` in the batch) run with
``synchronous=OFF`` and automatic checkpoints disabled when the base setting is FULL: lease
rows lost in an OS crash belonged to processes that died with it, a later durable commit's
fsync of the WAL also makes every earlier frame durable, and a checkpoint never runs without
syncing, so durable commits are never put at risk. See ``docs/storage.md``.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import queue
import sqlite3
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Any, Final, Generic, Literal, Self, TypeVar

from durable_effect.errors import LeaseLostError, StorageError
from durable_effect.storage._port import (
    Acquired,
    Claimed,
    InstanceSnapshot,
    InstanceWrite,
    Keep,
    Lease,
    Storage,
)

__all__ = ["SCHEMA_VERSION", "SqliteStorage"]

T = TypeVar("T")

_EPOCH: Final = datetime(1970, 1, 1, tzinfo=UTC)
_MICROSECOND: Final = timedelta(microseconds=1)
_MAX_ID_LENGTH: Final = 1024
_AUTOCHECKPOINT: Final = 1000
_CHUNK: Final = 500  # ids per IN (...) list

#: Statements of each schema version, applied in order by ``open`` (index 0 makes version 1).
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE IF NOT EXISTS records (
            instance_id TEXT NOT NULL,
            key TEXT NOT NULL,
            value BLOB NOT NULL,
            PRIMARY KEY (instance_id, key)
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS alarms (
            instance_id TEXT NOT NULL PRIMARY KEY,
            due_at INTEGER NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS alarms_due ON alarms (due_at, instance_id)",
        """CREATE TABLE IF NOT EXISTS leases (
            instance_id TEXT NOT NULL PRIMARY KEY,
            owner TEXT NOT NULL,
            generation INTEGER NOT NULL,
            expires_at INTEGER NOT NULL
        ) WITHOUT ROWID""",
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', 0)",
    ),
)

#: The schema version this library writes.
SCHEMA_VERSION: Final = len(_MIGRATIONS)

_CREATE_META = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT NOT NULL PRIMARY KEY, value INTEGER NOT NULL)"
    " WITHOUT ROWID"
)
_PRAGMAS: Final = frozenset({"journal_mode", "synchronous", "busy_timeout", "wal_autocheckpoint"})

_SELECT_LEASE = "SELECT owner, generation, expires_at FROM leases WHERE instance_id = ?"
_PUT_LEASE = (
    "INSERT OR REPLACE INTO leases (instance_id, owner, generation, expires_at) VALUES (?, ?, ?, ?)"
)
_TAKE_LEASE = (
    "INSERT INTO leases (instance_id, owner, generation, expires_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (instance_id) DO UPDATE SET owner = excluded.owner,"
    " generation = excluded.generation, expires_at = excluded.expires_at"
    " WHERE leases.expires_at <= ?"
)
_SNAPSHOT = (
    "SELECT key, value, NULL FROM records WHERE instance_id = ?"
    " UNION ALL SELECT NULL, NULL, due_at FROM alarms WHERE instance_id = ?"
)
_DELETE_LEASE = "DELETE FROM leases WHERE instance_id = ? AND owner = ? AND generation = ?"
_PUT_RECORD = (
    "INSERT INTO records (instance_id, key, value) VALUES (?, ?, ?)"
    " ON CONFLICT (instance_id, key) DO UPDATE SET value = excluded.value"
)
_PUT_ALARM = (
    "INSERT INTO alarms (instance_id, due_at) VALUES (?, ?)"
    " ON CONFLICT (instance_id) DO UPDATE SET due_at = excluded.due_at"
)
_CLAIM = (
    "SELECT a.instance_id, a.due_at FROM alarms AS a"
    " LEFT JOIN leases AS l ON l.instance_id = a.instance_id"
    " WHERE a.due_at <= ? AND (l.expires_at IS NULL OR l.expires_at <= ?)"
    " ORDER BY a.due_at, a.instance_id LIMIT ?"
)


class SqliteStorage(Storage):
    """The `Storage` port on a SQLite file (WAL, group commit, one background thread).

    ``wait_for_change`` wakes on commits and releases made through this object; changes made
    by other processes are only seen when its ``timeout`` runs out (a polling fallback).
    The object is used from one asyncio event loop (the one that opened it). A write whose
    caller is cancelled after it was handed to the storage thread may still be applied.
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
        #: Write transactions this object committed (a group commit counts once).
        self.transactions_committed = 0
        self._conn: sqlite3.Connection | None = None
        self._worker: _Worker | None = None
        self._loop: asyncio.AbstractEventLoop | None = None
        self._opened = False
        self._broken: BaseException | None = None
        self._pending: list[_Op[Any]] = []
        self._in_flight = False
        self._dispatch_scheduled = False
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._changed: asyncio.Event | None = None

    def __repr__(self) -> str:
        return f"SqliteStorage({self.path!r}, synchronous={self.synchronous!r})"

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, enable WAL and create or migrate the schema (idempotent).

        Safe when several processes open the same file at once: migrations run inside
        ``BEGIN IMMEDIATE`` and re-check the version there.
        """
        if self._opened:
            return
        self._loop = asyncio.get_running_loop()
        self._worker = _Worker(f"durable_effect-sqlite:{self.path}")
        self._broken = None
        self._changed = None
        try:
            await self._call(self._connect)
        except BaseException:
            self._worker.stop()
            self._worker = None
            raise
        self._opened = True

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def close(self) -> None:
        """Finish queued writes, then close the connection and stop the thread."""
        if not self._opened:
            return
        self._opened = False
        self._event().set()  # wake waiters: nothing more will change here
        while self._in_flight or self._pending or self._dispatch_scheduled:
            waiter = self._running_loop().create_future()
            self._idle_waiters.append(waiter)
            await waiter
        worker = self._worker
        try:
            await self._call(self._disconnect)
        finally:
            if worker is not None:
                worker.stop()
            self._worker = None

    async def read_pragma(self, name: str) -> object:
        """The value of one of a few pragmas on this object's connection (diagnostics).

        ``name`` is one of ``journal_mode``, ``synchronous`` (``2`` FULL, ``1`` NORMAL),
        ``busy_timeout`` and ``wal_autocheckpoint``.
        """
        if name not in _PRAGMAS:
            raise ValueError(f"unsupported pragma {name!r}; one of {sorted(_PRAGMAS)}")
        self._check_open("read_pragma")

        def read() -> object:
            row = self._connection().execute(f"PRAGMA {name}").fetchone()
            return None if row is None else row[0]

        return await self._call(_reading("read_pragma", read))

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

        def apply_one(txn: _Txn) -> Acquired | None:
            (instance_id,) = ids
            generation = txn.next_generation()
            granted = txn.conn.execute(
                _TAKE_LEASE, (instance_id, owner, generation, expires_us, now_us)
            )
            if granted.rowcount != 1:
                return None  # held: the upsert's WHERE left the row as it was
            lease = Lease(
                instance_id=instance_id, owner=owner, generation=generation, expires_at=expires_at
            )
            return Acquired(
                leases=[lease], snapshots={instance_id: _snapshot(txn.conn, instance_id)}
            )

        def apply(txn: _Txn) -> Acquired | None:
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
                _PUT_LEASE, [(i, owner, first + n, expires_us) for n, i in enumerate(ids)]
            )
            leases = [
                Lease(instance_id=i, owner=owner, generation=first + n, expires_at=expires_at)
                for n, i in enumerate(ids)
            ]
            return Acquired(leases=leases, snapshots=_snapshots(conn, ids))

        fn = apply_one if len(ids) == 1 else apply
        return await self._write("acquire", fn, durable=False, signals=False)

    async def extend(self, lease: Lease, *, now: datetime, ttl: timedelta) -> Lease:
        expires_at = _instant(now) + _ttl(ttl)
        expires_us = _to_us(expires_at)

        def apply(txn: _Txn) -> Lease:
            _check_current(txn.conn, lease)
            txn.conn.execute(
                "UPDATE leases SET expires_at = ? WHERE instance_id = ?",
                (expires_us, lease.instance_id),
            )
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

        def apply(txn: _Txn) -> None:
            txn.conn.executemany(_DELETE_LEASE, rows)

        await self._write("release", apply, durable=False, signals=True)

    # -- records ---------------------------------------------------------------------------

    async def load(self, instance_ids: Sequence[str]) -> Mapping[str, InstanceSnapshot]:
        self._check_open("load")
        ids = list(instance_ids)

        def read() -> Mapping[str, InstanceSnapshot]:
            conn = self._connection()
            conn.execute("BEGIN")
            try:
                return _snapshots(conn, ids)
            finally:
                conn.execute("COMMIT")

        return await self._call(_reading("load", read))

    async def commit(
        self,
        leases: Sequence[Lease],
        writes: Sequence[InstanceWrite],
        *,
        release: bool = True,
    ) -> None:
        rows = _commit_rows(leases, writes)
        if not leases:
            self._check_open("commit")
            return
        alarm_changed = any(not isinstance(write.alarm, Keep) for write in writes)

        single = release and len(leases) == 1

        def apply(txn: _Txn) -> None:
            conn = txn.conn
            if single:  # the fencing check and the release in one statement
                (lease,) = leases
                deleted = conn.execute(
                    _DELETE_LEASE, (lease.instance_id, lease.owner, lease.generation)
                )
                if deleted.rowcount != 1:
                    raise _lost(lease)
            else:
                for lease in leases:
                    _check_current(conn, lease)
            for instance_id, purge, deletes, puts, alarm in rows:
                if purge:
                    conn.execute("DELETE FROM records WHERE instance_id = ?", (instance_id,))
                if deletes:
                    conn.executemany(
                        "DELETE FROM records WHERE instance_id = ? AND key = ?",
                        [(instance_id, key) for key in deletes],
                    )
                if len(puts) == 1:
                    conn.execute(_PUT_RECORD, (instance_id, *puts[0]))
                elif puts:
                    conn.executemany(_PUT_RECORD, [(instance_id, k, v) for k, v in puts])
                if alarm is None:
                    conn.execute("DELETE FROM alarms WHERE instance_id = ?", (instance_id,))
                elif not isinstance(alarm, Keep):
                    conn.execute(_PUT_ALARM, (instance_id, alarm))
            if release and not single:
                conn.executemany(
                    _DELETE_LEASE, [(x.instance_id, x.owner, x.generation) for x in leases]
                )

        await self._write("commit", apply, durable=True, signals=alarm_changed or release)

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
        if limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        _check_text(owner, "owner")
        if limit == 0:
            self._check_open("claim_due")
            return []
        now_us, expires_us = _to_us(moment), _to_us(expires_at)

        def apply(txn: _Txn) -> Sequence[Claimed]:
            conn = txn.conn
            due = conn.execute(_CLAIM, (now_us, now_us, limit)).fetchall()
            if not due:
                return []
            first = txn.next_generation(len(due))
            conn.executemany(
                _PUT_LEASE,
                [(i, owner, first + n, expires_us) for n, (i, _) in enumerate(due)],
            )
            alarms = {i: _from_us(at) for i, at in due}
            snapshots = _snapshots(conn, list(alarms), alarms)
            return [
                Claimed(
                    lease=Lease(
                        instance_id=i, owner=owner, generation=first + n, expires_at=expires_at
                    ),
                    due_at=alarms[i],
                    snapshot=snapshots[i],
                )
                for n, i in enumerate(alarms)
            ]

        return await self._write("claim_due", apply, durable=False, signals=False)

    async def next_alarm_at(self) -> datetime | None:
        self._check_open("next_alarm_at")

        def read() -> datetime | None:
            row = self._connection().execute("SELECT MIN(due_at) FROM alarms").fetchone()
            return None if row is None or row[0] is None else _from_us(row[0])

        return await self._call(_reading("next_alarm_at", read))

    async def wait_for_change(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for an alarm change or a release made here.

        Wakes on this object's commits that changed an alarm or released leases, and on its
        ``release`` calls. Other processes are not watched: their changes are picked up when
        the timeout runs out, so callers poll with a bounded timeout. A change since the
        previous call returned makes the next call return at once (never a lost wake-up; at
        most one spurious return, which the port allows).
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
        if limit is not None and limit < 0:
            raise ValueError(f"limit must be >= 0, got {limit}")
        _check_text(prefix, "prefix")
        conditions = ["instance_id >= ?"]
        params: list[object] = [prefix]
        upper = _prefix_upper(prefix)
        if upper is not None:
            conditions.append("instance_id < ?")
            params.append(upper)
        if after is not None:
            _check_text(after, "after")
            conditions.append("instance_id > ?")
            params.append(after)
        where = " AND ".join(conditions)
        sql = (
            f"SELECT instance_id FROM records WHERE {where} UNION"
            f" SELECT instance_id FROM alarms WHERE {where} ORDER BY instance_id LIMIT ?"
        )
        args = (*params, *params, -1 if limit is None else limit)

        def read() -> Sequence[str]:
            rows = self._connection().execute(sql, args).fetchall()
            return [row[0] for row in rows]

        return await self._call(_reading("list_instances", read))

    # -- the loop side of the thread -------------------------------------------------------

    def _check_open(self, operation: str) -> None:
        if not self._opened:
            raise StorageError(operation=operation, cause="the storage is not open")
        if asyncio.get_running_loop() is not self._loop:
            raise StorageError(
                operation=operation, cause="the storage is used from another event loop"
            )

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise StorageError(operation="loop", cause="the storage was never opened")
        return self._loop

    def _call(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``fn`` on the storage thread; a future for its result."""
        loop = self._running_loop()
        future: asyncio.Future[T] = loop.create_future()
        worker = self._worker
        if worker is None:
            raise StorageError(operation="call", cause="the storage thread is not running")

        def job() -> None:
            try:
                value = fn()
            except BaseException as exc:
                _post(loop, _fail, future, exc)
            else:
                _post(loop, _succeed, future, value)

        worker.submit(job)
        return future

    async def _write(
        self, name: str, apply: Callable[[_Txn], T], *, durable: bool, signals: bool
    ) -> T:
        self._check_open(name)
        loop = self._running_loop()
        op: _Op[T] = _Op(name, apply, loop.create_future(), durable=durable, signals=signals)
        self._pending.append(op)
        if not self._in_flight and not self._dispatch_scheduled:
            self._dispatch_scheduled = True
            loop.call_soon(self._dispatch)
        return await op.future

    def _dispatch(self) -> None:
        self._dispatch_scheduled = False
        if self._in_flight:
            return
        ops = [op for op in self._pending if not op.future.done()]
        self._pending.clear()
        worker = self._worker
        if not ops or worker is None:
            for op in ops:
                op.fail(StorageError(operation=op.name, cause="the storage is closed"))
                op.settle()
            self._notify_idle()
            return
        self._in_flight = True
        loop = self._running_loop()

        def job() -> None:
            try:
                self._run_batch(ops)
            except BaseException as exc:
                for op in ops:
                    op.fail(_as_error(op.name, exc))
            _post(loop, self._batch_done, ops)

        worker.submit(job)

    def _batch_done(self, ops: list[_Op[Any]]) -> None:
        self._in_flight = False
        signal = False
        for op in ops:
            signal |= op.settle()
        if signal:
            self._event().set()
        if self._pending:
            self._dispatch()
        else:
            self._notify_idle()

    def _notify_idle(self) -> None:
        if self._in_flight or self._pending or self._dispatch_scheduled:
            return
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _event(self) -> asyncio.Event:
        if self._changed is None:
            self._changed = asyncio.Event()
        return self._changed

    # -- the storage thread ----------------------------------------------------------------

    def _connection(self) -> sqlite3.Connection:
        if self._conn is None:
            raise StorageError(operation="connection", cause="the storage is not open")
        return self._conn

    def _connect(self) -> None:
        try:
            conn = sqlite3.connect(
                self.path,
                timeout=self.busy_timeout_ms / 1000,
                isolation_level=None,
                cached_statements=256,
            )
        except sqlite3.Error as exc:
            raise StorageError(operation="open", cause=exc) from exc
        try:
            conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
            _enable_wal(conn, self.busy_timeout_ms)
            conn.execute(f"PRAGMA synchronous = {self.synchronous.upper()}")
            conn.execute(f"PRAGMA wal_autocheckpoint = {_AUTOCHECKPOINT}")
            _migrate(conn)
        except BaseException as exc:
            conn.close()
            if isinstance(exc, StorageError):
                raise
            if isinstance(exc, sqlite3.Error):
                raise StorageError(operation="open", cause=exc) from exc
            raise
        self._conn = conn

    def _disconnect(self) -> None:
        conn, self._conn = self._conn, None
        if conn is not None:
            try:
                conn.close()
            except sqlite3.Error as exc:
                raise StorageError(operation="close", cause=exc) from exc

    def _run_batch(self, ops: list[_Op[Any]]) -> None:
        """Run ``ops`` in one transaction (thread side); every op ends with an outcome."""
        if self._broken is not None:
            for op in ops:
                op.fail(StorageError(operation=op.name, cause=self._broken))
            return
        conn = self._connection()
        # Lease-only groups need no fsync (see the module docstring); they must not
        # checkpoint either, since an unsynced checkpoint could lose durable commits.
        relax = self.synchronous == "full" and not any(op.durable for op in ops)
        try:
            if relax:
                conn.execute("PRAGMA wal_autocheckpoint = 0")
                conn.execute("PRAGMA synchronous = OFF")
            self._transact(conn, ops)
        finally:
            if relax:
                try:
                    conn.execute("PRAGMA synchronous = FULL")
                    conn.execute(f"PRAGMA wal_autocheckpoint = {_AUTOCHECKPOINT}")
                except sqlite3.Error as exc:
                    # Never commit again with durability silently off.
                    self._broken = exc

    def _transact(self, conn: sqlite3.Connection, ops: list[_Op[Any]]) -> None:
        """Apply ``ops`` in one transaction, isolating any op that fails.

        Every op settles its expected failures (a fenced lease, a held instance) before it
        writes anything, so those fail that op alone and the transaction goes on. An op that
        raises anything else may have written part of its changes: the transaction is rolled
        back, that op fails alone, and the others run again in a new transaction. Either way
        each op is applied entirely or not at all, and the others are unaffected.
        """
        remaining = ops
        while remaining:
            culprit = self._attempt(conn, remaining)
            if culprit is None:
                return
            remaining = [op for op in remaining if op is not culprit]
            for op in remaining:
                op.reset()

    def _attempt(self, conn: sqlite3.Connection, ops: list[_Op[Any]]) -> _Op[Any] | None:
        """One transaction over ``ops``; the op to drop when one raised unexpectedly."""
        txn = _Txn(conn)
        running: _Op[Any] | None = None
        try:
            conn.execute("BEGIN IMMEDIATE")
            for op in ops:
                running = op
                try:
                    op.run(txn)
                except LeaseLostError as exc:
                    op.fail(exc)
            running = None
            txn.flush()
            conn.execute("COMMIT")
        except Exception as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if running is not None:
                running.fail(_as_error(running.name, exc))
                if len(ops) > 1:
                    return running
            for op in ops:
                if not op.failed:
                    op.fail(_as_error(op.name, exc))
            return None
        self.transactions_committed += 1
        return None


class _Worker:
    """One daemon thread running jobs from a queue, in order."""

    def __init__(self, name: str) -> None:
        self._jobs: queue.SimpleQueue[Callable[[], None] | None] = queue.SimpleQueue()
        self._thread = threading.Thread(target=self._run, name=name, daemon=True)
        self._thread.start()

    def submit(self, job: Callable[[], None]) -> None:
        self._jobs.put(job)

    def stop(self) -> None:
        self._jobs.put(None)

    def _run(self) -> None:
        while (job := self._jobs.get()) is not None:
            job()


class _Txn:
    """The state of one write transaction on the storage thread: the generation counter."""

    __slots__ = ("_next", "_start", "conn")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._start: int | None = None
        self._next = 0

    def next_generation(self, count: int = 1) -> int:
        """The first of ``count`` fresh generations (``flush`` writes the counter back)."""
        if self._start is None:
            row = self.conn.execute("SELECT value FROM meta WHERE key = 'generation'").fetchone()
            self._start = self._next = int(row[0])
        first = self._next + 1
        self._next += count
        return first

    def flush(self) -> None:
        if self._start is not None and self._next != self._start:
            self.conn.execute("UPDATE meta SET value = ? WHERE key = 'generation'", (self._next,))


class _Op(Generic[T]):
    """One queued write: runs on the thread inside a transaction, settles on the loop."""

    __slots__ = ("_error", "_has_value", "_value", "apply", "durable", "future", "name", "signals")

    def __init__(
        self,
        name: str,
        apply: Callable[[_Txn], T],
        future: asyncio.Future[T],
        *,
        durable: bool,
        signals: bool,
    ) -> None:
        self.name = name
        self.apply = apply
        self.future = future
        self.durable = durable
        self.signals = signals
        self._error: BaseException | None = None
        self._has_value = False

    @property
    def failed(self) -> bool:
        return self._error is not None

    def run(self, txn: _Txn) -> None:
        self._value = self.apply(txn)
        self._has_value = True

    def fail(self, error: BaseException) -> None:
        self._error = error
        self._has_value = False

    def reset(self) -> None:
        """Forget the outcome of a transaction that was rolled back."""
        self._error = None
        self._has_value = False

    def settle(self) -> bool:
        """Resolve the caller's future; whether a committed change should wake waiters."""
        if self.future.done():  # the caller was cancelled; the write may still be applied
            return self._has_value and self.signals
        if self._error is not None:
            self.future.set_exception(self._error)
            return False
        if not self._has_value:
            self.future.set_exception(StorageError(operation=self.name, cause="not applied"))
            return False
        self.future.set_result(self._value)
        return self.signals


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: object) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(callback, *args)


def _succeed(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def _reading(operation: str, fn: Callable[[], T]) -> Callable[[], T]:
    """``fn`` with ``sqlite3`` errors turned into ``StorageError``."""

    def read() -> T:
        try:
            return fn()
        except sqlite3.Error as exc:
            raise StorageError(operation=operation, cause=exc) from exc

    return read


def _as_error(operation: str, exc: BaseException) -> BaseException:
    if isinstance(exc, LeaseLostError | StorageError | ValueError):
        return exc
    return StorageError(operation=operation, cause=exc)


def _enable_wal(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """Switch the file to WAL (a persistent setting), retrying while another opener holds it.

    Changing the journal mode needs a lock SQLite's busy handler does not wait for: when two
    processes open a fresh file at once, the loser gets the old mode back. It retries here, on
    the storage thread, for up to the busy timeout.
    """
    waited_ms, pause_ms = 0, 1
    while True:
        try:
            row = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            row = None
        if row is not None and str(row[0]).lower() == "wal":
            return
        if waited_ms >= busy_timeout_ms:
            raise StorageError(operation="open", cause="could not switch the database to WAL")
        time.sleep(pause_ms / 1000)
        waited_ms += pause_ms
        pause_ms = min(pause_ms * 2, 50)


def _schema_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return 0 if row is None else int(row[0])


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema to `SCHEMA_VERSION`; a no-op when another process already did."""
    if _schema_version(conn) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_CREATE_META)
        version = _schema_version(conn)
        if version > SCHEMA_VERSION:
            raise StorageError(
                operation="open",
                cause=f"schema version {version} is newer than this library's {SCHEMA_VERSION}",
            )
        for statements in _MIGRATIONS[version:]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
            (SCHEMA_VERSION,),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise


def _lost(lease: Lease) -> LeaseLostError:
    return LeaseLostError(
        instance_id=lease.instance_id, owner=lease.owner, generation=lease.generation
    )


def _check_current(conn: sqlite3.Connection, lease: Lease) -> None:
    row = conn.execute(_SELECT_LEASE, (lease.instance_id,)).fetchone()
    if row is None or row[0] != lease.owner or row[1] != lease.generation:
        raise _lost(lease)


def _snapshot(conn: sqlite3.Connection, instance_id: str) -> InstanceSnapshot:
    """The snapshot of one instance, in one statement."""
    records: dict[str, bytes] = {}
    alarm_at: datetime | None = None
    for key, value, due_at in conn.execute(_SNAPSHOT, (instance_id, instance_id)):
        if key is None:
            alarm_at = _from_us(due_at)
        else:
            records[key] = value
    return InstanceSnapshot(instance_id=instance_id, records=records, alarm_at=alarm_at)


def _snapshots(
    conn: sqlite3.Connection,
    instance_ids: Sequence[str],
    alarms: Mapping[str, datetime] | None = None,
) -> dict[str, InstanceSnapshot]:
    """Snapshots of ``instance_ids`` (``alarms`` when the caller already read them)."""
    records: dict[str, dict[str, bytes]] = {}
    found = {} if alarms is None else dict(alarms)
    for start in range(0, len(instance_ids), _CHUNK):
        chunk = instance_ids[start : start + _CHUNK]
        marks = ", ".join("?" * len(chunk))
        rows = conn.execute(
            f"SELECT instance_id, key, value FROM records WHERE instance_id IN ({marks})", chunk
        )
        for instance_id, key, value in rows:
            records.setdefault(instance_id, {})[key] = value
        if alarms is None:
            rows = conn.execute(
                f"SELECT instance_id, due_at FROM alarms WHERE instance_id IN ({marks})", chunk
            )
            found.update((i, _from_us(at)) for i, at in rows)
    return {
        i: InstanceSnapshot(instance_id=i, records=records.get(i, {}), alarm_at=found.get(i))
        for i in instance_ids
    }


_WriteRows = tuple[str, bool, list[str], list[tuple[str, bytes]], int | Keep | None]


def _commit_rows(leases: Sequence[Lease], writes: Sequence[InstanceWrite]) -> list[_WriteRows]:
    """Check a commit's writes (``ValueError``) and turn them into statement parameters.

    Text that cannot be encoded (lone surrogates) is refused by ``sqlite3`` itself when bound,
    as a ``UnicodeEncodeError`` (a ``ValueError``), before the transaction commits.
    """
    covered = {lease.instance_id for lease in leases}
    rows: list[_WriteRows] = []
    for write in writes:
        instance_id = write.instance_id
        if instance_id not in covered:
            raise ValueError(f"write for {instance_id!r} is not covered by a lease")
        puts = [(_key(key), _blob(value)) for key, value in write.puts.items()]
        deletes = sorted(_key(key) for key in write.deletes)
        alarm = write.alarm
        rows.append(
            (
                instance_id,
                write.purge,
                deletes,
                puts,
                _to_us(alarm) if isinstance(alarm, datetime) else alarm,
            )
        )
    return rows


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
    return _EPOCH + timedelta(microseconds=micros)


def _prefix_upper(prefix: str) -> str | None:
    """The least string above every string starting with ``prefix`` (code point order)."""
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if code <= 0x10FFFF:
            chars[-1] = chr(0xE000 if 0xD800 <= code <= 0xDFFF else code)
            return "".join(chars)
        chars.pop()
    return None


# -- checks made before anything is queued (kept identical to MemoryStorage's) -------------


def _instant(value: datetime) -> datetime:
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"instants must be aware datetimes, got naive {value!r}")
    return value.astimezone(UTC)


def _ttl(ttl: timedelta) -> timedelta:
    if ttl <= timedelta(0):
        raise ValueError(f"ttl must be positive, got {ttl!r}")
    return ttl


def _check_text(text: str, what: str) -> None:
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} {text!r} is not valid unicode text") from exc


def _check_id(instance_id: str) -> str:
    if not instance_id:
        raise ValueError(f"instance ids are non-empty strings, got {instance_id!r}")
    if len(instance_id) > _MAX_ID_LENGTH or "\x00" in instance_id:
        raise ValueError(f"instance ids have at most 1024 characters and no NUL: {instance_id!r}")
    _check_text(instance_id, "instance id")
    return instance_id


def _unique_ids(instance_ids: Sequence[str]) -> list[str]:
    ids = [_check_id(i) for i in instance_ids]
    if len(set(ids)) != len(ids):
        raise ValueError(f"instance ids repeat in {ids!r}")
    return ids
