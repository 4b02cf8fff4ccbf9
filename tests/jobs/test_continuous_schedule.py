"""Continuous schedules: anchoring without drift, misfire policies, cron, pause and resume.

Downtime is simulated by setting the clock directly (``rt.clock.set``) and then firing what
is due with ``run_until_idle`` — ``advance`` would fire every alarm at its own instant.
Every test runs on memory and on SQLite storage.
"""

from __future__ import annotations

from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from durable_effect._backoff import Retry
from durable_effect.jobs._continuous import (
    Continuous,
    ContinuousPauseResult,
    ContinuousResumeResult,
    ContinuousStartResult,
    Misfire,
)
from durable_effect.storage import Storage
from durable_effect.testing._runtime import TestRuntime
from tests.jobs._continuous_support import (
    STORAGES,
    T0,
    Counter,
    Probe,
    alarm_of,
    at,
    counter_job,
    storage_url,
)

IID = "continuous:counter:a"
MISFIRES: tuple[Misfire, ...] = ("run_once", "skip", "run_all")


@pytest.fixture(params=STORAGES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str | Storage:
    kind: str = request.param
    return storage_url(kind, tmp_path)


# -- anchoring -------------------------------------------------------------------------------


@pytest.mark.parametrize("misfire", MISFIRES)
async def test_a_late_alarm_keeps_the_schedule_anchored(url: str, misfire: Misfire) -> None:
    probe = Probe()
    async with TestRuntime({"counter": counter_job(probe, misfire=misfire)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=0))
        rt.clock.set(at(14))  # the 00:10 alarm fires 4 minutes late; 00:20 has not passed
        assert await rt.run_until_idle() == 1
        assert probe.scheduled == [T0, at(10)]
        status = await h.status("a")
        assert (status.run_count, status.last_run_at, status.next_run_at) == (2, at(14), at(20))
        await rt.advance("6 min")
        assert probe.scheduled == [T0, at(10), at(20)]


async def test_ticks_stay_on_the_grid_over_many_runs(url: str) -> None:
    probe = Probe()
    job = counter_job(probe, schedule=Continuous.every("7 min"))
    async with TestRuntime({"counter": job}, storage=url) as rt:
        h = rt.client.continuous(job)
        await rt.advance("1 min")
        await h.start(id="a", input=Counter(n=0))
        for late in (0, 3, 1, 6, 2):  # every alarm fires a little late
            tick = await alarm_of(rt, IID)
            assert tick is not None
            rt.clock.set(tick + timedelta(minutes=late))
            await rt.run_until_idle()
        assert probe.scheduled == [at(1 + 7 * k) for k in range(6)]
        assert (await h.status("a")).next_run_at == at(1 + 7 * 6)


async def test_trigger_and_slow_starts_do_not_shift_the_schedule(url: str) -> None:
    probe = Probe()
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=0))
        await rt.advance("9 min")
        await h.trigger("a")
        await rt.advance("2 min")
        await h.trigger("a")
        await rt.advance("9 min")
        assert probe.scheduled == [T0, at(9), at(10), at(11), at(20)]


# -- misfire ---------------------------------------------------------------------------------


async def test_run_once_runs_one_catch_up_for_the_latest_missed_tick(url: str) -> None:
    probe = Probe()
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=0))
        rt.clock.set(at(65))  # ticks 00:10 … 01:00 were all missed
        assert await rt.run_until_idle() == 1
        assert probe.scheduled == [T0, at(60)]
        assert [c.run_count for c in probe.calls] == [1, 2]
        status = await h.status("a")
        assert (status.run_count, status.last_run_at, status.next_run_at) == (2, at(65), at(70))
        assert (await h.get_state("a")).state == Counter(n=2, tries=2)


async def test_skip_runs_nothing_and_waits_for_the_next_future_tick(url: str) -> None:
    probe = Probe()
    async with TestRuntime({"counter": counter_job(probe, misfire="skip")}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=0))
        rt.clock.set(at(65))
        assert await rt.run_until_idle() == 1  # the alarm fired, but ran nothing
        assert probe.scheduled == [T0]
        status = await h.status("a")
        assert (status.run_count, status.last_run_at, status.next_run_at) == (1, T0, at(70))
        await rt.advance("5 min")
        assert probe.scheduled == [T0, at(70)]
        assert [c.run_count for c in probe.calls] == [1, 2]


