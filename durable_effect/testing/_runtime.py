"""`TestRuntime` and `RecordingTracker`: run jobs in tests with time under the test's control.

``advance(d)`` fires every alarm due up to ``now + d`` in time order, with the clock set to
each alarm's instant as it fires; ``run_until_idle()`` fires what is due now and never moves
the clock. Nothing sleeps.
"""

from __future__ import annotations

import asyncio
from collections.abc import Mapping
from datetime import datetime, timedelta
from types import TracebackType

from durable_effect._client._jobs_client import JobsClient
from durable_effect._duration import Duration
from durable_effect._events import Event
from durable_effect._jobs import DurableJobs
from durable_effect.jobs._base import JobDefinition
from durable_effect.storage import Storage
from durable_effect.testing._clock import TestClock

__all__ = ["RecordingTracker", "TestRuntime"]


class RecordingTracker:
    """A tracker that keeps every event it receives, in order, in ``events``."""

    __test__ = False

    def __init__(self) -> None:
        self.events: list[Event] = []
        self.closed = False

    def handle(self, event: Event) -> None:
        """Record ``event``."""
        self.events.append(event)

    async def aclose(self) -> None:
        """Mark closed (nothing to flush)."""
        self.closed = True

    def of_type(self, event_type: str) -> list[Event]:
        """The recorded events of one type."""
        return [e for e in self.events if e.type == event_type]


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
        extra = {} if lease_ttl is None else {"lease_ttl": lease_ttl}
        self.jobs = DurableJobs(
            definitions, storage=storage, clock=self.clock, tracker=self.tracker, **extra
        )
        self._worker = self.jobs.worker(concurrency=64)

    @property
    def client(self) -> JobsClient:
        """The typed client."""
        return self.jobs.client

    @property
    def events(self) -> list[Event]:
        """Every event emitted so far, in order."""
        return self.tracker.events

    async def run_until_idle(self, max_alarms: int = 10_000) -> int:
        """Fire every alarm due now (clock unchanged); returns how many fired."""
        await self.jobs.open()
        engine = self.jobs.engine
        fired = 0
        # One claim batch at a time (not ``Worker.run_until_idle``, which only returns once
        # nothing is due: a job re-arming at the current instant would never let it return).
        while True:
            claimed = await engine.storage.claim_due(
                now=self.clock.now(),
                owner=engine.owner,
                ttl=engine.lease_ttl,
                limit=self._worker.concurrency,
            )
            if not claimed:
                break
            ran = sum(await asyncio.gather(*(engine.fire(c) for c in claimed)))
            fired += ran
            self._worker.fired += ran
            if fired > max_alarms:
                raise RuntimeError(
                    f"more than {max_alarms} alarms fired at {self.clock.now()}: "
                    "does a job keep scheduling itself for the current instant?"
                )
            if ran == 0:  # every claimed instance was busy here: wait for its release
                await engine.storage.wait_for_change(0.01)
        await _settle()
        return fired

    async def advance(self, duration: timedelta | int | float | str) -> int:
        """Move time forward, firing alarms (and waking clock sleepers) in time order."""
        await self.jobs.open()
        target = self.clock.now() + Duration.parse(duration)
        fired = await self.run_until_idle()
        while True:
            now = self.clock.now()
            candidates = [
                t
                for t in (await self.jobs.storage.next_alarm_at(), self.clock.next_wakeup())
                if t is not None and now < t <= target
            ]
            if not candidates:
                break  # nothing left before target (a due alarm still leased waits for it)
            self.clock.set(min(candidates))
            await _settle()
            fired += await self.run_until_idle()
        self.clock.set(target)
        await _settle()
        fired += await self.run_until_idle()
        return fired

    async def aclose(self) -> None:
        """Close storage."""
        await self.jobs.aclose()

    async def __aenter__(self) -> TestRuntime:
        await self.jobs.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()


async def _settle() -> None:
    """Let woken tasks run before the next step (a few loop iterations, no real time)."""
    for _ in range(5):
        await asyncio.sleep(0)
