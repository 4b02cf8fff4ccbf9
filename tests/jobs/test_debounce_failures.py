"""Debounce flushes that fail: the batch is kept (**fix**), retried, and reported.

Every test runs on memory and on SQLite storage.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path

import pytest

from durable_effect import Backoff, Effect, ExecutionError, Retry
from durable_effect.storage import Storage
from durable_effect.telemetry import JobFailed, JobRetryExhausted
from durable_effect.testing import TestRuntime
from tests.jobs._debounce_support import (
    STORAGES,
    T0,
    Batch,
    Downstream,
    Hook,
    Sink,
    alarm_of,
    batcher,
    exists,
    hooks,
    storage_url,
)

IID = "debounce:hooks:c"


def at(seconds: float) -> object:
    return T0 + timedelta(seconds=seconds)


@pytest.fixture(params=STORAGES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str | Storage:
    kind: str = request.param
    return storage_url(kind, tmp_path)


def failures(rt: TestRuntime) -> list[JobFailed]:
    return [e for e in rt.events if isinstance(e, JobFailed)]


# -- without a retry policy ---------------------------------------------------------------


async def test_failed_alarm_flush_keeps_the_batch_and_tries_again_after_flush_after(
    url: str,
) -> None:
    sink = Sink(fail="typed")
    job = batcher(sink)
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        for event in hooks(1, 2):
            await h.add(id="c", event=event)

        await rt.advance("5 s")

        [failed] = failures(rt)
        assert (failed.attempt, failed.will_retry) == (1, True)
        assert failed.error.message == "Downstream: status=503"
        assert failed.timestamp == at(5)
        assert failed.pre_execution_state == {
            "events": [{"kind": "h", "n": 1}, {"kind": "h", "n": 2}],
            "total": 3,
        }
        status = await h.status("c")
        assert (status.status, status.event_count) == ("debouncing", 2)
        assert status.started_at == T0
        assert status.will_flush_at == at(10)
        assert await alarm_of(rt, IID) == at(10)
        joined = await h.add(id="c", event=Hook("h", 3))  # events added meanwhile join it
        assert (joined.created, joined.event_count, joined.will_flush_at) == (False, 3, at(10))

        sink.fail = None
        await rt.advance("5 s")

        ok = sink.ok_runs
        assert [(r.reason, r.count, r.attempt, r.is_retry) for r in ok] == [
            ("flush_after", 3, 2, True)
        ]
        assert ok[0].state == Batch(events=hooks(1, 2, 3), total=6)
        assert (await h.status("c")).status == "not_found"
        assert not await exists(rt, IID)


async def test_without_retry_every_failed_try_is_reported_and_nothing_is_dropped(
    url: str,
) -> None:
    sink = Sink(fail="defect")
    job = batcher(sink)
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        await h.add(id="c", event=Hook("h", 1))

        await rt.advance("20 s")

        assert [(f.attempt, f.timestamp) for f in failures(rt)] == [
            (1, at(5)),
            (2, at(10)),
            (3, at(15)),
            (4, at(20)),
        ]
        assert all(f.will_retry for f in failures(rt))
        assert "RuntimeError: downstream exploded" in failures(rt)[0].error.message
        assert failures(rt)[0].error.stack is not None
        assert not [e for e in rt.events if isinstance(e, JobRetryExhausted)]
        assert (await h.status("c")).event_count == 1
        assert (await h.get_state("c")).state == Batch(events=hooks(1), total=1)


async def test_failing_manual_flush_without_retry_fails_and_writes_nothing(url: str) -> None:
    sink = Sink(fail="typed")
    job = batcher(sink)
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        for event in hooks(1, 2):
            await h.add(id="c", event=event)
        await rt.advance("1 s")
        before = await h.status("c")

        result = await Effect.run_async(h.flush("c"))

        error = result.failure()
        assert isinstance(error, ExecutionError)
        assert error.cause == Downstream(status=503)
        assert (error.job_type, error.job_name, error.instance_id) == ("debounce", "hooks", IID)
        assert await h.status("c") == before  # the batch is kept as it was
        assert (await h.get_state("c")).state == Batch(events=hooks(1, 2), total=3)
        assert await alarm_of(rt, IID) == at(5)
        [failed] = failures(rt)  # events of failed calls are delivered too
        assert failed.attempt == 1

        sink.fail = None
        await rt.advance("4 s")  # the original timer still flushes it, as a first try
        assert [(r.reason, r.count, r.attempt) for r in sink.ok_runs] == [("flush_after", 2, 1)]


async def test_a_defect_in_a_manual_flush_is_an_execution_error_with_the_original_cause(
    url: str,
) -> None:
    job = batcher(Sink(fail="defect"))
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        await h.add(id="c", event=Hook("h", 1))

        result = await Effect.run_async(h.flush("c"))

        error = result.failure()
        assert isinstance(error, ExecutionError)
        assert isinstance(error.cause, RuntimeError)
        assert str(error.cause) == "downstream exploded"
        assert (await h.status("c")).event_count == 1


async def test_failed_max_events_flush_keeps_the_event_and_the_batch(url: str) -> None:
    sink = Sink(fail="typed")
    job = batcher(sink, max_events=2)
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        await h.add(id="c", event=Hook("h", 1))
        await rt.advance("1 s")

        second = await h.add(id="c", event=Hook("h", 2))

        assert (second.event_count, second.flushed, second.will_flush_at) == (2, False, at(6))
        [failed] = failures(rt)
        assert failed.attempt == 1
        assert sink.runs[0].reason == "max_events"
        third = await h.add(id="c", event=Hook("h", 3))  # the batch waits for its next try
        assert (third.event_count, third.flushed, third.will_flush_at) == (3, False, at(6))
        assert len(sink.runs) == 1

        sink.fail = None
        await rt.advance("5 s")

        assert [(r.reason, r.count, r.attempt) for r in sink.ok_runs] == [("max_events", 3, 2)]
        assert (await h.status("c")).status == "not_found"


# -- with a retry policy --------------------------------------------------------------------


async def test_retry_with_backoff_then_success_includes_events_added_meanwhile(url: str) -> None:
    sink = Sink(fail="typed")
    job = batcher(sink, retry=Retry(4, delay=Backoff.exponential("1 s"), jitter=False))
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        await h.add(id="c", event=Hook("h", 1))

        await rt.advance("5 s")
        assert (await h.status("c")).will_flush_at == at(6)
        await rt.advance("1 s")
        assert (await h.status("c")).will_flush_at == at(8)  # 1 s, then 2 s
        added = await h.add(id="c", event=Hook("h", 2))
        assert (added.created, added.event_count, added.will_flush_at) == (False, 2, at(8))
        sink.fail = None
        await rt.advance("2 s")

        assert [(r.attempt, r.is_retry, r.ok) for r in sink.runs] == [
            (1, False, False),
            (2, True, False),
            (3, True, True),
        ]
        assert {r.reason for r in sink.runs} == {"flush_after"}
        assert sink.ok_runs[0].state == Batch(events=hooks(1, 2), total=3)
        assert [(f.attempt, f.will_retry) for f in failures(rt)] == [(1, True), (2, True)]
        assert (await h.status("c")).status == "not_found"


async def test_retries_exhausted_drop_the_batch(url: str) -> None:
    sink = Sink(fail="typed")
    job = batcher(sink, retry=Retry(3, delay=Backoff.constant("1 s"), jitter=False))
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        for event in hooks(1, 2):
            await h.add(id="c", event=event)

        await rt.advance("1 minute")

        assert [(f.attempt, f.will_retry, f.timestamp) for f in failures(rt)] == [
            (1, True, at(5)),
            (2, True, at(6)),
            (3, False, at(7)),
        ]
        [exhausted] = [e for e in rt.events if isinstance(e, JobRetryExhausted)]
        assert (exhausted.attempts, exhausted.reason) == (3, "max_attempts")
        assert exhausted.error.message == failures(rt)[-1].error.message
        assert exhausted.timestamp == at(7)
        assert exhausted.type == "job.retryExhausted"
        assert exhausted.instance_id == IID
        assert (await h.status("c")).status == "not_found"
        assert not await exists(rt, IID)
        assert len(sink.runs) == 3
        nxt = await h.add(id="c", event=Hook("h", 3))
        assert (nxt.created, nxt.event_count) == (True, 1)


async def test_failing_manual_flush_with_retry_returns_retry_scheduled(url: str) -> None:
    sink = Sink(fail="typed")
    job = batcher(sink, retry=Retry(2, delay=Backoff.constant("3 s"), jitter=False))
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        await h.add(id="c", event=Hook("h", 1))

        result = await h.flush("c")

        assert (result.flushed, result.event_count, result.reason) == (False, 1, "manual")
        assert result.retry_scheduled is True
        assert (await h.status("c")).will_flush_at == at(3)
        [failed] = failures(rt)
        assert (failed.attempt, failed.will_retry) == (1, True)

        last = await h.flush("c")  # attempt 2 of 2 fails too: the batch is dropped
        assert (last.flushed, last.retry_scheduled) == (False, False)
        assert (await h.status("c")).status == "not_found"
        assert [e.type for e in rt.events][-2:] == ["job.failed", "job.retryExhausted"]


async def test_retry_of_a_manual_flush_keeps_its_reason(url: str) -> None:
    sink = Sink(fail="typed")
    job = batcher(sink, retry=Retry(3, delay=Backoff.constant("1 s"), jitter=False))
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        await h.add(id="c", event=Hook("h", 1))
        assert (await h.flush("c")).retry_scheduled
        sink.fail = None

        await rt.advance("1 s")

        assert [(r.reason, r.attempt, r.ok) for r in sink.runs] == [
            ("manual", 1, False),
            ("manual", 2, True),
        ]
        flushed = [e for e in rt.events if e.type == "debounce.flushed"]
        assert [getattr(e, "reason", None) for e in flushed] == ["manual"]
