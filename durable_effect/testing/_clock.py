"""`TestClock`: time that moves only when a test says so (never backwards, never sleeps).

It also lets `TestRuntime` tell when the alarm handlers it runs are *blocked on the clock*:
a handler runs inside a ``SleeperScope`` (a context variable), and every sleeper registered
from inside it is recorded there — except the sleeper of a pure timer task (the race timer of
``Effect.timeout``: a task whose whole coroutine is a sleep), which only races some other
work of the same handler and so never means the handler is waiting on the clock alone.
"""

from __future__ import annotations

import asyncio
import heapq
import itertools
from collections.abc import Callable
from contextvars import ContextVar
from datetime import UTC, datetime, timedelta

from durable_effect._clock import sleep_for

__all__ = ["TestClock"]

_DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


class SleeperScope:
    """The clock sleepers of one unit of work (one alarm handler of a ``TestRuntime``).

    ``blocked()`` is true while a sleeper registered by the work (timers excepted) has not
    woken: a sequential handler then waits for the clock and nothing else. ``on_sleep`` is
    called each time a sleeper is registered; ``abandoned`` marks work that a closing
    runtime gave up (its log records and recorded events are dropped).
    """

    __slots__ = ("_futures", "abandoned", "on_sleep")

    def __init__(self, on_sleep: Callable[[], None] | None = None) -> None:
        self._futures: list[asyncio.Future[None]] = []
        self.on_sleep = on_sleep
        self.abandoned = False

    def add(self, future: asyncio.Future[None]) -> None:
        """Record a sleeper of this scope."""
        self._futures = [f for f in self._futures if not f.done()]
        self._futures.append(future)
        if self.on_sleep is not None:
            self.on_sleep()

    def blocked(self) -> bool:
        """Whether a sleeper of this scope is still waiting (woken or cancelled ones are not)."""
        return any(not f.done() for f in self._futures)

    def waiting(self) -> list[asyncio.Future[None]]:
        """The sleepers of this scope still waiting."""
        return [f for f in self._futures if not f.done()]


#: The scope of the running work (set in the context of each handler task).
SCOPE: ContextVar[SleeperScope | None] = ContextVar("durable_effect_sleeper_scope", default=None)


class TestClock:
    """A manual clock: ``now()`` is what the test set; sleepers wake as it advances.

    >>> clock = TestClock(datetime(2026, 1, 1, tzinfo=UTC))
    >>> clock.advance(timedelta(minutes=5))
    >>> clock.now().isoformat()
    '2026-01-01T00:05:00+00:00'
    """

    __test__ = False

    def __init__(self, start: datetime | None = None) -> None:
        start = _DEFAULT_START if start is None else start
        if start.tzinfo is None:
            raise ValueError(f"TestClock start must be an aware datetime, got {start!r}")
        self._now = start.astimezone(UTC)
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._seq = itertools.count()

    def now(self) -> datetime:
        """The test's current instant."""
        return self._now

    async def sleep_until(self, when: datetime) -> None:
        """Wait until the clock is moved to ``when`` or later."""
        if when <= self._now:
            return
        future: asyncio.Future[None] = asyncio.get_running_loop().create_future()
        heapq.heappush(self._sleepers, (when, next(self._seq), future))
        scope = SCOPE.get()
        if scope is not None and not _in_timer_task():
            scope.add(future)
        try:
            await future
        finally:
            future.cancel()  # a no-op once woken; forgets the sleeper if the wait was interrupted

    def next_wakeup(self) -> datetime | None:
        """When the earliest sleeper wakes (``None`` without sleepers)."""
        while self._sleepers and self._sleepers[0][2].done():
            heapq.heappop(self._sleepers)
        return self._sleepers[0][0] if self._sleepers else None

    def set(self, when: datetime) -> None:
        """Move to ``when`` (``ValueError`` if that is in the past) and wake due sleepers."""
        if when.tzinfo is None:
            raise ValueError(f"TestClock.set needs an aware datetime, got {when!r}")
        if when < self._now:
            raise ValueError(f"TestClock never goes backwards: {when} < {self._now}")
        self._now = when.astimezone(UTC)
        while self._sleepers and self._sleepers[0][0] <= self._now:
            _, _, future = heapq.heappop(self._sleepers)
            if not future.done():
                future.set_result(None)

    def advance(self, delta: timedelta) -> None:
        """Move forward by ``delta``."""
        if delta < timedelta(0):
            raise ValueError(f"TestClock never goes backwards: advance({delta!r})")
        self.set(self._now + delta)


#: Coroutines that are nothing but a sleep: a task running one of them is a timer.
_TIMER_CODES = frozenset({sleep_for.__code__, TestClock.sleep_until.__code__})


def _in_timer_task() -> bool:
    """Whether the running task is a pure timer (``asyncio.ensure_future(sleep_for(d))``)."""
    task = asyncio.current_task()
    coro = None if task is None else task.get_coro()
    return getattr(coro, "cr_code", None) in _TIMER_CODES
