"""Continuous jobs: the client operations, the schedule firing, events, and bad inputs.

Every test runs on memory and on SQLite storage.
"""

from __future__ import annotations

import asyncio
import logging
from pathlib import Path

import pytest

from durable_effect import (
    Effect,
    ExecutionError,
    Gen,
    JobNotFoundError,
    ValidationError,
)
from durable_effect._events import JobExecuted, JobStarted, JobTerminated
from durable_effect.jobs._continuous import (
    Continuous,
    ContinuousContext,
    ContinuousGetStateResult,
    ContinuousPauseResult,
    ContinuousResumeResult,
    ContinuousStartResult,
    ContinuousStatusResult,
    ContinuousTerminateResult,
    ContinuousTriggerResult,
)
from durable_effect.storage import Storage
from durable_effect.testing._runtime import TestRuntime
from tests.jobs._continuous_support import (
    STORAGES,
    T0,
    Boom,
    Counter,
    Probe,
    alarm_of,
    at,
    counter_job,
    exists,
    of_type,
    storage_url,
    types_of,
)

IID = "continuous:counter:a"


@pytest.fixture(params=STORAGES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str | Storage:
    kind: str = request.param
    return storage_url(kind, tmp_path)


# -- start ---------------------------------------------------------------------------------


async def test_start_creates_runs_at_once_and_schedules_the_next_tick(url: str) -> None:
    probe = Probe()
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        result = await h.start(id="a", input=Counter(n=0))
        assert result == ContinuousStartResult(created=True, instance_id=IID, status="running")
        assert await h.get_state("a") == ContinuousGetStateResult(state=Counter(n=1, tries=1))
        assert await h.status("a") == ContinuousStatusResult(
            status="running", run_count=1, next_run_at=at(10), last_run_at=T0, last_error=None
        )
        assert await alarm_of(rt, IID) == at(10)
        assert probe.calls[0].run_count == 1
        assert probe.calls[0].attempt == 1
        assert not probe.calls[0].is_retry
        assert probe.calls[0].scheduled_at == T0
        assert probe.ids == [(IID, "a", "counter")]
        assert types_of(rt.events) == ["job.started", "job.executed"]


async def test_start_of_an_existing_instance_ignores_input_and_runs_nothing(url: str) -> None:
    probe = Probe()
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=0))
        await rt.advance("3 min")
        again = await h.start(id="a", input=Counter(n=100))
        assert again == ContinuousStartResult(created=False, instance_id=IID, status="running")
        assert (await h.get_state("a")).state == Counter(n=1, tries=1)
        status = await h.status("a")
        assert status.run_count == 1
        assert status.next_run_at == at(10)
        assert len(probe.calls) == 1
        assert types_of(rt.events) == ["job.started", "job.executed"]


async def test_start_without_start_immediately_waits_for_the_first_tick(url: str) -> None:
    probe = Probe()
    job = counter_job(probe, start_immediately=False)
    async with TestRuntime({"counter": job}, storage=url) as rt:
        h = rt.client.continuous(job)
        assert (await h.start(id="a", input=Counter(n=0))).created
        status = await h.status("a")
        assert (status.status, status.run_count, status.next_run_at) == ("running", 0, at(10))
        assert status.last_run_at is None
        assert probe.calls == []
        assert types_of(rt.events) == ["job.started"]
        await rt.advance("10 min")
        assert probe.scheduled == [at(10)]
        assert probe.calls[0].run_count == 1
        assert (await h.status("a")).next_run_at == at(20)


async def test_start_whose_first_run_terminates_reports_terminated(url: str) -> None:
    probe = Probe(default="terminate")
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        result = await h.start(id="a", input=Counter(n=0))
        assert result == ContinuousStartResult(created=True, instance_id=IID, status="terminated")
        assert (await h.status("a")).status == "not_found"
        assert (await h.get_state("a")).state is None
        assert not await exists(rt, IID)
        assert types_of(rt.events) == ["job.started", "job.terminated"]
        terminated = of_type(rt.events, JobTerminated)[0]
        assert (terminated.reason, terminated.run_count) == ("done", 1)


