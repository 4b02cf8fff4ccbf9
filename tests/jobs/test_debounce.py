"""Debounce jobs: batching, the three flush triggers, manual flush, clear, status, state.

Every test runs on memory and on SQLite storage.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path

import pytest

from durable_effect import Debounce, DebounceContext, DebounceEventContext, Effect
from durable_effect.storage import Storage
from durable_effect.telemetry import DebounceFlushed, DebounceStarted
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

S5 = timedelta(seconds=5)
IID = "debounce:hooks:contact-1"


@pytest.fixture(params=STORAGES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str | Storage:
    kind: str = request.param
    return storage_url(kind, tmp_path)


# -- batching and the flush_after window ------------------------------------------------


async def test_events_are_batched_until_flush_after(url: str) -> None:
    sink = Sink()
    job = batcher(sink)
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        results = [await h.add(id="contact-1", event=e) for e in hooks(1, 2, 3)]

        assert [r.created for r in results] == [True, False, False]
        assert [r.event_count for r in results] == [1, 2, 3]
        assert {r.will_flush_at for r in results} == {T0 + S5}
        assert not any(r.flushed for r in results)
        status = await h.status("contact-1")
        assert (status.status, status.event_count) == ("debouncing", 3)
        assert status.started_at == T0
        assert status.will_flush_at == T0 + S5
        assert (await h.get_state("contact-1")).state == Batch(events=hooks(1, 2, 3), total=6)
        assert await alarm_of(rt, IID) == T0 + S5
        assert sink.runs == []


async def test_batch_flushes_once_flush_after_its_first_event(url: str) -> None:
    sink = Sink()
    job = batcher(sink)
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        await h.add(id="contact-1", event=Hook(kind="a", n=1))
        await rt.advance("4 s")
        late = await h.add(id="contact-1", event=Hook(kind="b", n=2))
        assert late.will_flush_at == T0 + S5  # later events do not extend the window
        await rt.advance("999 ms")
        assert sink.runs == []

        await rt.advance("1 ms")

        [run] = sink.runs
        assert run.reason == "flush_after"
        assert run.count == 2
        assert run.state == Batch(events=[Hook("a", 1), Hook("b", 2)], total=3)
        assert run.started_at == T0
        assert (run.attempt, run.is_retry) == (1, False)
        assert (run.instance_id, run.id, run.job_name) == (IID, "contact-1", "hooks")
        assert (await h.status("contact-1")).status == "not_found"
        assert (await h.get_state("contact-1")).state is None
        assert not await exists(rt, IID)  # no dedupe marks: nothing is left at all
        await rt.advance("1 hour")
        assert len(sink.runs) == 1


async def test_next_add_after_a_flush_opens_a_new_batch(url: str) -> None:
    sink = Sink()
    job = batcher(sink)
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        await h.add(id="contact-1", event=Hook("a", 1))
        await rt.advance("5 s")
        await rt.advance("10 s")

        again = await h.add(id="contact-1", event=Hook("b", 2))

        assert again.created is True
        assert again.event_count == 1
        assert again.will_flush_at == T0 + timedelta(seconds=20)
        await rt.advance("5 s")
        assert [(r.count, r.started_at) for r in sink.runs] == [
            (1, T0),
            (1, T0 + timedelta(seconds=15)),
        ]
        assert sink.runs[1].state == Batch(events=[Hook("b", 2)], total=2)


async def test_instances_are_independent(url: str) -> None:
    sink = Sink()
    job = batcher(sink)
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        await h.add(id="a", event=Hook("a", 1))
        await rt.advance("2 s")
        await h.add(id="b", event=Hook("b", 2))
        await h.add(id="b", event=Hook("b", 3))
        await rt.advance("3 s")
        assert [(r.id, r.count) for r in sink.runs] == [("a", 1)]
        assert (await h.status("b")).event_count == 2
        await rt.advance("2 s")
        assert [(r.id, r.count) for r in sink.runs] == [("a", 1), ("b", 2)]


# -- idle_after: trailing debounce capped by flush_after ---------------------------------


async def test_idle_after_flushes_when_events_stop(url: str) -> None:
    sink = Sink()
    job = batcher(sink, flush_after="10 s", idle_after="2 s")
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        first = await h.add(id="contact-1", event=Hook("a", 1))
        assert first.will_flush_at == T0 + timedelta(seconds=2)
        await rt.advance("1.5 s")
        second = await h.add(id="contact-1", event=Hook("a", 2))
        assert second.will_flush_at == T0 + timedelta(seconds=3.5)
        await rt.advance("1999 ms")
        assert sink.runs == []

        await rt.advance("1 ms")

        [run] = sink.runs
        assert (run.reason, run.count) == ("idle", 2)
        flushed = [e for e in rt.events if isinstance(e, DebounceFlushed)]
        assert [e.reason for e in flushed] == ["idle"]


async def test_idle_after_is_capped_by_flush_after(url: str) -> None:
    sink = Sink()
    job = batcher(sink, flush_after="10 s", idle_after="2 s")
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        results = [await h.add(id="contact-1", event=Hook("a", 0))]
        for n in range(1, 7):  # an event every 1.5 s keeps the batch from going idle
            await rt.advance("1.5 s")
            results.append(await h.add(id="contact-1", event=Hook("a", n)))
        assert results[-1].will_flush_at == T0 + timedelta(seconds=10)  # min(cap, 9 s + 2 s)
        await rt.advance("999 ms")
        assert sink.runs == []

        await rt.advance("1 ms")

        [run] = sink.runs
        assert (run.reason, run.count) == ("flush_after", 7)


# -- max_events -----------------------------------------------------------------------------


async def test_max_events_flushes_inside_the_add_that_reaches_it(url: str) -> None:
    sink = Sink()
    job = batcher(sink, max_events=3)
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        first, second, third_event = hooks(1, 2, 3)
        await h.add(id="contact-1", event=first)
        await h.add(id="contact-1", event=second)
        assert sink.runs == []

        third = await h.add(id="contact-1", event=third_event)

        assert (third.created, third.event_count, third.flushed) == (False, 3, True)
        assert third.will_flush_at is None
        [run] = sink.runs
        assert (run.reason, run.count) == ("max_events", 3)
        assert run.state == Batch(events=hooks(1, 2, 3), total=6)
        assert (await h.status("contact-1")).status == "not_found"
        assert not await exists(rt, IID)  # the timer was cancelled with the batch
        nxt = await h.add(id="contact-1", event=Hook("a", 4))
        assert (nxt.created, nxt.event_count) == (True, 1)
        await rt.advance("5 s")
        assert [(r.reason, r.count) for r in sink.runs] == [("max_events", 3), ("flush_after", 1)]


async def test_max_events_of_one_flushes_every_add(url: str) -> None:
    sink = Sink()
    job = batcher(sink, max_events=1)
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        first = await h.add(id="contact-1", event=Hook("a", 1))
        assert (first.created, first.event_count, first.flushed) == (True, 1, True)
        second = await h.add(id="contact-1", event=Hook("a", 2))
        assert (second.created, second.flushed) == (True, True)
        assert [r.count for r in sink.runs] == [1, 1]
        assert [e.type for e in rt.events] == [
            "debounce.started",
            "debounce.flushed",
            "debounce.started",
            "debounce.flushed",
        ]


# -- manual flush ---------------------------------------------------------------------------


async def test_manual_flush_runs_execute_now_and_cancels_the_timer(url: str) -> None:
    sink = Sink()
    job = batcher(sink)
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        await h.add(id="contact-1", event=Hook("a", 1))
        await h.add(id="contact-1", event=Hook("a", 2))
        await rt.advance("1 s")

        result = await h.flush("contact-1")

        assert (result.flushed, result.event_count, result.reason) == (True, 2, "manual")
        assert result.retry_scheduled is False
        [run] = sink.runs
        assert (run.reason, run.count) == ("manual", 2)
        assert (await h.status("contact-1")).status == "not_found"
        assert not await exists(rt, IID)
        await rt.advance("1 minute")
        assert len(sink.runs) == 1


async def test_flush_without_a_batch_is_empty_and_writes_nothing(url: str) -> None:
    sink = Sink()
    job = batcher(sink)
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)

        result = await h.flush("nobody")

        assert (result.flushed, result.event_count, result.reason) == (False, 0, "empty")
        assert result.retry_scheduled is False
        assert sink.runs == []
        assert not await exists(rt, "debounce:hooks:nobody")
        assert rt.events == []


# -- clear ----------------------------------------------------------------------------------


async def test_clear_discards_the_batch_without_executing(url: str) -> None:
    sink = Sink()
    job = batcher(sink)
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        await h.add(id="contact-1", event=Hook("a", 1))
        await h.add(id="contact-1", event=Hook("a", 2))

        cleared = await h.clear("contact-1")

        assert (cleared.cleared, cleared.discarded_events) == (True, 2)
        assert (await h.status("contact-1")).status == "not_found"
        assert (await h.get_state("contact-1")).state is None
        assert not await exists(rt, IID)
        await rt.advance("1 minute")
        assert sink.runs == []
        again = await h.clear("contact-1")
        assert (again.cleared, again.discarded_events) == (False, 0)
        nxt = await h.add(id="contact-1", event=Hook("b", 3))
        assert (nxt.created, nxt.event_count) == (True, 1)


# -- status and state -------------------------------------------------------------------------


async def test_status_and_state_of_an_unknown_instance(url: str) -> None:
    job = batcher(Sink())
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        status = await h.status("nobody")
        assert (status.status, status.event_count) == ("not_found", 0)
        assert (status.started_at, status.will_flush_at) == (None, None)
        assert (await h.get_state("nobody")).state is None


async def test_status_and_state_are_reads_that_write_nothing(url: str) -> None:
    job = batcher(Sink())
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        await h.status("nobody")
        await h.get_state("nobody")
        assert not await exists(rt, "debounce:hooks:nobody")


async def test_default_reducer_keeps_the_latest_event(url: str) -> None:
    sink = Sink()
    job = Debounce.make(Hook, sink.execute(), flush_after="5 s")
    async with TestRuntime({"latest": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        await h.add(id="x", event=Hook("first", 1))
        await h.add(id="x", event=Hook("second", 2))
        assert (await h.get_state("x")).state == Hook("second", 2)
        await rt.advance("5 s")
        [run] = sink.runs
        assert (run.state, run.count) == (Hook("second", 2), 2)


async def test_reducer_without_state_schema_reduces_into_the_event_type(url: str) -> None:
    sink = Sink()

    def add_up(ctx: DebounceEventContext[int, int]) -> Effect[int]:
        return Effect.succeed((ctx.state or 0) + ctx.event)

    job = Debounce.make(int, sink.execute(), "5 s", on_event=add_up)
    async with TestRuntime({"sum": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        for n in (1, 2, 3):
            await h.add(id="x", event=n)
        assert (await h.get_state("x")).state == 6
        await rt.advance("5 s")
        assert sink.runs[0].state == 6


async def test_on_event_context_holds_plain_values(url: str) -> None:
    seen: list[DebounceEventContext[Batch, Hook]] = []

    def reducer(ctx: DebounceEventContext[Batch, Hook]) -> Effect[Batch]:
        seen.append(ctx)
        prev = ctx.state or Batch(events=[], total=0)
        return Effect.succeed(Batch(events=[*prev.events, ctx.event], total=prev.total + 1))

    job = Debounce.make(Hook, Sink().execute(), "5 s", state_schema=Batch, on_event=reducer)
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        await h.add(id="contact-1", event=Hook("a", 1))
        await h.add(id="contact-1", event=Hook("b", 2))
        await rt.advance("5 s")
        await h.add(id="contact-1", event=Hook("c", 3))

        assert [c.event for c in seen] == [Hook("a", 1), Hook("b", 2), Hook("c", 3)]
        assert [c.event_count for c in seen] == [1, 2, 1]
        assert seen[0].state is None
        assert seen[1].state == Batch(events=[Hook("a", 1)], total=1)
        assert seen[2].state is None  # a new batch starts from nothing
        assert {(c.instance_id, c.id, c.job_name) for c in seen} == {(IID, "contact-1", "hooks")}


async def test_odd_ids_work(url: str) -> None:
    sink = Sink()
    job = batcher(sink)
    odd = ["ünï-cødé ✓", "a:b:c", 'it\'s "quoted"', "x'; DROP TABLE records; --", "%_\\", "/"]
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        for n, id_ in enumerate(odd):
            await h.add(id=id_, event=Hook("a", n))
        for n, id_ in enumerate(odd):
            assert (await h.status(id_)).event_count == 1
            assert (await h.get_state(id_)).state == Batch(events=[Hook("a", n)], total=n)
        assert (await h.flush(odd[0])).flushed
        assert (await h.clear(odd[1])).cleared
        await rt.advance("5 s")
        assert sorted(r.id for r in sink.runs) == sorted(odd[:1] + odd[2:])
        assert sink.runs[0].instance_id == f"debounce:hooks:{odd[0]}"


async def test_client_calls_are_lazy(url: str) -> None:
    sink = Sink()
    job = batcher(sink)
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        add = h.add(id="contact-1", event=Hook("a", 1))
        flush = h.flush("contact-1")
        assert not await exists(rt, IID)
        await add
        await add  # the same value runs again: a second event
        assert (await h.status("contact-1")).event_count == 2
        assert (await flush).event_count == 2


# -- events ----------------------------------------------------------------------------------


async def test_started_and_flushed_events(url: str) -> None:
    job = batcher(Sink())
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        await rt.advance("1 s")
        await h.add(id="contact-1", event=Hook("a", 1))
        await h.add(id="contact-1", event=Hook("a", 2))
        await rt.advance("5 s")

        started, flushed = rt.events
        assert isinstance(started, DebounceStarted)
        assert started.type == "debounce.started"
        assert started.timestamp == T0 + timedelta(seconds=1)
        assert started.flush_at == T0 + timedelta(seconds=6)
        assert (started.instance_id, started.id) == (IID, "contact-1")
        assert (started.job_type, started.job_name, started.source) == ("debounce", "hooks", "job")
        assert isinstance(flushed, DebounceFlushed)
        assert flushed.timestamp == T0 + timedelta(seconds=6)
        assert (flushed.event_count, flushed.reason, flushed.duration_ms) == (2, "flush_after", 0)
        wire = flushed.to_wire()
        assert wire["type"] == "debounce.flushed"
        assert (wire["eventCount"], wire["reason"], wire["durationMs"]) == (2, "flush_after", 0)
        assert started.to_wire()["flushAt"] == "2026-01-01T00:00:06.000Z"
        assert started.event_id != flushed.event_id


# -- an add during a flush ---------------------------------------------------------------------


async def test_an_add_during_a_flush_waits_and_lands_in_the_next_batch(url: str) -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    sink = Sink(gate=gate, entered=entered)
    job = batcher(sink)
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        for event in hooks(1, 2):
            await h.add(id="contact-1", event=event)

        flushing = asyncio.create_task(Effect.run_promise(h.flush("contact-1")))
        await entered.wait()  # execute is running and holds the instance
        adding = asyncio.create_task(Effect.run_promise(h.add(id="contact-1", event=Hook("b", 3))))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not adding.done()  # it waits for the flush
        gate.set()
        flushed = await flushing
        added = await adding

        assert (flushed.flushed, flushed.event_count) == (True, 2)
        assert (added.created, added.event_count) == (True, 1)
        [run] = sink.runs
        assert run.state == Batch(events=hooks(1, 2), total=3)
        assert (await h.get_state("contact-1")).state == Batch(events=[Hook("b", 3)], total=3)
        assert (await h.status("contact-1")).event_count == 1


async def test_an_add_during_an_alarm_flush_lands_in_the_next_batch(url: str) -> None:
    gate, entered = asyncio.Event(), asyncio.Event()
    sink = Sink(gate=gate, entered=entered)
    job = batcher(sink)
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        for event in hooks(1, 2):
            await h.add(id="contact-1", event=event)

        advancing = asyncio.create_task(rt.advance("5 s"))
        await entered.wait()  # the alarm's execute is running
        adding = asyncio.create_task(Effect.run_promise(h.add(id="contact-1", event=Hook("h", 3))))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not adding.done()
        gate.set()
        added = await adding
        await advancing

        assert (added.created, added.event_count) == (True, 1)
        assert [r.state for r in sink.runs] == [Batch(events=hooks(1, 2), total=3)]
        assert (await h.get_state("contact-1")).state == Batch(events=hooks(3), total=3)
        await rt.advance("5 s")
        assert [r.count for r in sink.runs] == [2, 1]


# -- logging ------------------------------------------------------------------------------


@pytest.mark.parametrize("setting", [False, True])
async def test_logging_setting_and_annotations(
    url: str, setting: bool, caplog: pytest.LogCaptureFixture
) -> None:
    def execute(ctx: DebounceContext[int]) -> Effect[None]:
        return Effect.log_info("sending batch", size=1)

    def failing(ctx: DebounceContext[int]) -> Effect[None, Downstream]:
        return Effect.fail(Downstream(status=500))

    job = Debounce.make(int, execute, "1 s", logging=setting)
    broken = Debounce.make(int, failing, "1 s")
    caplog.set_level(logging.DEBUG, logger="durable_effect")
    async with TestRuntime({"quiet": job, "broken": broken}, storage=url) as rt:
        await rt.client.debounce(job).add(id="a", event=1)
        await rt.client.debounce(broken).add(id="b", event=1)
        await rt.advance("1 s")

    infos = [r for r in caplog.records if r.getMessage() == "sending batch"]
    assert len(infos) == (1 if setting else 0)
    for record in infos:
        assert (record.job_type, record.job_name) == ("debounce", "quiet")  # type: ignore[attr-defined]
        assert record.instance_id == "debounce:quiet:a"  # type: ignore[attr-defined]
    [error] = [r for r in caplog.records if r.levelno >= logging.WARNING]
    assert error.getMessage() == (
        "debounce:broken:b failed (attempt 1, will retry): Downstream: status=500"
    )
    assert error.levelno == logging.ERROR
    assert error.instance_id == "debounce:broken:b"  # type: ignore[attr-defined]
