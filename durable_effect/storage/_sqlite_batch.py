"""Group commit for `SqliteStorage`: the write queue, where each transaction runs, the thread.

Writes (``commit``, ``acquire``, ``extend``, ``release``, ``claim_due``) become `Op` objects.
While a transaction runs, new writes queue; when it ends, everything queued runs together in
the next transaction, and every caller resumes only after that shared ``COMMIT``. A write
that finds the queue idle and the event loop with nothing else ready runs at once, in its
caller; otherwise the queue is dispatched one turn after its first write arrived, so writes
started in the same turn (an ``asyncio.gather``) share a transaction. No timer is involved.

Every write transaction uses the one *writer* connection (its page cache stays warm). Where
it runs:

* **inline**, on the event loop — when no batch is running on the storage thread and the
  batch is small (`INLINE_WEIGHT`). The writer is at rest then: ``synchronous=OFF`` and no
  busy wait; if another process holds the write lock, ``BEGIN IMMEDIATE`` fails at once and
  the batch goes to the thread instead. That covers every batch that needs no fsync
  (lease-only batches; any batch under ``NORMAL``, whose commits never fsync either), which
  costs the loop a few tens of microseconds of CPU, less than the two thread hand-offs it
  saves, and the thread would hold the GIL for most of it anyway. A durable batch under
  ``FULL`` (``synchronous=FULL`` for that transaction) runs inline only when the loop has
  nothing else ready, so blocking it on the fsync delays nobody who is waiting now, and
  while durable commits have recently taken less than `INLINE_FSYNC_BUDGET`.
* on the **storage thread** — every other batch: a durable commit under ``FULL`` while the
  loop is busy (its fsync never blocks the loop, and the next batch gathers meanwhile), a
  large batch, a batch that found the file busy. There the thread waits up to the busy
  timeout for a busy file, retrying ``BEGIN IMMEDIATE`` itself (the writer's own busy
  timeout stays 0: no pragma is switched per batch), and the writer syncs for a durable
  commit under ``FULL``.

The writer never checkpoints; the thread does, on the *reader* connection (base settings, so
it syncs the WAL before and the database file after): the database file is only ever written
with syncing on. See `GroupCommit._wrote`. Small reads run inline on the writer too
(`GroupCommit.read`). One fenced or failing write fails alone (`GroupCommit._transact`).

After the ``COMMIT`` of every transaction with a ``commit`` in it, before any of its callers
hears "committed", the path is checked to still hold the files that were opened
(`FileWatch`): if the directory was removed, the file moved or replaced, those calls and
every later one fail with `StorageError` naming the path (`GroupCommit.lost`). Lease-only
transactions, reads, and every transaction before it starts (so that a write after such a
change is refused before it writes anything) check too, unless the last check is younger
than `FRESH_CHECK`: under load, one check per durable transaction.
"""

from __future__ import annotations

import asyncio
import contextlib
import sqlite3
import time
from collections.abc import Callable
from typing import Any, Final, Literal, TypeVar

from durable_effect.errors import LeaseLostError, StorageError
from durable_effect.storage import _sqlite_schema as schema
from durable_effect.storage._sqlite_files import FileWatch
from durable_effect.storage._sqlite_ops import (
    Op,
    Txn,
    Worker,
    as_error,
    post,
    reading,
    settle_error,
    settle_ok,
)

__all__ = ["FRESH_CHECK", "INLINE_FSYNC_BUDGET", "INLINE_WEIGHT", "TURN_EVERY", "GroupCommit"]

T = TypeVar("T")

#: The largest batch (in rows, roughly) that runs inline on the event loop: ~1-2 ms of CPU.
INLINE_WEIGHT: Final = 256
#: Estimated WAL frames after which a checkpoint is due (SQLite's automatic checkpoint
#: threshold). A transaction is estimated at one frame plus one per eight rows: about two
#: per acquire or single commit, which is what they write.
_CHECKPOINT_FRAMES: Final = 1000
#: A durable batch under FULL runs inline only while durable batches have recently taken
#: less than this (an exponential average, seconds): about the longest the loop may block on
#: an fsync, and only when nothing else is ready on it.
INLINE_FSYNC_BUDGET: Final = 0.001
#: The longest a caller whose calls run at once goes without giving the loop a turn while
#: nothing else is ready (seconds; see `GroupCommit._turn`).
TURN_EVERY: Final = 0.001
#: Seconds a check of the files is taken as still true, except after the ``COMMIT`` of a
#: transaction with a ``commit`` in it (see the module docstring).
FRESH_CHECK: Final = 0.001


class _Busy:
    """`GroupCommit._attempt` found the file locked by another writer (``error``: how)."""

    __slots__ = ("error",)

    def __init__(self, error: sqlite3.Error | None = None) -> None:
        self.error: sqlite3.Error | str = error if error is not None else "database is locked"


