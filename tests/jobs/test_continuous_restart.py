"""Continuous instances across process restarts: schedules, retries, validation.

A "restart" closes the runtime and opens a new one on the same database file (SQLite) or
schema (PostgreSQL), its clock set later (the downtime).
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from durable_effect import Effect, Gen, JobNotFoundError, ValidationError
from durable_effect._backoff import Retry
from durable_effect.jobs._continuous import Continuous, ContinuousContext
from durable_effect.storage import Storage
from durable_effect.testing._runtime import TestRuntime
from tests.jobs._continuous_support import Counter, Probe, at, counter_job
from tests.jobs.conftest import POSTGRES, storage_for

pytestmark = pytest.mark.parametrize("kind", ["sqlite", POSTGRES])


def db(kind: str, tmp_path: Path) -> str | Storage:
    return storage_for(kind, tmp_path, "restart.db")


async def test_the_schedule_survives_a_restart(kind: str, tmp_path: Path) -> None:
    probe = Probe()
    async with TestRuntime({"counter": counter_job(probe)}, storage=db(kind, tmp_path)) as rt:
        await rt.client.continuous("counter").start(id="a", input=Counter(n=0))
        await rt.advance("15 min")
    after = Probe()
    job = counter_job(after)
    async with TestRuntime({"counter": job}, storage=db(kind, tmp_path), start=at(18)) as rt:
        h = rt.client.continuous(job)
        assert (await h.status("a")).next_run_at == at(20)
        await rt.advance("2 min")
        assert after.scheduled == [at(20)]
        assert after.calls[0].run_count == 3
        assert (await h.get_state("a")).state == Counter(n=3, tries=3)


async def test_missed_ticks_after_a_restart_follow_misfire(kind: str, tmp_path: Path) -> None:
    async with TestRuntime({"counter": counter_job(Probe())}, storage=db(kind, tmp_path)) as rt:
        await rt.client.continuous("counter").start(id="a", input=Counter(n=0))
    after = Probe()
    job = counter_job(after)
    async with TestRuntime({"counter": job}, storage=db(kind, tmp_path), start=at(125)) as rt:
        await rt.run_until_idle()
        assert after.scheduled == [at(120)]
        assert (await rt.client.continuous(job).status("a")).next_run_at == at(130)


async def test_a_pending_retry_survives_a_restart(kind: str, tmp_path: Path) -> None:
    retry = Retry(3, delay="5 min", jitter=False)
    failing = Probe(script={(2, 1): "fail"})
    async with TestRuntime(
        {"counter": counter_job(failing, retry=retry)}, storage=db(kind, tmp_path)
    ) as rt:
        await rt.client.continuous("counter").start(id="a", input=Counter(n=0))
        await rt.advance("12 min")
    after = Probe()
    job = counter_job(after, retry=retry)
    async with TestRuntime({"counter": job}, storage=db(kind, tmp_path), start=at(14)) as rt:
        await rt.advance("1 min")
        assert [(c.run_count, c.attempt, c.scheduled_at) for c in after.calls] == [(2, 2, at(10))]
        assert (await rt.client.continuous(job).status("a")).next_run_at == at(20)


async def test_a_paused_instance_stays_paused_after_a_restart(kind: str, tmp_path: Path) -> None:
    async with TestRuntime({"counter": counter_job(Probe())}, storage=db(kind, tmp_path)) as rt:
        await rt.client.continuous("counter").start(id="a", input=Counter(n=0))
        await rt.client.continuous("counter").pause("a")
    after = Probe()
    async with TestRuntime(
        {"counter": counter_job(after)}, storage=db(kind, tmp_path), start=at(100)
    ) as rt:
        assert await rt.run_until_idle() == 0
        assert (await rt.client.continuous("counter").status("a")).status == "paused"
        await rt.client.continuous("counter").resume("a")
        assert (await rt.client.continuous("counter").status("a")).next_run_at == at(110)


class Renamed(msgspec.Struct):
    count: int


async def test_stored_state_is_validated_on_every_read(kind: str, tmp_path: Path) -> None:
    async with TestRuntime({"counter": counter_job(Probe())}, storage=db(kind, tmp_path)) as rt:
        await rt.client.continuous("counter").start(id="a", input=Counter(n=0))

    @Effect.gen
    def execute(ctx: ContinuousContext[Renamed]) -> Gen[None, ValidationError]:
        state = yield from ctx.state
        yield from ctx.set_state(Renamed(count=state.count + 1))

    changed = Continuous.make(Renamed, Continuous.every("10 min"), execute)
    async with TestRuntime({"counter": changed}, storage=db(kind, tmp_path), start=at(5)) as rt:
        h = rt.client.continuous(changed)
        error = (await Effect.run_async(h.get_state("a"))).failure()
        assert isinstance(error, ValidationError)
        assert error.schema == "Renamed"
        await rt.advance("5 min")  # the run cannot read its state: recorded as a failure
        status = await h.status("a")
        assert status.last_error is not None
        assert "Renamed" in status.last_error
        assert (status.status, status.next_run_at) == ("running", at(20))
        assert (await h.terminate("a")).terminated


async def test_an_alarm_of_an_unregistered_job_waits_for_it(kind: str, tmp_path: Path) -> None:
    async with TestRuntime({"counter": counter_job(Probe())}, storage=db(kind, tmp_path)) as rt:
        await rt.client.continuous("counter").start(id="a", input=Counter(n=0))
    async with TestRuntime({}, storage=db(kind, tmp_path), start=at(10)) as rt:
        await rt.run_until_idle()  # nobody owns the alarm: it is pushed back, not lost
        error = (await Effect.run_async(rt.client.continuous("counter").status("a"))).failure()
        assert error == JobNotFoundError(job_type="continuous", job_name="counter")
    after = Probe()
    async with TestRuntime(
        {"counter": counter_job(after)}, storage=db(kind, tmp_path), start=at(10)
    ) as rt:
        await rt.advance("5 min")
        assert [(c.run_count, c.scheduled_at) for c in after.calls] == [(2, at(10))]
        assert (await rt.client.continuous("counter").status("a")).next_run_at == at(20)
