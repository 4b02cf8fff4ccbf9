"""The `Worker`: claims due alarms and fires them, with bounded concurrency.

It sleeps until the next alarm, waking early on in-process changes (and, on PostgreSQL, on
notifications) with a polling fallback for other processes. Storage failures never crash
it: they are reported as ``worker:error`` events and retried with backoff. ``stop()``
lets in-flight handlers finish; their commits release the leases.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import signal
from collections.abc import Sequence
from typing import Any, ClassVar

import attrs

from durable_effect._backoff import Backoff
from durable_effect._events import Event, new_event_id
from durable_effect._runtime._engine import Engine
from durable_effect.errors import StorageError

__all__ = ["Worker", "WorkerError"]

_LOG = logging.getLogger("durable_effect.worker")


@attrs.frozen(kw_only=True)
class WorkerError(Event):
    """The worker could not reach storage (or another infrastructure failure)."""

    type: ClassVar[str] = "worker:error"
    owner: str
    operation: str
    error: str
    retry_in_ms: int


class Worker:
    """Fires due alarms of the jobs and workflows of one ``DurableJobs``."""

    def __init__(
        self,
        engine: Engine,
        *,
        concurrency: int = 10,
        poll_interval: float = 1.0,
        error_backoff: Backoff | None = None,
    ) -> None:
        if concurrency < 1:
            raise ValueError(f"concurrency must be at least 1, got {concurrency}")
        if poll_interval <= 0:
            raise ValueError(f"poll_interval must be positive, got {poll_interval}")
        self._engine = engine
        self.concurrency = concurrency
        self.poll_interval = poll_interval
        self._backoff = error_backoff or Backoff.exponential("50 ms", max="30 s")
        self._inflight: set[asyncio.Task[bool]] = set()
        self._stopping = asyncio.Event()
        self._running = False
        self._failures = 0
        self._signalled = 0
        self.fired = 0
        #: Whether the last ``run`` ended by ``abort()`` (in-flight handlers cancelled).
        self.aborted = False

    @property
    def owner(self) -> str:
        """The lease owner name of this worker's process."""
        return self._engine.owner

    async def run(self, *, stop_on: Sequence[int] = ()) -> None:
        """Fire alarms until ``stop()``; then wait for in-flight handlers.

        ``stop_on``: signals (``(signal.SIGINT, signal.SIGTERM)``) whose first delivery
        stops the worker as ``stop()`` does and whose second aborts it (``abort()``); the
        handlers are installed on the running loop while ``run`` runs (Unix).
        """
        if self._running:
            raise RuntimeError("this worker is already running")
        self._running = True
        self._stopping.clear()
        self.aborted = False
        loop = asyncio.get_running_loop()
        for sig in stop_on:
            loop.add_signal_handler(sig, self._on_signal, sig)
        if stop_on:  # now a signal stops it gracefully: say so
            names = "/".join(signal.Signals(sig).name for sig in stop_on)
            _LOG.info("worker %s running (%s to stop)", self.owner, names)
        indexes = loop.create_task(self._ensure_indexes())
        try:
            while not self._stopping.is_set():
                claimed_any = await self._claim_and_start()
                if self._stopping.is_set():
                    break
                if claimed_any is None:
                    continue  # storage failed; _claim_and_start already backed off
                if len(self._inflight) >= self.concurrency:
                    await asyncio.wait(self._inflight, return_when=asyncio.FIRST_COMPLETED)
                    continue
                if claimed_any:
                    continue  # maybe more are due
                await self._sleep_until_next()
        finally:
            indexes.cancel()
            if self._inflight:
                await asyncio.wait(self._inflight)
            await asyncio.gather(indexes, return_exceptions=True)
            for sig in stop_on:
                loop.remove_signal_handler(sig)
            self._signalled = 0
            self._running = False

    def _on_signal(self, sig: int) -> None:
        self._signalled += 1
        name = signal.Signals(sig).name
        if self._signalled == 1:
            inflight = len(self._inflight)
            if inflight:  # one line that fits a terminal with a timestamp before it
                _LOG.info(
                    "%s: stopping after %d in-flight handler(s); %s again aborts",
                    name,
                    inflight,
                    name,
                )
            else:
                _LOG.info("%s: stopping", name)
            self._stopping.set()
        else:
            _LOG.warning("%s again: aborting %d in-flight handler(s)", name, len(self._inflight))
            self.abort()

    async def stop(self) -> None:
        """Ask ``run()`` to return; in-flight handlers finish first."""
        self._stopping.set()

    def abort(self) -> None:
        """Make ``run()`` return now: in-flight handlers are cancelled, nothing they did is
        committed, and their leases expire by themselves (another worker takes over)."""
        self.aborted = True
        self._stopping.set()
        for task in self._inflight:
            task.cancel()

    async def run_until_idle(self, max_alarms: int | None = None) -> int:
        """Fire everything due now (never moving the clock); returns how many fired.

        It returns once nothing is due, so a job that keeps re-arming itself for the current
        instant keeps it going: with ``max_alarms``, firing more than that many raises
        ``RuntimeError`` instead. The default (``None``) sets no bound, because draining a
        real backlog may legitimately fire any number of alarms.
        """
        if max_alarms is not None and max_alarms < 0:
            raise ValueError(f"max_alarms must be at least 0, got {max_alarms}")
        await self._engine.indexes.ensure_all()
        fired = 0
        try:
            while True:
                claimed = await self._engine.claim_due(limit=self.concurrency)
                if not claimed:
                    break
                results = await asyncio.gather(*(self._engine.fire(c) for c in claimed))
                ran = sum(1 for r in results if r)
                fired += ran
                if max_alarms is not None and fired > max_alarms:
                    raise RuntimeError(
                        f"run_until_idle: more than {max_alarms} alarms fired at "
                        f"{self._engine.clock.now()}: does a job keep scheduling itself for "
                        "the current instant?"
                    )
                if ran == 0:
                    await self._engine.wait_for_change(0.01)
        finally:
            self.fired += fired
        return fired

    async def _ensure_indexes(self) -> None:
        """Beside the alarms: build the index entries a store from before indexes lacks,
        and arm the retention sweeps (``_runtime._indexes``); retried while storage fails."""
        failures = 0
        while True:
            try:
                await self._engine.indexes.ensure_all()
                return
            except StorageError as exc:
                failures += 1
                delay = self._backoff.delay(failures)
                _LOG.warning("worker: building indexes failed (%s); retrying in %s", exc, delay)
                await asyncio.sleep(delay.total_seconds())

    async def _claim_and_start(self) -> bool | None:
        free = self.concurrency - len(self._inflight)
        if free <= 0:
            return False
        try:
            claimed = await self._engine.claim_due(limit=free)
        except StorageError as exc:
            await self._report_and_back_off("claim_due", exc)
            return None
        self._failures = 0
        for item in claimed:
            task = asyncio.get_running_loop().create_task(self._engine.fire(item))
            self._inflight.add(task)
            task.add_done_callback(self._done)
        return bool(claimed)

    def _done(self, task: asyncio.Task[bool]) -> None:
        self._inflight.discard(task)
        if task.cancelled():
            return
        exc = task.exception()
        if exc is not None:
            _LOG.error("alarm handler crashed", exc_info=exc)
        elif task.result():
            self.fired += 1

    async def _sleep_until_next(self) -> None:
        try:
            nxt = await self._engine.next_alarm_at()
        except StorageError as exc:
            await self._report_and_back_off("next_alarm_at", exc)
            return
        timeout = self.poll_interval
        if nxt is not None:
            until = (nxt - self._engine.clock.now()).total_seconds()
            # A due alarm that is leased elsewhere: wait for its release (or the poll).
            timeout = min(timeout, until) if until > 0 else min(timeout, 0.05)
        change = asyncio.ensure_future(self._engine.wait_for_change(max(timeout, 0.0)))
        stopping = asyncio.ensure_future(self._stopping.wait())
        waiters: set[asyncio.Future[Any]] = {change, stopping, *self._inflight}
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        change.cancel()
        stopping.cancel()

    async def _report_and_back_off(self, operation: str, exc: StorageError) -> None:
        self._failures += 1
        delay = self._backoff.delay(self._failures)
        event = WorkerError(
            event_id=new_event_id(),
            timestamp=self._engine.clock.now(),
            owner=self._engine.owner,
            operation=operation,
            error=str(exc),
            retry_in_ms=round(delay.total_seconds() * 1000),
        )
        _LOG.warning("worker: %s failed (%s); retrying in %s", operation, exc, delay)
        self._engine.publish([event])
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._stopping.wait(), timeout=delay.total_seconds())