async def test_run_all_runs_every_missed_tick_oldest_first(url: str) -> None:
    probe = Probe()
    async with TestRuntime({"counter": counter_job(probe, misfire="run_all")}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=0))
        rt.clock.set(at(65))
        assert await rt.run_until_idle() == 6
        assert probe.scheduled == [at(m) for m in range(0, 61, 10)]
        assert [c.run_count for c in probe.calls] == list(range(1, 8))
        status = await h.status("a")
        assert (status.run_count, status.next_run_at) == (7, at(70))
        assert (await h.get_state("a")).state == Counter(n=7, tries=7)


async def test_run_once_with_a_cron_schedule_finds_the_latest_missed_tick(url: str) -> None:
    probe = Probe()
    job = counter_job(probe, schedule=Continuous.cron("0 * * * *"), start_immediately=False)
    async with TestRuntime({"counter": job}, storage=url) as rt:
        h = rt.client.continuous(job)
        await h.start(id="a", input=Counter(n=0))
        assert (await h.status("a")).next_run_at == at(60)
        rt.clock.set(T0 + timedelta(days=40, minutes=30))
        assert await rt.run_until_idle() == 1
        assert probe.scheduled == [T0 + timedelta(days=40)]
        assert (await h.status("a")).next_run_at == T0 + timedelta(days=40, hours=1)


async def test_run_all_with_a_cron_schedule(url: str) -> None:
    probe = Probe()
    job = counter_job(
        probe, schedule=Continuous.cron("0 9,17 * * *"), start_immediately=False, misfire="run_all"
    )
    async with TestRuntime({"counter": job}, storage=url) as rt:
        await rt.client.continuous(job).start(id="a", input=Counter(n=0))
        rt.clock.set(T0 + timedelta(days=2, hours=12))
        await rt.run_until_idle()
        day = timedelta(days=1)
        assert probe.scheduled == [
            T0 + timedelta(hours=9),
            T0 + timedelta(hours=17),
            T0 + day + timedelta(hours=9),
            T0 + day + timedelta(hours=17),
            T0 + 2 * day + timedelta(hours=9),
        ]


# -- cron ------------------------------------------------------------------------------------


async def test_cron_schedule_fires_at_its_times(url: str) -> None:
    probe = Probe()
    job = counter_job(probe, schedule=Continuous.cron("*/15 * * * *"))
    async with TestRuntime({"counter": job}, storage=url) as rt:
        h = rt.client.continuous(job)
        await rt.advance("5 min")
        await h.start(id="a", input=Counter(n=0))
        assert (await h.status("a")).next_run_at == at(15)
        await rt.advance("1 hour")
        assert probe.scheduled == [at(5), at(15), at(30), at(45), at(60)]


async def test_six_field_cron_has_seconds_first(url: str) -> None:
    probe = Probe()
    job = counter_job(probe, schedule=Continuous.cron("*/20 * * * * *"), start_immediately=False)
    async with TestRuntime({"counter": job}, storage=url) as rt:
        await rt.client.continuous(job).start(id="a", input=Counter(n=0))
        await rt.advance("1 min")
        assert probe.scheduled == [at(seconds=20), at(seconds=40), at(1)]


async def test_cron_in_a_time_zone_across_spring_forward(url: str) -> None:
    probe = Probe()
    job = counter_job(
        probe, schedule=Continuous.cron("30 2 * * *", tz="Europe/Berlin"), start_immediately=False
    )
    start = datetime(2024, 3, 29, 12, tzinfo=UTC)
    async with TestRuntime({"counter": job}, storage=url, start=start) as rt:
        await rt.client.continuous(job).start(id="a", input=Counter(n=0))
        await rt.advance("3 days")
        # 02:30 CET is 01:30Z; on 31 March 02:30 does not exist (02:00 → 03:00) and fires
        # shifted by the gap, at 03:30 CEST = 01:30Z; then 02:30 CEST = 00:30Z.
        assert probe.scheduled == [
            datetime(2024, 3, 30, 1, 30, tzinfo=UTC),
            datetime(2024, 3, 31, 1, 30, tzinfo=UTC),
            datetime(2024, 4, 1, 0, 30, tzinfo=UTC),
        ]


