"""The pieces `GroupCommit` is built from: `Op`, `Txn`, the storage thread, error mapping.

An `Op` is one queued write: a function run inside a transaction, its outcome, and the
caller's future. A `Txn` is the state one transaction shares between its ops (the
store-wide generation counter). `Worker` is the thread that runs jobs in order.
"""

from __future__ import annotations

import asyncio
import contextlib
import queue
import sqlite3
import threading
from collections.abc import Callable
from typing import Any, Generic, TypeVar

from durable_effect.errors import LeaseLostError, StorageError
from durable_effect.storage import _sqlite_schema as schema

__all__ = ["Op", "Txn", "Worker", "as_error", "post", "reading", "settle_error", "settle_ok"]

T = TypeVar("T")


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


class Worker:
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


def post(loop: asyncio.AbstractEventLoop, callback: Callable[..., None], *args: object) -> None:
    with contextlib.suppress(RuntimeError):  # the loop is closed: nobody is waiting any more
        loop.call_soon_threadsafe(callback, *args)


def settle_ok(future: asyncio.Future[T], value: T) -> None:
    if not future.done():
        future.set_result(value)


def settle_error(future: asyncio.Future[Any], error: BaseException) -> None:
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
