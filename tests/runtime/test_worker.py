"""`Worker`: a real worker loop with the system clock on a SQLite file.

The live tests pass real time (each well under 2 s) and only ever wait, bounded, for a
condition to become true.
"""

from __future__ import annotations

import asyncio
import os
import shutil
import signal
from collections.abc import AsyncIterator, Callable, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path

import pytest

from durable_effect import StorageError
from durable_effect._events import Event
from durable_effect._jobs import DurableJobs, create_durable_jobs
from durable_effect._worker import Worker, WorkerError
from durable_effect.jobs._instance import InstanceTx
from durable_effect.storage import Claimed, SqliteStorage
from durable_effect.testing._clock import TestClock
from tests.runtime._support import T0, TTL, CounterJob, ref, schedule

live = pytest.mark.live


async def eventually(condition: Callable[[], bool], timeout: float, what: str) -> float:
    """Wait (bounded, polling every 5 ms) until ``condition()``; the seconds it took."""
    loop = asyncio.get_running_loop()
    start = loop.time()
    while not condition():
        if loop.time() - start > timeout:
            raise AssertionError(f"timed out after {timeout} s waiting for {what}")
        await asyncio.sleep(0.005)
    return loop.time() - start


@asynccontextmanager
async def running(worker: Worker) -> AsyncIterator[asyncio.Task[None]]:
    """Run ``worker`` in a task; stop it (and wait, bounded) on exit."""
    task = asyncio.create_task(worker.run())
    try:
        yield task
    finally:
        await worker.stop()
        await asyncio.wait_for(task, timeout=5)


def sqlite_jobs(path: Path, job: CounterJob) -> DurableJobs:
    return create_durable_jobs({"tick": job}, storage=f"sqlite:///{path}")


class Gate:
    """Alarm handlers that wait on one event; counts how many run at once."""

    def __init__(self) -> None:
        self.open = asyncio.Event()
        self.active = 0
        self.peak = 0
        self.entered = 0

    async def hook(self, tx: InstanceTx, due_at: datetime) -> None:
        self.active += 1
        self.entered += 1
        self.peak = max(self.peak, self.active)
        try:
            await self.open.wait()
        finally:
            self.active -= 1


# -- firing ----------------------------------------------------------------------------------


@live
async def test_worker_fires_due_alarms_and_never_early(tmp_path: Path) -> None:
    job = CounterJob()
    async with sqlite_jobs(tmp_path / "w.db", job) as jobs:
        now = jobs.clock.now()
        await schedule(jobs.engine, [ref("soon")], now + timedelta(milliseconds=200))
        await schedule(jobs.engine, [ref("overdue")], now - timedelta(seconds=1))
        async with running(jobs.worker(concurrency=4, poll_interval=1.0)):
            await eventually(lambda: len(job.fired) == 2, 2.0, "both alarms")
        snaps = await jobs.storage.load(["counter:tick:soon", "counter:tick:overdue"])

    assert [f.instance_id for f in job.fired] == ["counter:tick:overdue", "counter:tick:soon"]
    for fired in job.fired:
        assert fired.now >= fired.due_at, "an alarm fired early"
    soon = job.fired[1]
    assert soon.now - soon.due_at < timedelta(milliseconds=500)
    assert all(s.records == {"n": b"1"} and s.alarm_at is None for s in snaps.values())


@live
async def test_worker_never_runs_more_than_its_concurrency(tmp_path: Path) -> None:
    gate = Gate()
    job = CounterJob(hook=gate.hook)
    async with sqlite_jobs(tmp_path / "w.db", job) as jobs:
        refs = [ref(f"i{n}") for n in range(8)]
        await schedule(jobs.engine, refs, jobs.clock.now())
        async with running(jobs.worker(concurrency=3, poll_interval=0.2)):
            await eventually(lambda: gate.active == 3, 1.0, "three handlers running")
            await asyncio.sleep(0.15)  # time for a (wrong) fourth claim
            assert (gate.active, gate.peak, gate.entered) == (3, 3, 3)
            gate.open.set()
            await eventually(lambda: len(job.fired) == 8, 1.5, "all eight alarms")
        snaps = await jobs.storage.load([r.instance_id for r in refs])

    assert gate.peak == 3
    assert all(s.records == {"n": b"1"} for s in snaps.values())