async def test_cron_in_a_time_zone_across_fall_back(url: str) -> None:
    probe = Probe()
    job = counter_job(
        probe, schedule=Continuous.cron("0 9 * * *", tz="America/New_York"), start_immediately=False
    )
    start = datetime(2024, 11, 2, tzinfo=UTC)
    async with TestRuntime({"counter": job}, storage=url, start=start) as rt:
        await rt.client.continuous(job).start(id="a", input=Counter(n=0))
        await rt.advance("3 days")
        assert probe.scheduled == [
            datetime(2024, 11, 2, 13, tzinfo=UTC),  # 09:00 EDT
            datetime(2024, 11, 3, 14, tzinfo=UTC),  # 09:00 EST
            datetime(2024, 11, 4, 14, tzinfo=UTC),
        ]


# -- pause / resume --------------------------------------------------------------------------


async def test_paused_jobs_do_not_run_and_resume_on_the_next_future_tick(url: str) -> None:
    probe = Probe()
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=0))
        await rt.advance("12 min")
        assert await h.pause("a") == ContinuousPauseResult(paused=True, status="paused")
        status = await h.status("a")
        assert (status.status, status.run_count, status.next_run_at) == ("paused", 2, None)
        assert await alarm_of(rt, IID) is None
        assert await rt.advance("1 hour") == 0
        assert (await h.get_state("a")).state == Counter(n=2, tries=2)  # state kept
        rt.clock.set(at(85))
        assert await h.resume("a") == ContinuousResumeResult(resumed=True, status="running")
        status = await h.status("a")
        assert (status.status, status.run_count, status.next_run_at) == ("running", 2, at(90))
        assert await rt.run_until_idle() == 0  # paused time is never caught up
        await rt.advance("5 min")
        assert probe.scheduled == [T0, at(10), at(90)]
        assert [c.run_count for c in probe.calls] == [1, 2, 3]


async def test_resume_exactly_on_a_tick_waits_for_the_following_one(url: str) -> None:
    probe = Probe()
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=0))
        await h.pause("a")
        rt.clock.set(at(30))
        await h.resume("a")
        assert (await h.status("a")).next_run_at == at(40)


async def test_pause_and_resume_are_idempotent(url: str) -> None:
    async with TestRuntime({"counter": counter_job(Probe())}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=0))
        assert await h.resume("a") == ContinuousResumeResult(resumed=False, status="running")
        assert (await h.status("a")).next_run_at == at(10)
        assert (await h.pause("a")).paused
        assert await h.pause("a") == ContinuousPauseResult(paused=False, status="paused")
        assert (await h.resume("a")).resumed
        assert await h.resume("a") == ContinuousResumeResult(resumed=False, status="running")


async def test_resume_with_a_cron_schedule(url: str) -> None:
    probe = Probe()
    job = counter_job(probe, schedule=Continuous.cron("0 */6 * * *"))
    async with TestRuntime({"counter": job}, storage=url) as rt:
        h = rt.client.continuous(job)
        await h.start(id="a", input=Counter(n=0))
        await h.pause("a")
        rt.clock.set(T0 + timedelta(days=1, hours=7))
        await h.resume("a")
        assert (await h.status("a")).next_run_at == T0 + timedelta(days=1, hours=12)


async def test_start_of_a_paused_instance_reports_paused(url: str) -> None:
    probe = Probe()
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=0))
        await h.pause("a")
        result = await h.start(id="a", input=Counter(n=9))
        assert result == ContinuousStartResult(created=False, instance_id=IID, status="paused")
        assert (await h.status("a")).status == "paused"


async def test_trigger_of_a_paused_instance_runs_and_stays_paused(url: str) -> None:
    probe = Probe()
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=0))
        await h.pause("a")
        await rt.advance("5 min")
        assert (await h.trigger("a")).triggered
        status = await h.status("a")
        assert (status.status, status.run_count, status.next_run_at) == ("paused", 2, None)
        assert await alarm_of(rt, IID) is None
        assert await rt.advance("1 hour") == 0


async def test_pause_drops_a_pending_retry(url: str) -> None:
    probe = Probe(script={(2, 1): "fail"})
    job = counter_job(probe, retry=Retry(3, delay="1 min", jitter=False))
    async with TestRuntime({"counter": job}, storage=url) as rt:
        h = rt.client.continuous(job)
        await h.start(id="a", input=Counter(n=0))
        await rt.advance("10 min")
        assert (await h.status("a")).next_run_at == at(11)  # the retry
        await h.pause("a")
        await rt.advance("5 min")
        await h.resume("a")
        assert (await h.status("a")).next_run_at == at(20)
        await rt.advance("5 min")
        assert [(c.run_count, c.attempt) for c in probe.calls] == [(1, 1), (2, 1), (3, 1)]
