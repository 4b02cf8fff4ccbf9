"""`create_durable_jobs` and `DurableJobs`: the registry, storage, clock and trackers together."""

from __future__ import annotations

import asyncio
import os
import socket
import uuid
from collections.abc import Callable, Mapping, Sequence
from datetime import timedelta
from types import TracebackType

from durable_effect._client._jobs_client import JobsClient
from durable_effect._clock import Clock
from durable_effect._events import Event, Tracker
from durable_effect._failure_log import FAILURE_EVENTS, FailureLog
from durable_effect._runtime._bus import EventBus
from durable_effect._runtime._engine import DEFAULT_LEASE_TTL, Engine
from durable_effect._runtime._registry import Registry
from durable_effect._system_clock import SystemClock
from durable_effect._worker import Worker
from durable_effect.jobs._base import JobDefinition
from durable_effect.storage import Storage, open_storage

__all__ = [
    "DEFAULT_STORAGE",
    "STORAGE_ENV",
    "DurableJobs",
    "create_durable_jobs",
    "default_storage_url",
]

#: The storage of a ``create_durable_jobs`` given none and no ``DURABLE_EFFECT_STORAGE``.
DEFAULT_STORAGE = "sqlite:///durable_effect.db"
#: The environment variable naming the storage URL when ``storage=`` is not given.
STORAGE_ENV = "DURABLE_EFFECT_STORAGE"


def default_storage_url() -> str:
    """``$DURABLE_EFFECT_STORAGE`` if set (and not empty), else ``sqlite:///durable_effect.db``."""
    return os.environ.get(STORAGE_ENV) or DEFAULT_STORAGE


def _owner_name() -> str:
    return f"{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"


class DurableJobs:
    """Registered jobs on one storage. Use ``async with`` (or ``aclose()``) to close it.

    ``client`` gives typed handles; ``worker()`` fires alarms; ``on()`` subscribes to events.
    """

    def __init__(
        self,
        definitions: Mapping[str, JobDefinition],
        *,
        storage: str | Storage | None = None,
        clock: Clock | None = None,
        tracker: Tracker | Sequence[Tracker] | None = None,
        lease_ttl: timedelta = DEFAULT_LEASE_TTL,
        event_feed: bool = True,
    ) -> None:
        self.registry = Registry(definitions)
        if storage is None:
            storage = default_storage_url()
        self.storage: Storage = open_storage(storage) if isinstance(storage, str) else storage
        self.clock: Clock = clock if clock is not None else SystemClock()
        trackers: list[Tracker]
        if tracker is None:
            trackers = []
        elif isinstance(tracker, Sequence):
            trackers = list(tracker)
        else:
            trackers = [tracker]
        self.bus = EventBus(trackers)
        levels = {name: definition.log_level for name, definition in self.registry}
        failures = FailureLog(levels.get)
        for event_type in FAILURE_EVENTS:
            self.bus.on(event_type, failures)
        self.engine = Engine(
            storage=self.storage,
            clock=self.clock,
            registry=self.registry,
            bus=self.bus,
            owner=_owner_name(),
            lease_ttl=lease_ttl,
            feed=event_feed,
        )
        self._opened = False
        self._open_lock: asyncio.Lock | None = None
        self.client = JobsClient(self._opened_engine, self.registry)

    async def _opened_engine(self) -> Engine:
        if not self._opened:
            await self.open()
        return self.engine

    async def open(self) -> None:
        """Open storage (create or migrate the schema). Idempotent; called on first use."""
        if self._opened:
            return
        if self._open_lock is None:
            self._open_lock = asyncio.Lock()
        async with self._open_lock:
            if not self._opened:
                await self.storage.open()
                self._opened = True

    async def aclose(self) -> None:
        """Flush trackers, release the leases the engine keeps, and close storage."""
        for tracker in self.bus.trackers:
            await tracker.aclose()
        if self._opened:
            await self.engine.close()
            await self.storage.close()
            self._opened = False

    async def __aenter__(self) -> DurableJobs:
        await self.open()
        return self

    async def __aexit__(
        self,
        exc_type: type[BaseException] | None,
        exc: BaseException | None,
        tb: TracebackType | None,
    ) -> None:
        await self.aclose()

    def on(self, event_type: str, listener: Callable[[Event], object]) -> Callable[[], None]:
        """Call ``listener`` with every event of ``event_type`` (``"*"``: all); returns off()."""
        return self.bus.on(event_type, listener)

    def worker(self, concurrency: int = 10, *, poll_interval: float = 1.0) -> Worker:
        """A worker that fires this registry's alarms (``await worker.run()``)."""
        return _OpeningWorker(self, concurrency=concurrency, poll_interval=poll_interval)


class _OpeningWorker(Worker):
    def __init__(self, jobs: DurableJobs, *, concurrency: int, poll_interval: float) -> None:
        super().__init__(jobs.engine, concurrency=concurrency, poll_interval=poll_interval)
        self._jobs = jobs

    async def run(self, *, stop_on: Sequence[int] = ()) -> None:
        await self._jobs.open()
        await super().run(stop_on=stop_on)

    async def run_until_idle(self, max_alarms: int | None = None) -> int:
        await self._jobs.open()
        return await super().run_until_idle(max_alarms)


def create_durable_jobs(
    definitions: Mapping[str, JobDefinition],
    *,
    storage: str | Storage | None = None,
    clock: Clock | None = None,
    tracker: Tracker | Sequence[Tracker] | None = None,
    lease_ttl: timedelta = DEFAULT_LEASE_TTL,
    event_feed: bool = True,
) -> DurableJobs:
    """Register ``definitions`` (name → definition) on ``storage``; nothing is opened yet.

    ``storage`` is a URL (``sqlite:///path.db``, ``memory://``, ``postgresql://…``) or a
    ``Storage``. Not given: the URL in ``$DURABLE_EFFECT_STORAGE``, else
    ``sqlite:///durable_effect.db`` in the working directory. Bad names or definitions
    raise at once. ``event_feed``: every commit also appends its events to the storage's
    feed (the newest 10,000 are kept), which ``durable_effect.web`` streams to dashboards in
    any process.
    """
    return DurableJobs(
        definitions,
        storage=storage,
        clock=clock,
        tracker=tracker,
        lease_ttl=lease_ttl,
        event_feed=event_feed,
    )