@live
async def test_stop_lets_in_flight_handlers_finish_and_commit(tmp_path: Path) -> None:
    gate = Gate()
    job = CounterJob(hook=gate.hook)
    async with sqlite_jobs(tmp_path / "w.db", job) as jobs:
        await schedule(jobs.engine, [ref("a"), ref("b")], jobs.clock.now())
        worker = jobs.worker(concurrency=4, poll_interval=0.2)
        task = asyncio.create_task(worker.run())
        await eventually(lambda: gate.active == 2, 1.0, "two handlers running")

        await worker.stop()
        await schedule(jobs.engine, [ref("late")], jobs.clock.now())  # must not be claimed
        await asyncio.sleep(0.1)
        assert not task.done(), "run() returned while handlers were still running"
        gate.open.set()
        await asyncio.wait_for(task, timeout=1.0)

        ids = ["counter:tick:a", "counter:tick:b", "counter:tick:late"]
        snaps = await jobs.storage.load(ids)
        free = await jobs.storage.acquire(ids, owner="probe", now=jobs.clock.now(), ttl=TTL)

    assert snaps["counter:tick:a"].records == {"n": b"1"}
    assert snaps["counter:tick:b"].records == {"n": b"1"}
    assert snaps["counter:tick:a"].alarm_at is None
    assert snaps["counter:tick:late"].alarm_at is not None  # never fired
    assert free is not None, "leases were left behind"
    assert worker.fired == 2


@live
async def test_idle_worker_wakes_promptly_on_an_in_process_change(tmp_path: Path) -> None:
    job = CounterJob()
    async with sqlite_jobs(tmp_path / "w.db", job) as jobs:
        await schedule(jobs.engine, [ref("far")], jobs.clock.now() + timedelta(hours=1))
        async with running(jobs.worker(concurrency=2, poll_interval=5.0)):
            await asyncio.sleep(0.2)  # the worker is now asleep (up to its 5 s poll)
            loop = asyncio.get_running_loop()
            scheduled = loop.time()
            await schedule(jobs.engine, [ref("a")], jobs.clock.now() + timedelta(milliseconds=100))
            await eventually(lambda: len(job.fired) == 1, 1.5, "the new alarm")
            took = loop.time() - scheduled

    assert 0.1 <= took < 1.0
    assert job.fired[0].now >= job.fired[0].due_at


# -- storage errors --------------------------------------------------------------------------


class FlakyStorage(SqliteStorage):
    """``claim_due`` raises ``StorageError`` the first ``failures`` times; counts calls."""

    def __init__(self, path: Path, failures: int) -> None:
        super().__init__(path)
        self.failures = failures
        self.claims = 0

    async def claim_due(
        self, *, now: datetime, owner: str, ttl: timedelta, limit: int
    ) -> Sequence[Claimed]:
        self.claims += 1
        if self.claims <= self.failures:
            raise StorageError(operation="claim_due", cause=f"injected failure {self.claims}")
        return await super().claim_due(now=now, owner=owner, ttl=ttl, limit=limit)


