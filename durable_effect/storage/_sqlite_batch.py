"""Group commit for `SqliteStorage`: the write queue, where each transaction runs, the thread.

Writes (``commit``, ``acquire``, ``extend``, ``release``, ``claim_due``) are queued as `Op` objects.
The queue is dispatched on the event loop one turn after its first write arrived (so writes
started in the same turn, like those of an ``asyncio.gather``, share a transaction), or as soon
as the running transaction ends: while one runs, new writes wait, and then everything queued
runs together in the next transaction. Every caller resumes only after the shared ``COMMIT``.

Every write transaction uses the one *writer* connection (so its page cache stays warm);
where it runs depends on the batch:

* **inline**, on the event loop — when no batch is running on the storage thread, the batch
  is small (`INLINE_WEIGHT`) and it needs no fsync: lease-only batches under ``FULL``, any
  batch under ``NORMAL`` (whose commits never fsync either). Such a transaction costs a few
  tens of microseconds of CPU, less than the two thread hand-offs it saves, and the thread
  would hold the GIL for most of it anyway. The writer is at rest then (``synchronous=OFF``,
  no busy wait): if another process holds the write lock, ``BEGIN IMMEDIATE`` fails at once
  and the batch goes to the thread instead.
* on the **storage thread** — every other batch: a durable commit under ``FULL`` (its fsync
  never blocks the loop), a large batch, a batch that found the file busy. For it the writer
  waits up to the busy timeout and, for a durable commit under ``FULL``, syncs.

The writer never checkpoints: after enough writes a ``PASSIVE`` checkpoint is queued to the
thread, which runs it on the *reader* connection (base settings, so it syncs the WAL before
and the database file after). The WAL stays bounded and the database file is only ever
written with syncing on. One fenced or failing write fails alone (`GroupCommit._transact`).
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
import time
from collections.abc import Callable
from typing import Any, Final, Generic, Literal, TypeVar

from durable_effect.errors import LeaseLostError, StorageError
from durable_effect.storage import _sqlite_schema as schema

__all__ = ["INLINE_WEIGHT", "GroupCommit", "Op", "Txn", "as_error", "reading"]

T = TypeVar("T")

#: The largest batch (in rows, roughly) that runs inline on the event loop: ~1-2 ms of CPU.
INLINE_WEIGHT: Final = 256
#: Estimated WAL frames after which a checkpoint is due (SQLite's automatic checkpoint
#: threshold). A transaction is estimated at one frame plus one per eight rows: about two
#: per acquire or single commit, which is what they write.
_CHECKPOINT_FRAMES: Final = 1000
#: A lone durable commit under FULL runs inline only while durable commits have recently
#: taken less than this (an exponential average): the longest the loop may block on fsync.
INLINE_FSYNC_BUDGET: Final = 0.001
_IMMEDIATE = True


class Txn:
    """One write transaction: its connection and the store-wide generation counter."""

    __slots__ = ("_next", "_start", "conn")

    def __init__(self, conn: sqlite3.Connection) -> None:
        self.conn = conn
        self._start: int | None = None
        self._next = 0

    def next_generation(self, count: int = 1) -> int:
        """The first of ``count`` fresh generations.

        The first call reserves its generations in the counter (one statement); later calls
        in the same transaction count on from there and ``flush`` writes the counter back.
        """
        if self._start is None:
            rows = self.conn.execute(schema.RESERVE_GENERATIONS, (count,)).fetchall()
            self._start = self._next = int(rows[0][0])
            return self._next - count + 1
        first = self._next + 1
        self._next += count
        return first

    def flush(self) -> None:
        if self._start is not None and self._next != self._start:
            self.conn.execute(schema.SET_GENERATION, (self._next,))


class Op(Generic[T]):
    """One queued write: runs inside a transaction, then settles its caller's future."""

    __slots__ = (
        "_error",
        "_has_value",
        "_value",
        "apply",
        "durable",
        "future",
        "name",
        "signals",
        "weight",
    )

    def __init__(
        self,
        name: str,
        apply: Callable[[Txn], T],
        future: asyncio.Future[T] | None = None,
        *,
        durable: bool,
        signals: bool,
        weight: int = 1,
    ) -> None:
        self.name = name
        self.apply = apply
        self.future = future
        self.durable = durable
        self.signals = signals
        self.weight = weight
        self._error: BaseException | None = None
        self._has_value = False

    @property
    def failed(self) -> bool:
        return self._error is not None

    @property
    def applied(self) -> bool:
        return self._has_value

    def outcome(self) -> T:
        """The op's result, or its error raised (for an op run without a queue)."""
        if self._error is not None:
            raise self._error
        if not self._has_value:
            raise StorageError(operation=self.name, cause="not applied")
        return self._value

    def run(self, txn: Txn) -> None:
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
        assert self.future is not None
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


