"""`TestClock` and `TestRuntime`: time moves only when the test says so; nothing sleeps."""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import TypeVar

import pytest

from durable_effect import StorageError
from durable_effect._clock import Clock
from durable_effect.jobs._instance import InstanceTx
from durable_effect.testing._clock import TestClock
from durable_effect.testing._runtime import RecordingTracker, TestRuntime
from tests.runtime._support import T0, CounterJob, Ping, ref, schedule

T = TypeVar("T")


async def started(*awaitables: Awaitable[T]) -> list[asyncio.Task[T]]:
    """Tasks for ``awaitables``, each run up to its first suspension (one loop turn, no
    real time)."""

    async def wrap(aw: Awaitable[T]) -> T:
        return await aw

    tasks = [asyncio.create_task(wrap(aw)) for aw in awaitables]
    await asyncio.sleep(0)
    return tasks


def secs(n: float) -> datetime:
    return T0 + timedelta(seconds=n)


# -- TestClock ---------------------------------------------------------------------------------


def test_clock_starts_where_told_in_utc_and_is_a_clock() -> None:
    paris = timezone(timedelta(hours=1))
    clock = TestClock(datetime(2026, 1, 1, 1, 0, tzinfo=paris))
    assert clock.now() == T0
    assert clock.now().tzinfo is UTC
    assert isinstance(clock, Clock)
    assert TestClock().now() == datetime(2026, 1, 1, tzinfo=UTC)


@pytest.mark.parametrize("naive", [datetime(2026, 1, 1), datetime(2026, 6, 1, 12)])
def test_clock_rejects_naive_datetimes(naive: datetime) -> None:
    with pytest.raises(ValueError, match="aware"):
        TestClock(naive)
    clock = TestClock(T0)
    with pytest.raises(ValueError, match="aware"):
        clock.set(naive)
    assert clock.now() == T0


def test_clock_never_goes_backwards() -> None:
    clock = TestClock(T0)
    clock.advance(timedelta(minutes=5))
    with pytest.raises(ValueError, match="backwards"):
        clock.set(T0)
    with pytest.raises(ValueError, match="backwards"):
        clock.advance(timedelta(microseconds=-1))
    assert clock.now() == T0 + timedelta(minutes=5)
    clock.set(clock.now())  # standing still is allowed
    clock.advance(timedelta(0))
    assert clock.now() == T0 + timedelta(minutes=5)


async def test_sleeping_until_now_or_the_past_returns_at_once() -> None:
    clock = TestClock(secs(10))
    await clock.sleep_until(secs(10))
    await clock.sleep_until(secs(3))
    assert clock.next_wakeup() is None


async def test_sleepers_wake_in_time_order_as_the_clock_moves() -> None:
    clock = TestClock(T0)
    woke: list[tuple[str, datetime]] = []

    async def sleeper(label: str, when: datetime) -> None:
        await clock.sleep_until(when)
        woke.append((label, clock.now()))

    tasks = await started(
        sleeper("3s", secs(3)),
        sleeper("1s", secs(1)),
        sleeper("2s-first", secs(2)),
        sleeper("2s-second", secs(2)),
        sleeper("9s", secs(9)),
    )
    assert clock.next_wakeup() == secs(1)

    clock.advance(timedelta(milliseconds=1500))
    await tasks[1]
    assert woke == [("1s", secs(1.5))]
    assert not any(t.done() for n, t in enumerate(tasks) if n != 1)
    assert clock.next_wakeup() == secs(2)

    clock.set(secs(5))
    await asyncio.gather(*tasks[:4])
    assert [label for label, _ in woke] == ["1s", "2s-first", "2s-second", "3s"]
    assert not tasks[4].done()
    assert clock.next_wakeup() == secs(9)

    clock.advance(timedelta(seconds=4))
    await tasks[4]
    assert woke[-1] == ("9s", secs(9))
    assert clock.next_wakeup() is None


async def test_next_wakeup_forgets_cancelled_sleepers() -> None:
    clock = TestClock(T0)
    early, late = await started(clock.sleep_until(secs(1)), clock.sleep_until(secs(2)))
    early.cancel()
    with pytest.raises(asyncio.CancelledError):
        await early
    assert clock.next_wakeup() == secs(2)
    clock.set(secs(2))
    await late


# -- TestRuntime: advance ----------------------------------------------------------------------


async def test_advance_fires_alarms_in_time_order_with_the_clock_at_each_alarm() -> None:
    seen: list[tuple[str, datetime, datetime]] = []

    async def record(tx: InstanceTx, due_at: datetime) -> None:
        seen.append((tx.ref.id, tx.now(), due_at))

    jobs = {
        "fast": CounterJob(every=timedelta(seconds=7), until=5, hook=record),
        "slow": CounterJob(every=timedelta(seconds=10), until=5, hook=record),
    }
    async with TestRuntime(jobs, start=T0) as rt:
        engine = rt.jobs.engine
        await schedule(engine, [ref("f", "fast")], secs(7))
        await schedule(engine, [ref("s1", "slow"), ref("s2", "slow")], secs(10))

        fired = await rt.advance("1 min")

        assert rt.clock.now() == secs(60)
    assert fired == 15
    assert all(now == due for _, now, due in seen)  # the clock stood at each alarm's instant
    fast = [7, 14, 21, 28, 35]
    slow = [10, 20, 30, 40, 50]
    expected = sorted(
        [("f", secs(s)) for s in fast]
        + [("s1", secs(s)) for s in slow]
        + [("s2", secs(s)) for s in slow],
        key=lambda item: item[1],
    )
    assert [(i, now) for i, now, _ in seen] == expected