@live
async def test_storage_errors_are_reported_with_backoff_then_the_worker_recovers(
    tmp_path: Path,
) -> None:
    storage = FlakyStorage(tmp_path / "w.db", failures=3)
    job = CounterJob()
    errors: list[Event] = []
    async with create_durable_jobs({"tick": job}, storage=storage) as jobs:
        jobs.on("worker:error", errors.append)
        await schedule(jobs.engine, [ref("a")], jobs.clock.now())
        started = jobs.clock.now()
        async with running(jobs.worker(concurrency=2, poll_interval=0.2)):
            await eventually(lambda: len(job.fired) == 1, 1.5, "the alarm after the errors")
            claims_when_fired = storage.claims
            await asyncio.sleep(0.3)  # idle for a while: polling, not spinning

    assert len(errors) == 3
    assert all(isinstance(e, WorkerError) for e in errors)
    reported = [e for e in errors if isinstance(e, WorkerError)]
    delays = [e.retry_in_ms for e in reported]
    assert delays[0] < delays[1] < delays[2], delays  # growing
    assert delays[0] >= 10
    assert {e.operation for e in reported} == {"claim_due"}
    assert [e.error for e in reported] == [
        f"StorageError: claim_due failed: injected failure {n}" for n in (1, 2, 3)
    ]
    assert all(e.owner == jobs.engine.owner and e.timestamp >= started for e in reported)
    # The alarm fired after the last back-off, on the first good claim; then no hot loop.
    assert job.fired[0].now - started >= timedelta(milliseconds=sum(delays))
    assert claims_when_fired <= 8  # 3 failed, the good one, a few re-checks
    assert storage.claims <= claims_when_fired + 4  # ~one per 0.2 s poll once idle


@live
async def test_alarm_leased_by_another_worker_is_polled_not_spun_on(tmp_path: Path) -> None:
    storage = FlakyStorage(tmp_path / "w.db", failures=0)
    job = CounterJob()
    async with create_durable_jobs({"tick": job}, storage=storage) as jobs:
        await schedule(jobs.engine, [ref("a")], jobs.clock.now())
        held = await storage.acquire(
            ["counter:tick:a"], owner="elsewhere", now=jobs.clock.now(), ttl=TTL
        )
        assert held is not None
        async with running(jobs.worker(concurrency=2, poll_interval=1.0)):
            await asyncio.sleep(0.5)
            assert job.fired == []
            claims = storage.claims
            await storage.release(held.leases)  # a release here wakes the worker at once
            took = await eventually(lambda: len(job.fired) == 1, 1.0, "the released alarm")

    assert 2 <= claims <= 20  # a ~50 ms poll for a due-but-leased alarm, not a spin
    assert took < 0.5


# -- no real time ----------------------------------------------------------------------------


async def test_run_until_idle_fires_what_is_due_on_the_runtime_clock(tmp_path: Path) -> None:
    clock = TestClock(T0)
    job = CounterJob(every=timedelta(minutes=1))
    jobs = create_durable_jobs(
        {"tick": job}, storage=f"sqlite:///{tmp_path}/w.db", clock=clock, lease_ttl=TTL
    )
    async with jobs:
        await schedule(jobs.engine, [ref(f"i{n}") for n in range(5)], T0)
        await schedule(jobs.engine, [ref("later")], T0 + timedelta(seconds=1))
        worker = jobs.worker(concurrency=2)
        assert await worker.run_until_idle() == 5
        assert await worker.run_until_idle() == 0
        assert worker.fired == 5
        assert clock.now() == T0
    assert {f.now for f in job.fired} == {T0}


async def test_worker_arguments_are_checked(tmp_path: Path) -> None:
    async with create_durable_jobs({"tick": CounterJob()}, storage="memory://") as jobs:
        with pytest.raises(ValueError, match="concurrency"):
            jobs.worker(concurrency=0)
        with pytest.raises(ValueError, match="poll_interval"):
            jobs.worker(poll_interval=0)
        worker = jobs.worker()
        assert worker.owner == jobs.engine.owner


@live
async def test_a_worker_runs_once_at_a_time(tmp_path: Path) -> None:
    async with sqlite_jobs(tmp_path / "w.db", CounterJob()) as jobs:
        worker = jobs.worker(poll_interval=0.1)
        async with running(worker):
            await asyncio.sleep(0.05)
            with pytest.raises(RuntimeError, match="already running"):
                await worker.run()


