"""`TestRuntime` and `RecordingTracker`: run jobs in tests with time under the test's control.

``advance(d)`` fires every alarm due up to ``now + d`` in time order, with the clock set to
each alarm's instant as it fires; ``run_until_idle()`` fires what is due now and never moves
the clock. Nothing sleeps.

Alarm handlers run as tasks, like a worker's. A handler may itself wait on the clock
(``Effect.sleep``, ``.timeout``, a retry delay inside ``execute`` or a workflow step): the
runtime moves time like Effect-TS's ``TestClock``. At each instant it fires what is due, then
waits until every running handler has **finished or is blocked on the clock**, and only then
moves the clock to the earliest next event — an alarm or a clock sleeper — up to the target.

"Blocked on the clock" is decided, not guessed: each handler task runs in a ``SleeperScope``
(a context variable) in which the ``TestClock`` records the sleepers the handler registers
(the race timer of ``Effect.timeout`` excepted: it only races other work of the handler). A
handler with a sleeper still waiting cannot make progress before the clock moves; a handler
without one is working (on storage I/O, say), and the runtime waits for it — woken by the
handler's end or by its next sleeper, never by polling real time. While handlers hold their
leases across clock moves the runtime renews them in clock time, as the engine's renewal
would in real time. A handler still sleeping at the target stays pending and goes on in a
later ``advance``; ``aclose()`` abandons such handlers as a crash would (their leases are
released first, so nothing they would still do is committed).
"""

from __future__ import annotations

import asyncio
import contextlib
import contextvars
import logging
from collections.abc import Mapping, Sequence
from datetime import datetime, timedelta
from types import TracebackType
from typing import Any

from durable_effect._client._jobs_client import JobsClient
from durable_effect._duration import Duration
from durable_effect._events import Event
from durable_effect._jobs import DurableJobs
from durable_effect._runtime._engine import DEFAULT_LEASE_TTL
from durable_effect.errors import LeaseLostError, StorageError
from durable_effect.jobs._base import JobDefinition
from durable_effect.storage import Claimed, Lease, Storage
from durable_effect.testing._clock import SCOPE, SleeperScope, TestClock

__all__ = ["RecordingTracker", "TestRuntime"]

_LOG = logging.getLogger("durable_effect")
#: How many times one instant retries alarms skipped because their instance was busy in
#: this process (a client call holding it), 10 ms apart, before moving on.
_BUSY_RETRIES = 50
#: Instances read per page when looking for the next alarm behind a held one.
_SCAN_PAGE = 500
#: Real seconds between re-checks while handlers work (each end or new sleeper wakes it).
_RECHECK = 0.5
#: Real seconds ``run_until_idle`` waits for someone else to move the clock for handlers
#: blocked on it, before it raises.
_STALL_GRACE = 1.0


class RecordingTracker:
    """A tracker that keeps every event it receives, in order, in ``events``."""

    __test__ = False

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = False

    def handle(self, event: Event) -> None:
        """Record ``event`` (not those of a handler abandoned by a closing ``TestRuntime``)."""
        scope = SCOPE.get()
        if scope is not None and scope.abandoned:
            return
        self.events.append(event)

    async def aclose(self) -> None:
        """Mark closed (nothing to flush)."""
        self.closed = True

    def of_type(self, event_type: str) -> list[Event]:
        """The recorded events of one type."""
        return [e for e in self.events if e.type == event_type]


class _Handler:
    """One alarm handler running as a task, with its lease and its clock sleepers."""

    __slots__ = ("instance_id", "lease", "scope", "task")

    def __init__(self, claimed: Claimed, scope: SleeperScope, task: asyncio.Task[bool]) -> None:
        self.instance_id = claimed.lease.instance_id
        self.lease: Lease = claimed.lease
        self.scope = scope
        self.task = task


class _DropAbandoned(logging.Filter):
    """Drops the log records of abandoned handlers (they describe work never committed)."""

    def filter(self, record: logging.LogRecord) -> bool:
        scope = SCOPE.get()
        return scope is None or not scope.abandoned