async def test_client_calls_are_lazy(url: str) -> None:
    probe = Probe()
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        start = h.start(id="a", input=Counter(n=0))
        trigger = h.trigger("a")
        terminate = h.terminate("a")
        assert probe.calls == []
        assert (await h.status("a")).status == "not_found"
        assert (await start).created
        assert not (await start).created  # the same effect runs again: now it exists
        assert (await trigger).triggered
        assert (await trigger).triggered
        assert (await h.status("a")).run_count == 3
        assert (await terminate).terminated
        assert rt.events[-1].type == "job.terminated"


# -- the schedule firing -------------------------------------------------------------------


async def test_alarm_fires_repeatedly_on_schedule(url: str) -> None:
    probe = Probe()
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=0))
        assert await rt.advance("1 hour") == 6
        assert probe.scheduled == [at(m) for m in range(0, 61, 10)]
        assert [c.run_count for c in probe.calls] == list(range(1, 8))
        assert all(c.attempt == 1 for c in probe.calls)
        status = await h.status("a")
        assert (status.run_count, status.last_run_at, status.next_run_at) == (7, at(60), at(70))
        assert (await h.get_state("a")).state == Counter(n=7, tries=7)
        executed = of_type(rt.events, JobExecuted)
        assert [e.timestamp for e in executed] == [at(m) for m in range(0, 61, 10)]


# -- trigger -------------------------------------------------------------------------------


async def test_trigger_runs_now_and_keeps_the_regular_schedule(url: str) -> None:
    probe = Probe()
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=0))
        await rt.advance("3 min")
        assert await h.trigger("a") == ContinuousTriggerResult(triggered=True, terminated=False)
        status = await h.status("a")
        assert (status.run_count, status.last_run_at, status.next_run_at) == (2, at(3), at(10))
        assert probe.calls[-1].scheduled_at == at(3)
        assert probe.calls[-1].run_count == 2
        await rt.advance("7 min")
        assert probe.scheduled == [T0, at(3), at(10)]
        assert [c.run_count for c in probe.calls] == [1, 2, 3]
        assert (await h.status("a")).next_run_at == at(20)


async def test_trigger_of_an_absent_instance_does_nothing(url: str) -> None:
    probe = Probe()
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        assert await h.trigger("a") == ContinuousTriggerResult(triggered=False, terminated=False)
        assert (await h.status("a")).status == "not_found"
        assert not await exists(rt, IID)
        assert probe.calls == []
        assert rt.events == []


async def test_trigger_that_terminates_purges_the_instance(url: str) -> None:
    probe = Probe(script={(2, 1): "terminate"})
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=0))
        assert await h.trigger("a") == ContinuousTriggerResult(triggered=True, terminated=True)
        assert (await h.status("a")).status == "not_found"
        assert not await exists(rt, IID)
        assert await rt.advance("1 hour") == 0


async def test_trigger_whose_run_fails_fails_and_writes_nothing(url: str) -> None:
    probe = Probe(script={(2, 1): "fail"})
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=0))
        before = await h.status("a")
        outcome = await Effect.run_async(h.trigger("a"))
        error = outcome.failure()
        assert isinstance(error, ExecutionError)
        assert (error.job_type, error.job_name, error.instance_id) == ("continuous", "counter", IID)
        assert error.cause == Boom(code=2)
        assert await h.status("a") == before
        assert (await h.get_state("a")).state == Counter(n=1, tries=1)
        assert rt.events[-1].type == "job.failed"  # events of failed calls are delivered


# -- terminate -----------------------------------------------------------------------------


async def test_terminate_cancels_the_alarm_and_deletes_everything(url: str) -> None:
    probe = Probe()
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=0))
        await rt.advance("10 min")
        result = await h.terminate("a", reason="user asked")
        assert result == ContinuousTerminateResult(terminated=True, reason="user asked")
        assert await h.status("a") == ContinuousStatusResult(status="not_found")
        assert (await h.get_state("a")).state is None
        assert not await exists(rt, IID)
        calls = len(probe.calls)
        assert await rt.advance("1 hour") == 0
        assert len(probe.calls) == calls
        event = of_type(rt.events, JobTerminated)[-1]
        assert (event.reason, event.run_count, event.instance_id) == ("user asked", 2, IID)
        assert event.timestamp == at(10)


async def test_terminate_without_reason(url: str) -> None:
    async with TestRuntime({"counter": counter_job(Probe())}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=0))
        assert await h.terminate("a") == ContinuousTerminateResult(terminated=True, reason=None)
        assert of_type(rt.events, JobTerminated)[0].reason is None