@live
async def test_a_vanished_database_is_reported_as_worker_error_and_backed_off(
    tmp_path: Path,
) -> None:
    """With the database's directory removed under a running worker, every claim fails with
    `StorageError` naming the path: reported as ``worker:error`` with a growing back-off, and
    nothing is fired (committed) any more."""
    directory = tmp_path / "data"
    directory.mkdir()
    path = directory / "w.db"
    job = CounterJob(every=timedelta(milliseconds=5))
    errors: list[Event] = []
    async with sqlite_jobs(path, job) as jobs:
        jobs.on("worker:error", errors.append)
        await schedule(jobs.engine, [ref("a")], jobs.clock.now())
        worker = jobs.worker(concurrency=2, poll_interval=0.2)
        async with running(worker) as task:
            await eventually(lambda: worker.fired >= 3, 2.0, "a few alarms")
            shutil.rmtree(directory)
            fired = worker.fired
            await eventually(lambda: len(errors) >= 4, 3.0, "the worker reporting the loss")
            assert not task.done()
            assert worker.fired <= fired + 1  # at most the one committing during the rmtree
            ahead = worker.fired
            await asyncio.sleep(0.1)
            assert worker.fired == ahead

    reported = [e for e in errors if isinstance(e, WorkerError)]
    assert len(reported) == len(errors)
    assert all(str(path) in e.error and e.error.startswith("StorageError") for e in reported)
    delays = [e.retry_in_ms for e in reported]
    assert delays == sorted(delays), delays  # backing off ...
    assert delays[0] < delays[-1], delays  # ... more and more
    assert not directory.exists()  # nothing made a fresh database there meanwhile


# -- signals ---------------------------------------------------------------------------------


@live
async def test_a_signal_stops_gracefully_and_a_second_aborts(tmp_path: Path) -> None:
    gate = Gate()
    job = CounterJob(hook=gate.hook)
    async with sqlite_jobs(tmp_path / "w.db", job) as jobs:
        await schedule(jobs.engine, [ref("a")], jobs.clock.now())
        worker = jobs.worker(concurrency=4, poll_interval=0.2)
        task = asyncio.create_task(worker.run(stop_on=(signal.SIGINT, signal.SIGTERM)))
        await eventually(lambda: gate.active == 1, 1.0, "the handler running")

        os.kill(os.getpid(), signal.SIGTERM)  # graceful: the handler is waited for
        await asyncio.sleep(0.1)
        assert not task.done(), "run() returned while a handler was still running"
        os.kill(os.getpid(), signal.SIGINT)  # again: abort it
        await asyncio.wait_for(task, timeout=1.0)
        assert worker.aborted
        assert job.fired == []  # cancelled before committing
        snap = (await jobs.storage.load(["counter:tick:a"]))["counter:tick:a"]
        assert snap.records == {}  # nothing it did was committed
    # The handlers are gone with run(): a SIGINT now is Python's KeyboardInterrupt again.
    assert signal.getsignal(signal.SIGINT) is signal.default_int_handler


@live
async def test_one_signal_lets_the_handler_commit(tmp_path: Path) -> None:
    gate = Gate()
    job = CounterJob(hook=gate.hook)
    async with sqlite_jobs(tmp_path / "w.db", job) as jobs:
        await schedule(jobs.engine, [ref("a")], jobs.clock.now())
        worker = jobs.worker(concurrency=4, poll_interval=0.2)
        task = asyncio.create_task(worker.run(stop_on=(signal.SIGINT,)))
        await eventually(lambda: gate.active == 1, 1.0, "the handler running")
        os.kill(os.getpid(), signal.SIGINT)
        gate.open.set()
        await asyncio.wait_for(task, timeout=1.0)
        assert not worker.aborted
        assert [f.instance_id for f in job.fired] == ["counter:tick:a"]