class TestRuntime:
    """Registered jobs on a ``TestClock`` (memory storage by default).

    >>> import asyncio
    >>> async def demo() -> str:
    ...     async with TestRuntime({}) as rt:
    ...         await rt.advance("1 hour")
    ...         return rt.clock.now().isoformat()
    >>> asyncio.run(demo())
    '2026-01-01T01:00:00+00:00'
    """

    __test__ = False

    def __init__(
        self,
        definitions: Mapping[str, JobDefinition],
        *,
        storage: str | Storage = "memory://",
        start: datetime | None = None,
        lease_ttl: timedelta | None = None,
    ) -> None:
        self.clock = TestClock(start)
        self.tracker = RecordingTracker()
        self.jobs = DurableJobs(
            definitions,
            storage=storage,
            clock=self.clock,
            tracker=self.tracker,
            lease_ttl=DEFAULT_LEASE_TTL if lease_ttl is None else lease_ttl,
        )
        self._worker = self.jobs.worker(concurrency=64)
        self._handlers: dict[asyncio.Task[bool], _Handler] = {}
        self._fired = 0  # handlers that ran (``fire`` gave True), over the runtime's life
        self._signal: asyncio.Future[None] | None = None  # resolved by a handler's new sleeper

    @property
    def client(self) -> JobsClient:
        """The typed client."""
        return self.jobs.client

    @property
    def events(self) -> list[Event]:
        """Every event emitted so far, in order."""
        return self.tracker.events

    # -- the two ways to run ---------------------------------------------------------------

    async def run_until_idle(self, max_alarms: int = 10_000) -> int:
        """Fire every alarm due now (clock unchanged); returns how many fired.

        ``RuntimeError`` when more than ``max_alarms`` fire (a job re-arming itself for the
        current instant), or when a handler it fired waits on the clock (``Effect.sleep``
        inside a handler) and nobody moves the clock within a second: only ``advance`` (or
        the test, moving ``clock`` meanwhile) lets it wake; the handler stays pending.
        """
        await self._ready()
        before = self._fired
        earlier = set(self._handlers)
        while True:
            await self._drain_now(max_alarms)
            stalled = [h for t, h in self._handlers.items() if t not in earlier]
            if not stalled:
                break
            # Somebody else may move the clock (a test driving ``rt.clock`` by hand while
            # this runs as a task): give them a moment before calling it a stall.
            waiters: set[asyncio.Future[Any]] = {h.task for h in stalled}
            waiters.update(f for h in stalled for f in h.scope.waiting())
            done, _ = await asyncio.wait(
                waiters, timeout=_STALL_GRACE, return_when=asyncio.FIRST_COMPLETED
            )
            if not done:
                ids = ", ".join(sorted(h.instance_id for h in stalled))
                raise RuntimeError(
                    f"run_until_idle: {len(stalled)} alarm handler(s) ({ids}) wait on the "
                    "TestClock (an Effect.sleep, .timeout or retry delay inside the handler) "
                    "and run_until_idle never moves the clock: use `await rt.advance(...)` "
                    "to let time pass (the handlers stay pending until then)"
                )
        await _settle()
        return self._fired - before

    async def advance(
        self, duration: timedelta | int | float | str, *, max_alarms: int = 10_000
    ) -> int:
        """Move time forward, firing alarms (and waking clock sleepers) in time order.

        Returns how many alarm handlers finished meanwhile. ``max_alarms`` bounds the alarms
        fired at any one instant (``RuntimeError`` past it).
        """
        await self._ready()
        target = self.clock.now() + Duration.parse(duration)
        before = self._fired
        while True:
            await self._drain_now(max_alarms)
            nxt = await self._next_instant(target)
            if nxt is None:
                break
            await self._move_to(nxt)
        if self.clock.now() < target:
            await self._move_to(target)
            await self._drain_now(max_alarms)
        await _settle()
        return self._fired - before

    # -- lifecycle -------------------------------------------------------------------------

    async def aclose(self) -> None:
        """Abandon handlers still waiting on the clock, then close storage."""
        try:
            await self._abandon()
        finally:
            await self.jobs.aclose()

    async def __aenter__(self) -> TestRuntime:
        await self._ready()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    # -- internals -------------------------------------------------------------------------

    async def _ready(self) -> None:
        """Open storage, and make sure the jobs' index entries are there (as a worker does
        when it starts: it also arms the retention sweeps)."""
        await self.jobs.open()
        await self.jobs.engine.indexes.ensure_all()

    async def _drain_now(self, max_alarms: int) -> None:
        """Fire what is due at the current instant until nothing more is, every handler
        having finished or being blocked on the clock."""
        engine = self.jobs.engine
        first = self._fired
        busy_rounds = 0
        while True:
            self._reap()
            ran_before = self._fired
            free = self._worker.concurrency - len(self._handlers)
            claimed: Sequence[Claimed] = ()
            if free > 0:
                claimed = await engine.claim_due(limit=free)
            batch = [self._start(c) for c in claimed]
            await self._quiesce()
            if self._fired - first > max_alarms:
                raise RuntimeError(
                    f"more than {max_alarms} alarms fired at {self.clock.now()}: "
                    "does a job keep scheduling itself for the current instant?"
                )
            if self._fired != ran_before:
                continue  # a handler ran: it may have set an alarm for now
            if not batch:
                break
            if all(_skipped(task) for task in batch):
                # Every claimed instance was busy here (a client call holds it): its alarm
                # is due again once the call releases it.
                busy_rounds += 1
                if busy_rounds > _BUSY_RETRIES:
                    break
                await engine.wait_for_change(0.01)
        await _settle()  # other tasks (a client call, a test's waiter) reach their next wait

    def _start(self, claimed: Claimed) -> asyncio.Task[bool]:
        """Fire one claimed alarm as a task, in a scope of its own."""
        scope = SleeperScope(self._on_sleep)
        context = contextvars.copy_context()
        context.run(SCOPE.set, scope)
        task = asyncio.get_running_loop().create_task(
            self.jobs.engine.fire(claimed), context=context
        )
        self._handlers[task] = _Handler(claimed, scope, task)
        return task

    def _on_sleep(self) -> None:
        signal = self._signal
        if signal is not None and not signal.done():
            signal.set_result(None)

    def _reap(self) -> None:
        """Forget finished handlers, counting those that ran; re-raise a crash of one."""
        crashed: BaseException | None = None
        for task in [t for t in self._handlers if t.done()]:
            del self._handlers[task]
            if task.cancelled():
                continue
            exc = task.exception()
            if exc is not None:
                crashed = crashed or exc
            elif task.result():
                self._fired += 1
                self._worker.fired += 1
        if crashed is not None:
            raise crashed

    async def _quiesce(self) -> None:
        """Wait until every running handler has finished or is blocked on the clock."""
        loop = asyncio.get_running_loop()
        while True:
            self._reap()
            working = [t for t, h in self._handlers.items() if not h.scope.blocked()]
            if not working:
                return
            signal: asyncio.Future[None] = loop.create_future()
            self._signal = signal
            try:
                waiters: set[asyncio.Future[Any]] = {*working, signal}
                await asyncio.wait(waiters, timeout=_RECHECK, return_when=asyncio.FIRST_COMPLETED)
            finally:
                self._signal = None
                signal.cancel()

    async def _next_instant(self, target: datetime) -> datetime | None:
        """The earliest alarm or clock sleeper after now, if it is no later than ``target``."""
        now = self.clock.now()
        candidates = [
            t
            for t in (await self._next_alarm_after(now), self.clock.next_wakeup())
            if t is not None and now < t <= target
        ]
        return min(candidates, default=None)

    async def _next_alarm_after(self, now: datetime) -> datetime | None:
        """The earliest alarm after ``now``.

        ``next_alarm_at`` gives the earliest alarm of all; when that one is due but held (a
        running handler's, or another process's), the later ones are found by a scan.
        """
        storage = self.jobs.storage
        first = await storage.next_alarm_at()
        if first is None or first > now:
            return first
        best: datetime | None = None
        after: str | None = None
        while True:
            ids = await storage.list_instances("", after=after, limit=_SCAN_PAGE)
            if not ids:
                return best
            for snapshot in (await storage.load(ids)).values():
                when = snapshot.alarm_at
                if when is not None and when > now and (best is None or when < best):
                    best = when
            if len(ids) < _SCAN_PAGE:
                return best
            after = ids[-1]

    async def _move_to(self, when: datetime) -> None:
        """Renew the leases of running handlers up to ``when``, then move the clock there."""
        engine = self.jobs.engine
        for handler in list(self._handlers.values()):
            if handler.task.done() or handler.lease.expires_at > when:
                continue
            # Taken over or unreachable: the handler's commit will be refused.
            with contextlib.suppress(LeaseLostError, StorageError):
                handler.lease = await engine.extend(handler.lease, now=when)
        self.clock.set(when)
        await _settle()

    async def _abandon(self) -> None:
        """Give up the handlers still running (blocked on the clock), as a crash would."""
        handlers = list(self._handlers.values())
        self._handlers.clear()
        if not handlers:
            return
        for handler in handlers:
            handler.scope.abandoned = True
        quiet = _DropAbandoned()
        _LOG.addFilter(quiet)
        try:
            with contextlib.suppress(StorageError):
                await self.jobs.storage.release([h.lease for h in handlers])
            for handler in handlers:
                handler.task.cancel()
            await asyncio.gather(*(h.task for h in handlers), return_exceptions=True)
            await _settle()  # the inner tasks of interrupted timeouts end too
        finally:
            _LOG.removeFilter(quiet)


def _skipped(task: asyncio.Task[bool]) -> bool:
    """Whether a finished handler task was skipped (its instance was busy here)."""
    return task.done() and not task.cancelled() and task.exception() is None and not task.result()


async def _settle() -> None:
    """Let woken tasks run before the next step (a few loop iterations, no real time)."""
    for _ in range(5):
        await asyncio.sleep(0)