async def test_advance_stops_at_the_target_and_leaves_later_alarms() -> None:
    job = CounterJob(every=timedelta(minutes=1))
    async with TestRuntime({"tick": job}, start=T0) as rt:
        await schedule(rt.jobs.engine, [ref("a")], secs(30))
        assert await rt.advance(timedelta(seconds=29)) == 0
        assert rt.clock.now() == secs(29)
        assert await rt.advance(1000) == 1  # a number is milliseconds
        assert await rt.advance("150 s") == 2
        assert rt.clock.now() == secs(180)
        assert await rt.jobs.storage.next_alarm_at() == secs(210)
    assert [f.now for f in job.fired] == [secs(30), secs(90), secs(150)]


async def test_advance_wakes_clock_sleepers_at_their_instant_between_alarms() -> None:
    seen: list[tuple[str, datetime]] = []

    async def record(tx: InstanceTx, due_at: datetime) -> None:
        seen.append(("alarm", tx.now()))

    async with TestRuntime({"tick": CounterJob(hook=record)}, start=T0) as rt:
        await schedule(rt.jobs.engine, [ref("a")], secs(20))

        async def sleeper() -> None:
            await rt.clock.sleep_until(secs(15))
            seen.append(("sleeper", rt.clock.now()))

        (task,) = await started(sleeper())
        await rt.advance("30 s")
        await task
    assert seen == [("sleeper", secs(15)), ("alarm", secs(20))]


# -- TestRuntime: run_until_idle -------------------------------------------------------------


async def test_run_until_idle_fires_what_is_due_and_never_moves_the_clock() -> None:
    job = CounterJob()
    async with TestRuntime({"tick": job}, start=T0) as rt:
        rt.clock.advance(timedelta(seconds=5))
        await schedule(rt.jobs.engine, [ref("past")], secs(1))
        await schedule(rt.jobs.engine, [ref("now")], secs(5))
        await schedule(rt.jobs.engine, [ref("later")], secs(5.000001))

        assert await rt.run_until_idle() == 2
        assert rt.clock.now() == secs(5)
        assert await rt.run_until_idle() == 0
        assert await rt.jobs.storage.next_alarm_at() == secs(5.000001)
    assert sorted(f.instance_id for f in job.fired) == ["counter:tick:now", "counter:tick:past"]
    assert all(f.now == secs(5) for f in job.fired)


async def test_run_until_idle_fires_alarms_set_for_now_by_alarm_handlers() -> None:
    job = CounterJob(every=timedelta(0), until=3)  # re-arms at the current instant twice
    async with TestRuntime({"tick": job}, start=T0) as rt:
        await schedule(rt.jobs.engine, [ref("a")], T0)
        assert await rt.run_until_idle() == 3
        assert rt.clock.now() == T0


async def test_max_alarms_guards_against_a_job_rescheduling_itself_now() -> None:
    job = CounterJob(every=timedelta(0))
    async with TestRuntime({"tick": job}, start=T0) as rt:
        await schedule(rt.jobs.engine, [ref("a")], T0)
        with pytest.raises(RuntimeError, match="more than 20 alarms fired"):
            await asyncio.wait_for(rt.run_until_idle(max_alarms=20), timeout=10)
        assert rt.clock.now() == T0
    assert 20 < len(job.fired) <= 21 + 64


async def test_advance_is_guarded_too() -> None:
    job = CounterJob(every=timedelta(0))
    async with TestRuntime({"tick": job}, start=T0) as rt:
        await schedule(rt.jobs.engine, [ref("a")], secs(1))
        with pytest.raises(RuntimeError, match="current instant"):
            await asyncio.wait_for(rt.advance("1 s"), timeout=30)


# -- TestRuntime: lifecycle, events ----------------------------------------------------------


async def test_async_context_manager_opens_and_closes_storage(tmp_path: Path) -> None:
    rt = TestRuntime({"tick": CounterJob()}, storage=f"sqlite:///{tmp_path}/rt.db", start=T0)
    async with rt as entered:
        assert entered is rt
        await schedule(rt.jobs.engine, [ref("a")], secs(1))
        assert await rt.jobs.storage.next_alarm_at() == secs(1)
    assert rt.tracker.closed
    with pytest.raises(StorageError):
        await rt.jobs.storage.next_alarm_at()

    again = TestRuntime({"tick": CounterJob()}, storage=f"sqlite:///{tmp_path}/rt.db", start=T0)
    await again.advance("1 s")  # opens on first use; the committed alarm survived
    assert (await again.jobs.storage.load(["counter:tick:a"]))["counter:tick:a"].records == {
        "n": b"1"
    }
    await again.aclose()
    assert again.tracker.closed


async def test_events_and_recording_tracker() -> None:
    async def emit(tx: InstanceTx, due_at: datetime) -> None:
        tx.emit(Ping(event_id="p1", timestamp=tx.now(), instance_id=tx.instance_id))

    async with TestRuntime({"tick": CounterJob(hook=emit)}, start=T0) as rt:
        await schedule(rt.jobs.engine, [ref("a")], secs(2))
        await rt.advance("2 s")
        assert [e.event_id for e in rt.events] == ["p1"]
        assert rt.tracker.of_type("test.ping")[0].timestamp == secs(2)
        assert rt.tracker.of_type("job.started") == []


def test_recording_tracker_is_not_collected_as_a_test() -> None:
    assert RecordingTracker.__test__ is False
    assert TestRuntime.__test__ is False
    assert TestClock.__test__ is False