async def test_terminate_of_an_absent_instance_reports_not_found(url: str) -> None:
    async with TestRuntime({"counter": counter_job(Probe())}, storage=url) as rt:
        h = rt.client.continuous("counter")
        result = await h.terminate("a", reason="whatever")
        assert result == ContinuousTerminateResult(terminated=False, reason="not_found")
        assert rt.events == []


async def test_a_terminated_id_starts_afresh(url: str) -> None:
    probe = Probe()
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=0))
        await rt.advance("25 min")
        await h.terminate("a")
        await rt.advance("2 min")
        result = await h.start(id="a", input=Counter(n=50))
        assert result == ContinuousStartResult(created=True, instance_id=IID, status="running")
        status = await h.status("a")
        assert (status.run_count, status.next_run_at) == (1, at(37))
        assert (await h.get_state("a")).state == Counter(n=51, tries=1)


async def test_ctx_terminate_from_execute_stops_the_job(url: str) -> None:
    probe = Probe(script={(3, 1): "terminate"})
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=0))
        await rt.advance("1 hour")
        assert [c.run_count for c in probe.calls] == [1, 2, 3]
        assert await h.status("a") == ContinuousStatusResult(status="not_found")
        assert not await exists(rt, IID)
        assert types_of(rt.events) == [
            "job.started",
            "job.executed",
            "job.executed",
            "job.terminated",
        ]
        event = of_type(rt.events, JobTerminated)[0]
        assert (event.reason, event.run_count, event.timestamp) == ("done", 3, at(20))


async def test_ctx_terminate_cannot_be_caught_by_the_user_program(url: str) -> None:
    seen: list[str] = []

    @Effect.gen
    def execute(ctx: ContinuousContext[Counter]) -> Gen[None, ValidationError]:
        outcome = yield from ctx.terminate("stop").either()
        seen.append(f"resumed after terminate: {outcome}")  # pragma: no cover

    job = Continuous.make(Counter, Continuous.every("1 min"), execute)
    async with TestRuntime({"counter": job}, storage=url) as rt:
        h = rt.client.continuous(job)
        assert (await h.start(id="a", input=Counter(n=0))).status == "terminated"
        assert seen == []
        assert (await h.status("a")).status == "not_found"


# -- status, get_state, pause/resume basics -------------------------------------------------


async def test_status_and_get_state_of_an_absent_instance(url: str) -> None:
    async with TestRuntime({"counter": counter_job(Probe())}, storage=url) as rt:
        h = rt.client.continuous("counter")
        assert await h.status("a") == ContinuousStatusResult(
            status="not_found", run_count=0, next_run_at=None, last_run_at=None, last_error=None
        )
        assert await h.get_state("a") == ContinuousGetStateResult(state=None)


async def test_pause_and_resume_of_an_absent_instance(url: str) -> None:
    async with TestRuntime({"counter": counter_job(Probe())}, storage=url) as rt:
        h = rt.client.continuous("counter")
        assert await h.pause("a") == ContinuousPauseResult(paused=False, status="not_found")
        assert await h.resume("a") == ContinuousResumeResult(resumed=False, status="not_found")
        assert not await exists(rt, IID)


async def test_instances_are_independent(url: str) -> None:
    probe = Probe()
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=0))
        await rt.advance("5 min")
        await h.start(id="b", input=Counter(n=100))
        await rt.advance("20 min")
        assert (await h.status("a")).run_count == 3
        assert (await h.status("b")).run_count == 3
        assert (await h.get_state("b")).state == Counter(n=103, tries=3)
        assert (await h.status("b")).next_run_at == at(35)
        await h.terminate("a")
        assert (await h.status("b")).status == "running"


# -- events ----------------------------------------------------------------------------------


async def test_executed_events_carry_the_pre_execution_state(url: str) -> None:
    async with TestRuntime({"counter": counter_job(Probe())}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=5))
        await rt.advance("20 min")
        executed = of_type(rt.events, JobExecuted)
        assert [e.pre_execution_state for e in executed] == [
            {"n": 5, "tries": 0},
            {"n": 6, "tries": 1},
            {"n": 7, "tries": 2},
        ]
        assert [e.run_count for e in executed] == [1, 2, 3]
        assert all(e.attempt == 1 and e.duration_ms == 0 for e in executed)
        first = executed[0]
        assert (first.instance_id, first.id, first.job_type, first.job_name, first.source) == (
            IID,
            "a",
            "continuous",
            "counter",
            "job",
        )
        wire = first.to_wire()
        assert wire["type"] == "job.executed"
        assert wire["preExecutionState"] == {"n": 5, "tries": 0}
        assert wire["runCount"] == 1
        assert wire["timestamp"] == "2026-01-01T00:00:00.000Z"
        started = of_type(rt.events, JobStarted)[0]
        assert (started.instance_id, started.timestamp) == (IID, T0)
        assert len({e.event_id for e in rt.events}) == len(rt.events)


