"""Continuous failures: retries through alarms, exhaustion, failures without retry, events.

Every test runs on memory and on SQLite storage.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from pathlib import Path

import pytest

from durable_effect import Effect, ExecutionError
from durable_effect._backoff import Backoff, Retry
from durable_effect._events import JobExecuted, JobFailed, JobRetryExhausted, JobStarted
from durable_effect._log import NONE
from durable_effect.jobs._continuous import Continuous, ContinuousContext, ContinuousStartResult
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
ONE_MINUTE = Retry(3, delay="1 min", jitter=False)


@pytest.fixture(params=STORAGES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str | Storage:
    kind: str = request.param
    return storage_url(kind, tmp_path)


# -- start whose first run fails -------------------------------------------------------------


async def test_start_failing_without_retry_fails_and_writes_nothing(url: str) -> None:
    probe = Probe(default="fail")
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        error = (await Effect.run_async(h.start(id="a", input=Counter(n=0)))).failure()
        assert isinstance(error, ExecutionError)
        assert error.cause == Boom(code=1)
        assert error.instance_id == IID
        assert (await h.status("a")).status == "not_found"
        assert (await h.get_state("a")).state is None
        assert not await exists(rt, IID)
        assert await rt.advance("1 hour") == 0
        assert len(probe.calls) == 1
        # Nothing is written, but the call's events are reported as the seed does.
        assert types_of(rt.events) == ["job.started", "job.failed"]
        assert of_type(rt.events, JobStarted)[0].input == {"n": 0, "tries": 0}
        failed = of_type(rt.events, JobFailed)[0]
        assert (failed.will_retry, failed.attempt, failed.run_count) == (False, 1, 1)


async def test_start_with_a_defect_keeps_the_original_exception_as_cause(url: str) -> None:
    probe = Probe(default="defect")
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        error = (
            await Effect.run_async(
                rt.client.continuous("counter").start(id="a", input=Counter(n=0))
            )
        ).failure()
        assert isinstance(error, ExecutionError)
        assert type(error.cause) is RuntimeError
        assert str(error.cause) == "kaput"
        assert not await exists(rt, IID)
        failed = of_type(rt.events, JobFailed)[0]
        assert failed.error.message == "RuntimeError: kaput"
        assert failed.error.stack is not None
        assert "kaput" in failed.error.stack


async def test_start_failing_with_retry_creates_the_instance_with_the_retry(url: str) -> None:
    probe = Probe(script={(1, 1): "fail"})
    job = counter_job(probe, retry=ONE_MINUTE)
    async with TestRuntime({"counter": job}, storage=url) as rt:
        h = rt.client.continuous(job)
        result = await h.start(id="a", input=Counter(n=0))
        assert result == ContinuousStartResult(created=True, instance_id=IID, status="running")
        status = await h.status("a")
        assert (status.status, status.run_count, status.next_run_at) == ("running", 1, at(1))
        assert status.last_error == "Boom: code=1"
        assert (await h.get_state("a")).state == Counter(n=0, tries=0)  # writes discarded
        assert types_of(rt.events) == ["job.started", "job.failed"]
        assert of_type(rt.events, JobFailed)[0].will_retry
        await rt.advance("1 min")
        assert [(c.run_count, c.attempt, c.is_retry) for c in probe.calls] == [
            (1, 1, False),
            (1, 2, True),
        ]
        assert probe.calls[1].scheduled_at == T0  # the retry is of the start's run
        status = await h.status("a")
        assert (status.run_count, status.last_error, status.next_run_at) == (1, None, at(10))
        assert (await h.get_state("a")).state == Counter(n=1, tries=1)
        await rt.advance("9 min")
        assert probe.calls[-1].run_count == 2


# -- failures on alarms without retry (fix: no zombie) ---------------------------------------


async def test_a_failing_alarm_without_retry_is_recorded_and_the_schedule_goes_on(
    url: str,
) -> None:
    probe = Probe(script={(2, 1): "fail"})
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=0))
        await rt.advance("10 min")
        status = await h.status("a")
        assert (status.status, status.run_count, status.last_run_at) == ("running", 2, at(10))
        assert status.last_error == "Boom: code=2"
        assert status.next_run_at == at(20)
        assert await alarm_of(rt, IID) == at(20)
        assert (await h.get_state("a")).state == Counter(n=1, tries=1)  # writes discarded
        failed = of_type(rt.events, JobFailed)[0]
        assert (failed.run_count, failed.attempt, failed.will_retry) == (2, 1, False)
        assert failed.error.message == "Boom: code=2"
        assert failed.pre_execution_state == {"n": 1, "tries": 1}
        assert failed.timestamp == at(10)
        await rt.advance("10 min")
        assert [c.run_count for c in probe.calls] == [1, 2, 3]
        status = await h.status("a")
        assert (status.run_count, status.last_error) == (3, None)
        assert (await h.get_state("a")).state == Counter(n=2, tries=2)


async def test_a_defect_on_an_alarm_is_recorded_like_a_failure(url: str) -> None:
    probe = Probe(script={(2, 1): "defect"})
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=0))
        await rt.advance("10 min")
        assert (await h.status("a")).last_error == "RuntimeError: kaput"
        assert of_type(rt.events, JobFailed)[0].error.message == "RuntimeError: kaput"
        assert (await h.status("a")).next_run_at == at(20)


async def test_an_invalid_state_on_an_alarm_fails_the_run(url: str) -> None:
    probe = Probe(script={(2, 1): "bad_state"})
    async with TestRuntime({"counter": counter_job(probe)}, storage=url) as rt:
        h = rt.client.continuous("counter")
        await h.start(id="a", input=Counter(n=0))
        await rt.advance("10 min")
        status = await h.status("a")
        assert status.last_error is not None
        assert status.last_error.startswith("ValidationError: Counter at $.n")
        assert (await h.get_state("a")).state == Counter(n=1, tries=1)


# -- retries through alarms ------------------------------------------------------------------


async def test_retries_are_alarms_with_attempt_and_a_fixed_run_count(url: str) -> None:
    probe = Probe(script={(2, 1): "fail", (2, 2): "fail"})
    job = counter_job(probe, retry=ONE_MINUTE)
    async with TestRuntime({"counter": job}, storage=url) as rt:
        h = rt.client.continuous(job)
        await h.start(id="a", input=Counter(n=0))
        await rt.advance("10 min")
        assert (await h.status("a")).next_run_at == at(11)
        await rt.advance("2 min")
        assert [(c.run_count, c.attempt, c.is_retry) for c in probe.calls] == [
            (1, 1, False),
            (2, 1, False),
            (2, 2, True),
            (2, 3, True),
        ]
        assert [c.scheduled_at for c in probe.calls[1:]] == [at(10)] * 3
        # Only the successful attempt's writes were kept.
        assert (await h.get_state("a")).state == Counter(n=2, tries=2)
        status = await h.status("a")
        assert (status.run_count, status.last_error, status.next_run_at) == (2, None, at(20))
        failed = of_type(rt.events, JobFailed)
        assert [(e.attempt, e.will_retry, e.timestamp) for e in failed] == [
            (1, True, at(10)),
            (2, True, at(11)),
        ]
        executed = of_type(rt.events, JobExecuted)[-1]
        assert (executed.run_count, executed.attempt, executed.timestamp) == (2, 3, at(12))
        await rt.advance("8 min")
        assert probe.calls[-1].run_count == 3
        assert probe.calls[-1].attempt == 1


async def test_retry_delays_follow_the_backoff(url: str) -> None:
    probe = Probe(script={(2, 1): "fail", (2, 2): "fail", (2, 3): "fail"})
    policy = Retry(5, delay=Backoff.exponential("10 s"), jitter=False)
    job = counter_job(probe, retry=policy)
    async with TestRuntime({"counter": job}, storage=url) as rt:
        await rt.client.continuous(job).start(id="a", input=Counter(n=0))
        await rt.advance("10 min")
        await rt.advance("5 min")
        failed = of_type(rt.events, JobFailed)
        assert [e.timestamp for e in failed] == [at(10), at(10, seconds=10), at(10, seconds=30)]
        assert of_type(rt.events, JobExecuted)[-1].timestamp == at(10, seconds=70)


async def test_jittered_retry_delays_stay_within_ten_percent(url: str) -> None:
    probe = Probe(script={(1, 1): "fail"})
    job = counter_job(probe, retry=Retry(2, delay="100 s"))
    async with TestRuntime({"counter": job}, storage=url) as rt:
        await rt.client.continuous(job).start(id="a", input=Counter(n=0))
        retry_at = await alarm_of(rt, IID)
        assert retry_at is not None
        assert T0 + timedelta(seconds=90) <= retry_at <= T0 + timedelta(seconds=110)


async def test_exhausted_retries_emit_retry_exhausted_and_purge(url: str) -> None:
    probe = Probe(script={(2, 1): "fail", (2, 2): "fail"})
    job = counter_job(probe, retry=Retry(2, delay="1 min", jitter=False))
    async with TestRuntime({"counter": job}, storage=url) as rt:
        h = rt.client.continuous(job)
        await h.start(id="a", input=Counter(n=0))
        await rt.advance("11 min")
        assert (await h.status("a")).status == "not_found"
        assert not await exists(rt, IID)
        assert types_of(rt.events) == [
            "job.started",
            "job.executed",
            "job.failed",
            "job.failed",
            "job.retryExhausted",
        ]
        assert [e.will_retry for e in of_type(rt.events, JobFailed)] == [True, False]
        exhausted = of_type(rt.events, JobRetryExhausted)[0]
        assert (exhausted.attempts, exhausted.reason, exhausted.timestamp) == (
            2,
            "max_attempts",
            at(11),
        )
        assert exhausted.error.message == "Boom: code=2"
        wire = exhausted.to_wire()
        assert (wire["type"], wire["reason"]) == ("job.retryExhausted", "max_attempts")
        assert wire["error"] == {"message": "Boom: code=2", "stack": None}
        assert await rt.advance("1 hour") == 0
        assert len(probe.calls) == 3


async def test_max_duration_bounds_the_retries(url: str) -> None:
    probe = Probe(default="fail", script={(1, 1): "ok"})
    policy = Retry(10, delay="1 min", jitter=False, max_duration="150 s")
    job = counter_job(probe, retry=policy)
    async with TestRuntime({"counter": job}, storage=url) as rt:
        await rt.client.continuous(job).start(id="a", input=Counter(n=0))
        await rt.advance("1 hour")
        # Attempts at 00:10, 00:11, 00:12; a fourth (00:13) would end past 150 s.
        assert [(c.run_count, c.attempt) for c in probe.calls] == [(1, 1), (2, 1), (2, 2), (2, 3)]
        exhausted = of_type(rt.events, JobRetryExhausted)[0]
        assert (exhausted.attempts, exhausted.reason) == (3, "max_duration")


@pytest.mark.parametrize("policy", [Retry(1), Retry(1, max_duration="1 s")])
async def test_a_start_with_its_attempts_spent_is_exhausted_like_any_run(
    url: str, policy: Retry
) -> None:
    """``Retry(max_attempts=1)``: the failed first run is the last attempt. The start returns
    (as with any policy), ``job.retryExhausted`` follows ``job.failed``, the instance is
    purged; not the no-policy path (a failed call with ``ExecutionError``)."""
    probe = Probe(default="fail")
    job = counter_job(probe, retry=policy)
    async with TestRuntime({"counter": job}, storage=url) as rt:
        h = rt.client.continuous(job)
        result = await h.start(id="a", input=Counter(n=0))
        assert result == ContinuousStartResult(created=True, instance_id=IID, status="terminated")
        assert (await h.status("a")).status == "not_found"
        assert not await exists(rt, IID)
        assert types_of(rt.events) == ["job.started", "job.failed", "job.retryExhausted"]
        assert not of_type(rt.events, JobFailed)[0].will_retry
        exhausted = of_type(rt.events, JobRetryExhausted)[0]
        assert (exhausted.attempts, exhausted.reason) == (1, "max_attempts")
        assert exhausted.error.message == "Boom: code=1"
        assert await rt.advance("1 hour") == 0
        assert len(probe.calls) == 1
        # The id can start afresh.
        assert (await h.start(id="a", input=Counter(n=5))).created


async def test_retries_of_defects_too(url: str) -> None:
    probe = Probe(script={(2, 1): "defect"})
    job = counter_job(probe, retry=ONE_MINUTE)
    async with TestRuntime({"counter": job}, storage=url) as rt:
        await rt.client.continuous(job).start(id="a", input=Counter(n=0))
        await rt.advance("11 min")
        assert [(c.run_count, c.attempt) for c in probe.calls] == [(1, 1), (2, 1), (2, 2)]


async def test_trigger_abandons_a_pending_retry(url: str) -> None:
    probe = Probe(script={(2, 1): "fail"})
    job = counter_job(probe, retry=Retry(3, delay="5 min", jitter=False))
    async with TestRuntime({"counter": job}, storage=url) as rt:
        h = rt.client.continuous(job)
        await h.start(id="a", input=Counter(n=0))
        await rt.advance("12 min")
        assert (await h.status("a")).next_run_at == at(15)
        assert (await h.trigger("a")).triggered
        status = await h.status("a")
        assert (status.run_count, status.next_run_at, status.last_error) == (3, at(20), None)
        await rt.advance("8 min")
        assert [(c.run_count, c.attempt, c.scheduled_at) for c in probe.calls] == [
            (1, 1, T0),
            (2, 1, at(10)),
            (3, 1, at(12)),
            (4, 1, at(20)),
        ]


async def test_a_retry_that_outlasts_the_next_tick_then_follows_misfire(url: str) -> None:
    probe = Probe(script={(2, 1): "fail"})
    job = counter_job(probe, retry=Retry(3, delay="25 min", jitter=False))
    async with TestRuntime({"counter": job}, storage=url) as rt:
        h = rt.client.continuous(job)
        await h.start(id="a", input=Counter(n=0))
        await rt.advance("40 min")
        # Run 2 failed at 00:10 and was retried at 00:35; the ticks 00:20 and 00:30 it
        # outlasted count as missed: run_once catches up once, for the latest (00:30).
        assert [(c.run_count, c.attempt, c.scheduled_at) for c in probe.calls] == [
            (1, 1, T0),
            (2, 1, at(10)),
            (2, 2, at(10)),
            (3, 1, at(30)),
            (4, 1, at(40)),
        ]


# -- logging ---------------------------------------------------------------------------------


async def test_failures_are_logged_at_error_unless_silenced(
    url: str, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="durable_effect")
    loud = counter_job(Probe(script={(2, 1): "fail"}))
    silent = counter_job(Probe(script={(2, 1): "fail"}), logging=NONE)
    async with TestRuntime({"loud": loud, "silent": silent}, storage=url) as rt:
        await rt.client.continuous(loud).start(id="a", input=Counter(n=0))
        await rt.client.continuous(silent).start(id="a", input=Counter(n=0))
        await rt.advance("10 min")
    failures = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert [r.getMessage() for r in failures] == [
        "continuous:loud:a failed (attempt 1, no retry): Boom: code=2"
    ]
    record = failures[0]
    assert record.levelno == logging.ERROR
    facts = {
        key: getattr(record, key, None)
        for key in ("job_type", "job_name", "instance_id", "id", "run_count", "attempt")
    }
    assert facts == {
        "job_type": "continuous",
        "job_name": "loud",
        "instance_id": "continuous:loud:a",
        "id": "a",
        "run_count": 2,
        "attempt": 1,
    }
    assert (getattr(record, "will_retry", None), getattr(record, "error", None)) == (
        False,
        "Boom: code=2",
    )
    assert getattr(record, "traceback", "absent") is None  # a typed failure: no traceback


async def test_an_execute_that_returns_no_effect_is_a_defect(url: str) -> None:
    def forgot_the_effect(ctx: ContinuousContext[Counter]) -> Effect[None]:
        return None  # type: ignore[return-value]

    job = Continuous.make(Counter, Continuous.every("1 min"), forgot_the_effect)
    async with TestRuntime({"counter": job}, storage=url) as rt:
        error = (
            await Effect.run_async(rt.client.continuous(job).start(id="a", input=Counter(n=0)))
        ).failure()
        assert isinstance(error, ExecutionError)
        assert isinstance(error.cause, TypeError)
        assert "expected an Effect" in str(error.cause)
        assert not await exists(rt, IID)