_BUSY: Final = _Busy()
#: Seconds the storage thread waits between tries of a busy file (SQLite's own schedule).
_BUSY_WAITS: Final = (0.001, 0.002, 0.005, 0.01, 0.015, 0.02, 0.025, 0.025, 0.025, 0.05, 0.1)


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
        self._worker: Worker | None = None
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
        self._watch: FileWatch | None = None
        self._checked_at = 0.0  # perf_counter() of the last check of the files
        self._turned_at = 0.0  # perf_counter() of the last turn given to the loop (`_turn`)
        #: Why every call fails: the path no longer holds the files opened (`FileWatch`).
        self.lost: str | None = None

    # -- lifecycle (on the loop) -----------------------------------------------------------

    async def start(self) -> None:
        """Start the thread and open both connections (migrating the schema)."""
        self._loop = asyncio.get_running_loop()
        self._worker = Worker(f"durable_effect-sqlite:{self.path}")
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
                post(loop, settle_error, future, exc)
            else:
                post(loop, settle_ok, future, value)

        worker.submit(job)
        return future

    async def read(
        self, operation: str, fn: Callable[[sqlite3.Connection], T], *, inline: bool = False
    ) -> T:
        """``fn`` over a connection: inline on the writer when ``inline`` and the queue is
        idle (a short read costs less than the thread hand-offs; the caller still yields
        once), else on the thread with the reader. ``sqlite3`` errors become
        ``StorageError``; a busy file sends an inline read to the thread.
        """
        conn = self._writer
        if self.lost is not None:
            raise StorageError(operation=operation, cause=self.lost)
        if (
            inline
            and conn is not None
            and self._inline
            and not (self._in_flight or self._pending or self._dispatch_scheduled)
        ):
            try:
                value = fn(conn)
            except sqlite3.Error as exc:
                if conn.in_transaction:
                    with contextlib.suppress(sqlite3.Error):
                        conn.execute("ROLLBACK")
                if not schema.is_busy(exc):
                    raise StorageError(operation=operation, cause=exc) from exc
            else:
                self._check_files(operation)
                await self._turn()
                return value
        value = await self.call(reading(operation, lambda: fn(self.reader())))
        self._check_files(operation)
        return value

    def _check_files(self, operation: str) -> None:
        """``StorageError`` once the path does not hold the files opened (see `lost`)."""
        problem = self._file_problem(fresh=False)
        if problem is not None:
            raise StorageError(operation=operation, cause=problem)

    def _file_problem(self, *, fresh: bool) -> str | None:
        """`lost`, set now if the path stopped holding the files opened (either side).

        Unless ``fresh``, a check younger than `FRESH_CHECK` is taken as still true.
        """
        watch = self._watch
        if self.lost is None and watch is not None:
            now = time.perf_counter()
            if fresh or now - self._checked_at >= FRESH_CHECK:
                self.lost = watch.problem()
                self._checked_at = now
        return self.lost

    async def write(self, op: Op[T]) -> T:
        """Run ``op`` in a transaction; its result once committed (or its error).

        When nothing is queued or running and the loop has nothing else ready, an op that may
        run inline runs at once, in the caller, saving the trip through the queue; the caller
        then yields to the loop once, as a queued write would, so a loop of writes never
        starves other tasks (unless nothing else is ready: `_turn`). Otherwise (or if the
        file was busy) it is queued.
        """
        if self._runs_now(op) and not self._run_inline([op]):
            if op.signals and op.applied:
                self._on_change()
            await self._turn()
            return op.outcome()
        op.future = self._running_loop().create_future()
        return await self.submit(op)

    async def _turn(self) -> None:
        """After a call that ran at once: give the loop a turn, as a queued call would.

        Skipped while nothing else is ready on the loop and it had a turn from here less than
        `TURN_EVERY` ago: the yield would resume this caller at once, after one more pass
        of the loop for nothing; the bound keeps timers and I/O from waiting longer than
        that behind a loop of such calls.
        """
        now = time.perf_counter()
        if now - self._turned_at < TURN_EVERY and self._idle():
            return
        self._turned_at = now
        await asyncio.sleep(0)

    def _runs_now(self, op: Op[Any]) -> bool:
        if self._in_flight or self._pending or self._dispatch_scheduled or self._checkpoint_due:
            return False
        return self._runs_inline([op]) and self._idle()

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
            post(loop, self._batch_done, ops, seconds)

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
            cost = self._fsync_cost
            return cost < INLINE_FSYNC_BUDGET and self._idle() and self._no_timer_within(cost)
        return True

    def _idle(self) -> bool:
        """Whether the loop has no other callback ready: blocking it delays nobody now.

        Reads the ready queue of asyncio's own loops; other loops (uvloop) have none to read,
        and count as busy.
        """
        ready = getattr(self._loop, "_ready", None)
        return ready is not None and len(ready) == 0

    def _no_timer_within(self, seconds: float) -> bool:
        """Whether no timer of the loop is due in the next ``seconds`` (asyncio's loops only;
        a cancelled timer still counts)."""
        loop = self._loop
        scheduled = getattr(loop, "_scheduled", None)
        if loop is None or scheduled is None:
            return False
        return not scheduled or scheduled[0].when() > loop.time() + seconds

    def _note_fsync(self, seconds: float) -> None:
        self._fsync_cost += (seconds - self._fsync_cost) / 4

    def _run_inline(self, ops: list[Op[Any]]) -> list[Op[Any]]:
        """Run ``ops`` on the loop; the ops left for the thread (the file was busy).

        A durable batch under ``FULL`` syncs for its transaction; if the writer cannot be
        switched to syncing, the ops fail and nothing is written; if it cannot be switched
        back, no batch runs inline any more (it would fsync on the loop every time).
        """
        conn = self._writer
        assert conn is not None
        durable = self._full and any(op.durable for op in ops)
        started = time.perf_counter()
        if durable:
            try:
                conn.execute("PRAGMA synchronous = FULL")
            except sqlite3.Error as exc:
                for op in ops:
                    op.fail(StorageError(operation=op.name, cause=exc))
                return []
        try:
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
                    self._inline = False
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
                post(loop, self._checkpointed)

            worker.submit(job)

    def _checkpointed(self) -> None:
        self._checkpointing = False
        self._checkpoint_due = True  # the second step, at the next dispatch
        if not (self._in_flight or self._dispatch_scheduled) and self._pending:
            self._dispatch_scheduled = True
            self._running_loop().call_soon(self._dispatch)

    def _checkpoint_now(self, worker: Worker) -> None:
        """The second step of a checkpoint: on the thread, with no write running."""
        self._checkpoint_due = False
        self._in_flight = True
        loop = self._running_loop()

        def job() -> None:
            self._checkpoint()
            post(loop, self._batch_done, [])

        worker.submit(job)

    # -- the storage thread ----------------------------------------------------------------

    def _connect(self) -> None:
        """Open the reader, then the writer; then note which files they opened."""
        reader = schema.connect_reader(self.path, self.synchronous, self.busy_timeout_ms)
        try:
            writer = schema.connect_writer(self.path)
        except BaseException:
            reader.close()
            raise
        try:
            watch = FileWatch(self.path)
        except BaseException:
            writer.close()
            reader.close()
            raise
        self._reader, self._writer = reader, writer
        self._watch, self.lost = watch, None

    def _unwatch(self) -> None:
        watch, self._watch = self._watch, None
        if watch is not None:
            watch.close()

    def _disconnect(self) -> None:
        self._unwatch()
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
        if durable:
            try:
                conn.execute("PRAGMA synchronous = FULL")
            except sqlite3.Error as exc:
                for op in ops:
                    op.fail(StorageError(operation=op.name, cause=exc))
                return
        try:
            self._transact(conn, ops, inline=False)
        finally:
            if durable:
                try:
                    conn.execute("PRAGMA synchronous = OFF")
                except sqlite3.Error:
                    self._inline = False  # it might fsync on the loop: keep it here

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
        waits = iter(_BUSY_WAITS)
        waited = 0.0
        while remaining:
            outcome = self._attempt(conn, remaining, inline=inline)
            if outcome is None:
                return []
            if isinstance(outcome, _Busy):
                if inline:
                    return remaining
                # The thread waits for the file itself (the writer's busy timeout stays 0,
                # so no pragma is switched per batch), as SQLite's busy handler would.
                limit = self.busy_timeout_ms / 1000
                if waited >= limit:
                    for op in remaining:
                        op.fail(StorageError(operation=op.name, cause=outcome.error))
                    return []
                pause = min(next(waits, _BUSY_WAITS[-1]), limit - waited)
                time.sleep(pause)
                waited += pause
            else:
                remaining = [op for op in remaining if op is not outcome]
            for op in remaining:
                op.reset()
        return []

    def _attempt(
        self, conn: sqlite3.Connection, ops: list[Op[Any]], *, inline: bool
    ) -> Op[Any] | _Busy | None:
        """One transaction over ``ops``; the op to drop when one raised unexpectedly, or
        `_Busy` (nothing applied) when the file was busy: at ``BEGIN`` inline, at any
        statement on the thread (which waits and tries again, as a busy timeout would)."""
        lost = self._file_problem(fresh=False)
        if lost is not None:
            for op in ops:
                op.fail(StorageError(operation=op.name, cause=lost))
            return None
        txn = Txn(conn)
        running: Op[Any] | None = None
        try:
            try:
                conn.execute("BEGIN IMMEDIATE")
            except sqlite3.OperationalError as exc:
                if schema.is_busy(exc):
                    return _BUSY if inline else _Busy(exc)
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
            # Before anybody hears "committed": fresh for commits, a lease may take the last.
            problem = self._file_problem(fresh=any(op.durable for op in ops))
        except Exception as exc:
            if conn.in_transaction:
                with contextlib.suppress(sqlite3.Error):
                    conn.execute("ROLLBACK")
            if not inline and isinstance(exc, sqlite3.OperationalError) and schema.is_busy(exc):
                return _Busy(exc)  # nothing was committed: the thread tries it all again
            if running is not None:
                running.fail(as_error(running.name, exc))
                if len(ops) > 1:
                    return running
            for op in ops:
                if not op.failed:
                    op.fail(as_error(op.name, exc))
            return None
        if problem is not None:  # committed into a file that is not at the path any more
            for op in ops:
                if not op.failed:
                    op.fail(StorageError(operation=op.name, cause=problem))
            return None
        self.transactions_committed += 1
        return None