async def test_duration_is_measured_on_the_runtime_clock(url: str) -> None:
    @Effect.gen
    def slow(ctx: ContinuousContext[Counter]) -> Gen[None, ValidationError]:
        yield from Effect.sleep("90 s")
        yield from ctx.update_state(lambda s: Counter(n=s.n + 1))

    job = Continuous.make(Counter, Continuous.every("10 min"), slow)
    async with TestRuntime({"counter": job}, storage=url) as rt:
        h = rt.client.continuous(job)
        task = asyncio.ensure_future(Effect.run_promise(h.start(id="a", input=Counter(n=0))))
        while rt.clock.next_wakeup() is None:  # until the handler sleeps (storage I/O first)
            await asyncio.sleep(0)
        await rt.advance("90 s")
        result = await task
        assert result.created
        executed = of_type(rt.events, JobExecuted)[0]
        assert executed.duration_ms == 90_000
        assert executed.timestamp == at(seconds=90)
        status = await h.status("a")
        # Anchored to the schedule: the next tick is one interval after the start, not
        # after the end of the (slow) first run.
        assert (status.last_run_at, status.next_run_at) == (T0, at(10))


async def test_logging_true_lets_debug_records_through(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    @Effect.gen
    def chatty(ctx: ContinuousContext[Counter]) -> Gen[None, ValidationError]:
        yield from Effect.log_debug("tick", n=ctx.run_count)

    loud = Continuous.make(Counter, Continuous.every("1 min"), chatty, logging=True)
    quiet = Continuous.make(Counter, Continuous.every("1 min"), chatty, logging=False)
    caplog.set_level(logging.DEBUG, logger="durable_effect")
    async with TestRuntime({"loud": loud, "quiet": quiet}, storage=url) as rt:
        await rt.client.continuous(loud).start(id="a", input=Counter(n=0))
        await rt.client.continuous(quiet).start(id="a", input=Counter(n=0))
    ticks = [r for r in caplog.records if r.getMessage() == "tick"]
    assert len(ticks) == 1
    record = ticks[0]
    assert record.levelno == logging.DEBUG
    assert getattr(record, "job_type", None) == "continuous"
    assert getattr(record, "job_name", None) == "loud"
    assert getattr(record, "instance_id", None) == "continuous:loud:a"


async def test_by_default_a_jobs_records_pass_at_the_loggers_level(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    """SPEC 10.2: with no ``logging=``, ``Effect.log_info`` lines appear at INFO."""

    @Effect.gen
    def chatty(ctx: ContinuousContext[Counter]) -> Gen[None, ValidationError]:
        yield from Effect.log_debug("detail", n=ctx.run_count)
        yield from Effect.log_info("tick", n=ctx.run_count)

    job = Continuous.make(Counter, Continuous.every("1 min"), chatty)
    caplog.set_level(logging.INFO, logger="durable_effect")
    async with TestRuntime({"job": job}, storage=url) as rt:
        await rt.client.continuous(job).start(id="a", input=Counter(n=0))
    assert [(r.getMessage(), r.levelno) for r in caplog.records] == [("tick", logging.INFO)]
    assert getattr(caplog.records[0], "fields", None) == {"n": 1}


# -- bad inputs ------------------------------------------------------------------------------


async def test_invalid_input_is_refused_and_nothing_is_written(url: str) -> None:
    probe = Probe()
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        untyped = rt.client.continuous("counter")
        for bad in ({"n": "one"}, "counter", None, Counter(n="one")):  # type: ignore[arg-type]
            outcome = await Effect.run_async(untyped.start(id="a", input=bad))
            error = outcome.failure()
            assert isinstance(error, ValidationError), bad
            assert error.schema == "Counter"
        assert probe.calls == []
        assert (await h.status("a")).status == "not_found"
        assert not await exists(rt, IID)
        assert await alarm_of(rt, IID) is None
        assert rt.events == []


async def test_builtins_input_is_validated_into_the_schema(url: str) -> None:
    async with TestRuntime({"counter": counter_job(Probe())}, storage=url) as rt:
        h = rt.client.continuous("counter")
        assert (await h.start(id="a", input={"n": 3})).created
        assert (await h.get_state("a")).state == Counter(n=4, tries=1)


async def test_set_state_with_an_invalid_state_fails_the_run(url: str) -> None:
    probe = Probe(default="bad_state")
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        outcome = await Effect.run_async(h.start(id="a", input=Counter(n=0)))
        error = outcome.failure()
        assert isinstance(error, ExecutionError)
        assert isinstance(error.cause, ValidationError)
        assert error.cause.schema == "Counter"
        assert error.cause.path == "$.n"
        assert (await h.status("a")).status == "not_found"
        assert not await exists(rt, IID)


async def test_unknown_job_name_fails_with_job_not_found(url: str) -> None:
    async with TestRuntime({"counter": counter_job(Probe())}, storage=url) as rt:
        h = rt.client.continuous("nope")
        for eff in (
            h.start(id="a", input=Counter(n=0)),
            h.trigger("a"),
            h.status("a"),
            h.get_state("a"),
            h.pause("a"),
            h.resume("a"),
            h.terminate("a"),
        ):
            error = (await Effect.run_async(eff)).failure()
            assert error == JobNotFoundError(job_type="continuous", job_name="nope")


async def test_a_handle_of_another_type_does_not_see_the_job(url: str) -> None:
    async with TestRuntime({"counter": counter_job(Probe())}, storage=url) as rt:
        await rt.client.continuous("counter").start(id="a", input=Counter(n=0))
        error = (await Effect.run_async(rt.client.debounce("counter").status("a"))).failure()
        assert error == JobNotFoundError(job_type="debounce", job_name="counter")
        error = (await Effect.run_async(rt.client.task("counter").get_state("a"))).failure()
        assert error == JobNotFoundError(job_type="task", job_name="counter")


async def test_an_unregistered_definition_fails_with_job_not_found(url: str) -> None:
    registered = counter_job(Probe())
    stranger = counter_job(Probe())
    async with TestRuntime({"counter": registered}, storage=url) as rt:
        outcome = await Effect.run_async(
            rt.client.continuous(stranger).start(id="a", input=Counter(n=0))
        )
        error = outcome.failure()
        assert isinstance(error, JobNotFoundError)
        assert error.job_type == "continuous"
        assert not await exists(rt, IID)


@pytest.mark.parametrize("bad_id", ["", "x" * 513, "a\x00b", 123, None])
async def test_bad_ids_are_refused(url: str, bad_id: object) -> None:
    probe = Probe()
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        key: str = bad_id  # type: ignore[assignment]
        for eff in (
            h.start(id=key, input=Counter(n=0)),
            h.trigger(key),
            h.status(key),
            h.get_state(key),
            h.pause(key),
            h.resume(key),
            h.terminate(key),
        ):
            error = (await Effect.run_async(eff)).failure()
            assert isinstance(error, ValidationError)
            assert error.path == "id"
        assert probe.calls == []
        assert await rt.jobs.storage.next_alarm_at() is None
        assert rt.events == []


@pytest.mark.parametrize(
    "odd_id",
    [
        "ユーザー-✓",
        "a:b:c",
        'it\'s "quoted"',
        "'; DROP TABLE records; --",
        "100% _like_ %",
        "/path/like\\this",
        "x" * 480,
        "x" * 512,
    ],
)
async def test_unusual_ids_work(url: str, odd_id: str) -> None:
    async with TestRuntime({"counter": counter_job(Probe())}, storage=url) as rt:
        h = rt.client.continuous("counter")
        result = await h.start(id=odd_id, input=Counter(n=0))
        assert result.instance_id == f"continuous:counter:{odd_id}"
        await rt.advance("10 min")
        assert (await h.status(odd_id)).run_count == 2
        assert (await h.get_state(odd_id)).state == Counter(n=2, tries=2)
        assert (await h.status("other")).status == "not_found"
        assert (await h.terminate(odd_id)).terminated
        assert (await h.status(odd_id)).status == "not_found"