class _Busy:
    """`GroupCommit._attempt` found the file locked by another writer (inline only)."""


_BUSY: Final = _Busy()


class GroupCommit:
    """The write queue of one `SqliteStorage`, its two connections and its thread.

    Used from one event loop; ``start``/``stop`` bracket one open period. See the module
    docstring for where each batch runs.
    """

    def __init__(
        self,
        path: str,
        *,
        synchronous: Literal["full", "normal"],
        busy_timeout_ms: int,
        on_change: Callable[[], None],
    ) -> None:
        self.path = path
        self.synchronous: Final = synchronous
        self.busy_timeout_ms = busy_timeout_ms
        #: Write transactions committed (a group commit counts once).
        self.transactions_committed = 0
        self._on_change = on_change
        self._full = synchronous == "full"
        self._loop: asyncio.AbstractEventLoop | None = None
        self._worker: _Worker | None = None
        self._reader: sqlite3.Connection | None = None  # on the thread only
        self._writer: sqlite3.Connection | None = None  # on the loop while idle, else thread
        self._inline = False  # whether the writer may run inline (it is at rest)
        self._pending: list[Op[Any]] = []
        self._in_flight = False
        self._dispatch_scheduled = False
        self._idle_waiters: list[asyncio.Future[None]] = []
        self._unchecked = 0  # WAL frames written since the last checkpoint (estimated)
        self._checkpoint_due = False
        self._checkpointing = False
        self._fsync_cost = 0.0  # seconds a durable commit took lately (exponential average)

    # -- lifecycle (on the loop) -----------------------------------------------------------

    async def start(self) -> None:
        """Start the thread and open both connections (migrating the schema)."""
        self._loop = asyncio.get_running_loop()
        self._worker = _Worker(f"durable_effect-sqlite:{self.path}")
        self._unchecked, self._checkpoint_due, self._checkpointing = 0, False, False
        try:
            await self.call(self._connect)
        except BaseException:
            self._worker.stop()
            self._worker = None
            raise
        self._inline = True

    async def stop(self) -> None:
        """Finish queued writes, then close the connections and stop the thread."""
        while self._in_flight or self._pending or self._dispatch_scheduled:
            waiter = self._running_loop().create_future()
            self._idle_waiters.append(waiter)
            await waiter
        self._inline = False
        worker = self._worker
        try:
            await self.call(self._disconnect)
        finally:
            if worker is not None:
                worker.stop()
            self._worker = None

    def reader(self) -> sqlite3.Connection:
        """The reader connection (on the storage thread only: in a `call`)."""
        if self._reader is None:
            raise StorageError(operation="connection", cause="the storage is not open")
        return self._reader

    # -- the loop side ---------------------------------------------------------------------

    def call(self, fn: Callable[[], T]) -> asyncio.Future[T]:
        """Run ``fn`` on the storage thread (reads use `reader`); a future for its result."""
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

    async def write(self, op: Op[T]) -> T:
        """Run ``op`` in a transaction; its result once committed (or its error).

        When nothing is queued or running and the loop has nothing else ready, an op that may
        run inline runs at once, in the caller, saving the trip through the queue; the caller
        still yields to the loop once afterwards, as a queued write would, so a loop of
        writes never starves other tasks. Otherwise the op is queued.
        """
        if (
            _IMMEDIATE
            and not (self._in_flight or self._pending or self._dispatch_scheduled)
            and not self._checkpoint_due
            and self._runs_inline([op])
            and self._idle()
            and not self._run_inline([op])
        ):
            if op.signals and op.applied:
                self._on_change()
            await asyncio.sleep(0)
            return op.outcome()
        op.future = self._running_loop().create_future()
        return await self.submit(op)

    def submit(self, op: Op[T]) -> asyncio.Future[T]:
        """Queue ``op`` (with its future); the future resolves once its transaction ends."""
        assert op.future is not None
        self._pending.append(op)
        if not self._in_flight and not self._dispatch_scheduled:
            self._dispatch_scheduled = True
            self._running_loop().call_soon(self._dispatch)
        return op.future

    def _running_loop(self) -> asyncio.AbstractEventLoop:
        if self._loop is None:
            raise StorageError(operation="loop", cause="the storage was never opened")
        return self._loop

    def _dispatch(self) -> None:
        self._dispatch_scheduled = False
        if self._in_flight:
            return
        if self._checkpoint_due and self._worker is not None:
            self._checkpoint_now(self._worker)
            return
        ops = [op for op in self._pending if op.future is not None and not op.future.done()]
        self._pending.clear()
        worker = self._worker
        if not ops or worker is None:
            for op in ops:
                op.fail(StorageError(operation=op.name, cause="the storage is closed"))
                op.settle()
            self._notify_idle()
            return
        if self._runs_inline(ops):
            left = self._run_inline(ops)
            if not left:
                self._settle(ops)
                if self._pending:
                    self._dispatch_scheduled = True
                    self._running_loop().call_soon(self._dispatch)
                else:
                    self._notify_idle()
                return
            # The file was busy: the thread waits for it.
            waiting = {id(op) for op in left}
            self._settle([op for op in ops if id(op) not in waiting])
            ops = left
        self._in_flight = True
        loop = self._running_loop()
        durable = self._full and any(op.durable for op in ops)

        def job() -> None:
            started = time.perf_counter()
            try:
                self._run_batch(ops, durable=durable)
            except BaseException as exc:
                for op in ops:
                    op.fail(as_error(op.name, exc))
            seconds = time.perf_counter() - started if durable else None
            _post(loop, self._batch_done, ops, seconds)

        worker.submit(job)

    def _batch_done(self, ops: list[Op[Any]], fsynced: float | None = None) -> None:
        self._in_flight = False
        if fsynced is not None:
            self._note_fsync(fsynced)
        if ops:
            self._wrote(ops)
            self._settle(ops)
        if self._pending:
            self._dispatch()
        else:
            self._notify_idle()

    def _settle(self, ops: list[Op[Any]]) -> None:
        signal = False
        for op in ops:
            signal |= op.settle()
        if signal:
            self._on_change()

    def _notify_idle(self) -> None:
        if self._in_flight or self._pending or self._dispatch_scheduled:
            return
        waiters, self._idle_waiters = self._idle_waiters, []
        for waiter in waiters:
            if not waiter.done():
                waiter.set_result(None)

    def _runs_inline(self, ops: list[Op[Any]]) -> bool:
        """Whether ``ops`` run on the loop now (see the module docstring)."""
        if not self._inline:
            return False
        weight = 0
        durable = False
        for op in ops:
            durable |= op.durable
            weight += op.weight
        if weight > INLINE_WEIGHT:
            return False
        if durable and self._full:
            return self._fsync_cost < INLINE_FSYNC_BUDGET and self._idle()
        return True

    def _idle(self) -> bool:
        """Whether the loop has no other callback ready: blocking it delays nobody now.

        Reads the ready queue of asyncio's own loops; other loops (uvloop) have none to read,
        and count as busy.
        """
        ready = getattr(self._loop, "_ready", None)
        return ready is not None and len(ready) == 0

    def _note_fsync(self, seconds: float) -> None:
        self._fsync_cost += (seconds - self._fsync_cost) / 4

    def _run_inline(self, ops: list[Op[Any]]) -> list[Op[Any]]:
        """Run ``ops`` on the loop; the ops left for the thread (the file was busy)."""
        conn = self._writer
        assert conn is not None
        durable = self._full and any(op.durable for op in ops)
        started = time.perf_counter()
        try:
            if durable:
                conn.execute("PRAGMA synchronous = FULL")
            left = self._transact(conn, ops, inline=True)
        except BaseException:  # KeyboardInterrupt and the like: leave the connection clean
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            raise
        finally:
            if durable:
                try:
                    conn.execute("PRAGMA synchronous = OFF")
                except sqlite3.Error:
                    self._inline = False  # it would fsync every inline transaction
        if durable:
            self._note_fsync(time.perf_counter() - started)
        if len(left) < len(ops):
            self._wrote(ops)
        return left

    def _wrote(self, ops: list[Op[Any]]) -> None:
        """Count the frames a transaction wrote; checkpoint when the WAL has grown.

        A checkpoint runs in two steps on the thread. The first runs beside the writes: it
        does the bulk of the work (under ``NORMAL`` it also syncs every frame written since
        the last one, milliseconds). The second runs as a batch of its own, so no write
        runs meanwhile: it copies what was appended during the first, and then the next
        write transaction starts the WAL over. Frames that overwrite blocks already in the
        file make a cheaper fsync (no larger file size to journal: about half the cost of
        an appending fsync here), and the WAL stays bounded.
        """
        self._unchecked += 1 + (sum(op.weight for op in ops) + 7) // 8
        if self._unchecked >= _CHECKPOINT_FRAMES and not self._checkpointing:
            worker = self._worker
            if worker is None:
                return
            self._unchecked = 0
            self._checkpointing = True
            loop = self._running_loop()

            def job() -> None:
                self._checkpoint()
                _post(loop, self._checkpointed)

            worker.submit(job)

    def _checkpointed(self) -> None:
        self._checkpointing = False
        self._checkpoint_due = True  # the second step, at the next dispatch
        if not (self._in_flight or self._dispatch_scheduled) and self._pending:
            self._dispatch_scheduled = True
            self._running_loop().call_soon(self._dispatch)

    def _checkpoint_now(self, worker: _Worker) -> None:
        """The second step of a checkpoint: on the thread, with no write running."""
        self._checkpoint_due = False
        self._in_flight = True
        loop = self._running_loop()

        def job() -> None:
            self._checkpoint()
            _post(loop, self._batch_done, [])

        worker.submit(job)

    # -- the storage thread ----------------------------------------------------------------

    def _connect(self) -> None:
        reader = schema.connect_reader(self.path, self.synchronous, self.busy_timeout_ms)
        try:
            writer = schema.connect_writer(self.path)
        except BaseException:
            reader.close()
            raise
        self._reader, self._writer = reader, writer

    def _disconnect(self) -> None:
        writer, self._writer = self._writer, None
        reader, self._reader = self._reader, None
        try:
            if writer is not None:  # first: the last connection to close checkpoints
                schema.close_writer(writer, self.synchronous)
        except sqlite3.Error as exc:
            raise StorageError(operation="close", cause=exc) from exc
        finally:
            if reader is not None:
                try:
                    reader.close()
                except sqlite3.Error as exc:
                    raise StorageError(operation="close", cause=exc) from exc

    def _checkpoint(self) -> None:
        """Copy the WAL into the database file, syncing (thread side, best effort)."""
        if self._reader is not None:
            with contextlib.suppress(sqlite3.Error):
                self._reader.execute(schema.CHECKPOINT).fetchall()

    def _run_batch(self, ops: list[Op[Any]], *, durable: bool) -> None:
        """Run ``ops`` in one transaction on the thread; every op ends with an outcome.

        The writer waits for a busy file here, and syncs when ``durable``; if it cannot be
        set up so, the ops fail (nothing is written); if it cannot be put back at rest, no
        batch runs inline any more.
        """
        conn = self._writer
        if conn is None:
            for op in ops:
                op.fail(StorageError(operation=op.name, cause="the storage is not open"))
            return
        try:
            try:
                conn.execute(f"PRAGMA busy_timeout = {int(self.busy_timeout_ms)}")
                if durable:
                    conn.execute("PRAGMA synchronous = FULL")
            except sqlite3.Error as exc:
                for op in ops:
                    op.fail(StorageError(operation=op.name, cause=exc))
                return
            self._transact(conn, ops, inline=False)
        finally:
            try:
                if durable:
                    conn.execute("PRAGMA synchronous = OFF")
                conn.execute("PRAGMA busy_timeout = 0")
            except sqlite3.Error:
                self._inline = False  # it might fsync or wait on the loop: keep it here

    # -- transactions (either side) --------------------------------------------------------

    def _transact(
        self, conn: sqlite3.Connection, ops: list[Op[Any]], *, inline: bool
    ) -> list[Op[Any]]:
        """Apply ``ops`` in one transaction, isolating any op that fails.

        Every op settles its expected failures (a fenced lease, a held instance) before it
        writes anything, so those fail that op alone and the transaction goes on. An op that
        raises anything else may have written part of its changes: the transaction is rolled
        back, that op fails alone, and the others run again in a new transaction. Either way
        each op is applied entirely or not at all, and the others are unaffected.

        Returns the ops not run because the file was busy (``inline`` only; nothing of them
        was applied and they carry no outcome).
        """
        remaining = ops
        while remaining:
            outcome = self._attempt(conn, remaining, inline=inline)
            if outcome is None:
                return []
            if isinstance(outcome, _Busy):
                return remaining
            remaining = [op for op in remaining if op is not outcome]
            for op in remaining:
                op.reset()
        return []

    def _attempt(
        self, conn: sqlite3.Connection, ops: list[Op[Any]], *, inline: bool
    ) -> Op[Any] | _Busy | None:
        """One transaction over ``ops``; the op to drop when one raised unexpectedly."""
        txn = Txn(conn)
        running: Op[Any] | None = None
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if inline and schema.is_busy(exc):
                    return _BUSY
                raise
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
                running.fail(as_error(running.name, exc))
                if len(ops) > 1:
                    return running
            for op in ops:
                if not op.failed:
                    op.fail(as_error(op.name, exc))
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


def _post(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: object) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(callback, *args)


def _succeed(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)


def _fail(future: asyncio.Future[Any], error: BaseException) -> None:
    if not future.done():
        future.set_exception(error)


def reading(operation: str, fn: Callable[[], T]) -> Callable[[], T]:
    """``fn`` with ``sqlite3`` errors turned into ``StorageError``."""

    def read() -> T:
        try:
            return fn()
        except sqlite3.Error as exc:
            raise StorageError(operation=operation, cause=exc) from exc

    return read


def as_error(operation: str, exc: BaseException) -> BaseException:
    if isinstance(exc, LeaseLostError | StorageError | ValueError):
        return exc
    return StorageError(operation=operation, cause=exc)
