"""`TestClock`: time that moves only when a test says so (never backwards, never sleeps)."""

from __future__ import annotations

import asyncio
import heapq
import itertools
from datetime import UTC, datetime, timedelta

__all__ = ["TestClock"]

_DEFAULT_START = datetime(2026, 1, 1, tzinfo=UTC)


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
        await future

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
