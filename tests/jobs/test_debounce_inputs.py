"""Debounce bad inputs: invalid events and states, reducer failures, duplicates, names, ids.

Every refused call writes nothing: no instance, no alarm, no event. Runtime tests run on
memory and on SQLite storage.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from durable_effect import (
    Continuous,
    Debounce,
    DebounceDefinition,
    DebounceEventContext,
    DuplicateEventError,
    Effect,
    ExecutionError,
    JobNotFoundError,
    Retry,
    ValidationError,
)
from durable_effect.storage import Storage
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


@pytest.fixture(params=STORAGES)
def url(request: pytest.FixtureRequest, tmp_path: Path) -> str | Storage:
    kind: str = request.param
    return storage_url(kind, tmp_path)


# -- invalid events and states ------------------------------------------------------------


async def test_invalid_event_creates_nothing(url: str) -> None:
    job = batcher(Sink())
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce("hooks")

        result = await Effect.run_async(h.add(id="c", event={"kind": "a", "n": "one"}))

        error = result.failure()
        assert isinstance(error, ValidationError)
        assert (error.schema, error.path) == ("Hook", "$.n")
        assert not await exists(rt, IID)
        assert (await h.status("c")).status == "not_found"
        assert await rt.jobs.storage.next_alarm_at() is None
        assert rt.events == []


async def test_an_instance_of_the_schema_with_a_bad_field_is_refused(url: str) -> None:
    job = batcher(Sink())
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        not_an_int: Any = "one"
        sneaky = Hook(kind="a", n=not_an_int)  # msgspec does not check on construction
        result = await Effect.run_async(h.add(id="c", event=sneaky))
        assert isinstance(result.failure(), ValidationError)
        assert not await exists(rt, IID)


async def test_invalid_event_leaves_an_open_batch_unchanged(url: str) -> None:
    job = batcher(Sink())
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce("hooks")
        await h.add(id="c", event=Hook("h", 1))
        before = await h.status("c")
        await rt.advance("1 s")

        result = await Effect.run_async(h.add(id="c", event={"kind": 5}))

        assert isinstance(result.failure(), ValidationError)
        assert await h.status("c") == before
        assert (await h.get_state("c")).state == Batch(events=hooks(1), total=1)
        assert await alarm_of(rt, IID) == T0 + timedelta(seconds=5)


async def test_dict_events_are_validated_into_the_schema(url: str) -> None:
    sink = Sink()
    job = batcher(sink)
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        await rt.client.debounce("hooks").add(id="c", event={"kind": "h", "n": 1})
        assert (await rt.client.debounce(job).get_state("c")).state == Batch(
            events=hooks(1), total=1
        )


def _bad_reducer(ctx: DebounceEventContext[Batch, Hook]) -> Effect[Batch]:
    bad: Any = {"events": "nope", "total": 0}
    return Effect.succeed(bad)


async def test_reducer_returning_an_invalid_state_is_refused_and_writes_nothing(url: str) -> None:
    job = Debounce.make(Hook, Sink().execute(), "5 s", state_schema=Batch, on_event=_bad_reducer)
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)

        result = await Effect.run_async(h.add(id="c", event=Hook("h", 1)))

        error = result.failure()
        assert isinstance(error, ValidationError)
        assert (error.schema, error.path) == ("Batch", "$.events")
        assert not await exists(rt, IID)
        assert rt.events == []


async def test_reducer_returning_an_invalid_state_leaves_the_batch_unchanged(url: str) -> None:
    calls: list[int] = []

    def reducer(ctx: DebounceEventContext[Batch, Hook]) -> Effect[Batch]:
        calls.append(ctx.event.n)
        if ctx.event.n < 0:
            return _bad_reducer(ctx)
        prev = ctx.state or Batch(events=[], total=0)
        return Effect.succeed(Batch(events=[*prev.events, ctx.event], total=prev.total + 1))

    job = Debounce.make(Hook, Sink().execute(), "5 s", state_schema=Batch, on_event=reducer)
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        await h.add(id="c", event=Hook("h", 1))

        result = await Effect.run_async(h.add(id="c", event=Hook("h", -1), event_id="e-1"))

        assert isinstance(result.failure(), ValidationError)
        assert (await h.status("c")).event_count == 1
        assert (await h.get_state("c")).state == Batch(events=hooks(1), total=1)
        # the refused event's id was not remembered: it can be sent again
        assert (await h.add(id="c", event=Hook("h", 2), event_id="e-1")).event_count == 2
        assert calls == [1, -1, 2]


@pytest.mark.parametrize("kind", ["typed", "defect"])
async def test_failing_reducer_is_an_execution_error_and_writes_nothing(
    url: str, kind: str
) -> None:
    boom = RuntimeError("reducer bug")

    def reducer(ctx: DebounceEventContext[Batch, Hook]) -> Effect[Batch, Downstream]:
        if kind == "defect":
            raise boom
        return Effect.fail(Downstream(status=400))

    job = Debounce.make(Hook, Sink().execute(), "5 s", state_schema=Batch, on_event=reducer)
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)

        result = await Effect.run_async(h.add(id="c", event=Hook("h", 1)))

        error = result.failure()
        assert isinstance(error, ExecutionError)
        if kind == "defect":
            assert error.cause is boom
        else:
            assert error.cause == Downstream(status=400)
        assert error.instance_id == IID
        assert not await exists(rt, IID)
        assert rt.events == []


# -- duplicate event ids --------------------------------------------------------------------


async def test_duplicate_event_id_within_a_batch_is_refused(url: str) -> None:
    job = batcher(Sink())
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        await h.add(id="c", event=Hook("h", 1), event_id="evt-1")
        before = await h.status("c")

        result = await Effect.run_async(h.add(id="c", event=Hook("h", 2), event_id="evt-1"))

        assert result.failure() == DuplicateEventError(event_id="evt-1")
        assert await h.status("c") == before
        assert (await h.get_state("c")).state == Batch(events=hooks(1), total=1)
        other = await h.add(id="c", event=Hook("h", 3), event_id="evt-2")
        assert other.event_count == 2
        # ids are per instance: another instance takes the same id
        assert (await h.add(id="d", event=Hook("h", 4), event_id="evt-1")).created


async def test_duplicate_event_id_across_batches_is_refused(url: str) -> None:
    sink = Sink()
    job = batcher(sink)
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        await h.add(id="c", event=Hook("h", 1), event_id="evt-1")
        await rt.advance("5 s")
        assert (await h.status("c")).status == "not_found"
        await h.add(id="cleared", event=Hook("h", 1), event_id="evt-9")
        await h.clear("cleared")

        flushed = await Effect.run_async(h.add(id="c", event=Hook("h", 2), event_id="evt-1"))
        cleared = await Effect.run_async(h.add(id="cleared", event=Hook("h", 2), event_id="evt-9"))

        assert flushed.failure() == DuplicateEventError(event_id="evt-1")
        assert cleared.failure() == DuplicateEventError(event_id="evt-9")
        # nothing was applied: no batch was opened by the refused add
        assert (await h.status("c")).status == "not_found"
        assert (await h.status("cleared")).status == "not_found"
        await rt.advance("1 minute")
        assert len(sink.runs) == 1
        fresh = await h.add(id="c", event=Hook("h", 3), event_id="evt-2")
        assert (fresh.created, fresh.event_count) == (True, 1)


async def test_event_ids_expire_after_the_dedupe_window(url: str) -> None:
    job = batcher(Sink(), dedupe_window="1 minute")
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        await h.add(id="c", event=Hook("h", 1), event_id="evt-1")
        await rt.advance("59 s")
        late = await Effect.run_async(h.add(id="c", event=Hook("h", 2), event_id="evt-1"))
        assert late.failure() == DuplicateEventError(event_id="evt-1")

        await rt.advance("1 s")

        again = await h.add(id="c", event=Hook("h", 2), event_id="evt-1")
        assert (again.created, again.event_count) == (True, 1)


async def test_default_dedupe_window_is_24_hours(url: str) -> None:
    job = batcher(Sink())
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        await h.add(id="c", event=Hook("h", 1), event_id="evt-1")
        await rt.advance("23 hours")
        refused = await Effect.run_async(h.add(id="c", event=Hook("h", 1), event_id="evt-1"))
        assert isinstance(refused.failure(), DuplicateEventError)
        await rt.advance("1 hour")
        assert (await h.add(id="c", event=Hook("h", 1), event_id="evt-1")).created


async def test_expired_marks_are_pruned_and_the_instance_goes_away(url: str) -> None:
    job = batcher(Sink(), dedupe_window="1 minute")
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce(job)
        await h.add(id="c", event=Hook("h", 1), event_id="evt-1")
        await rt.advance("30 s")
        await h.add(id="c2", event=Hook("h", 1))  # another instance, for contrast
        await h.add(id="c", event=Hook("h", 2), event_id="evt-2")
        await rt.advance("5 s")  # both batches flushed; only c's dedupe marks remain
        assert (await h.status("c")).status == "not_found"
        assert await exists(rt, IID)
        assert not await exists(rt, "debounce:hooks:c2")

        await rt.advance("25 s")  # evt-1 expired; evt-2 lives on
        await h.add(id="c", event=Hook("h", 3), event_id="evt-3")  # a write prunes
        await h.clear("c")
        stored = (await rt.jobs.storage.load([IID]))[IID].records
        assert b"evt-1" not in stored["dedupe"]
        assert b"evt-2" in stored["dedupe"]
        assert b"evt-3" in stored["dedupe"]
        assert await alarm_of(rt, IID) == T0 + timedelta(seconds=120)  # the last expiry

        await rt.advance("60 s")  # every mark expired: nothing is left

        assert not await exists(rt, IID)
        assert (await h.add(id="c", event=Hook("h", 4), event_id="evt-2")).created


@pytest.mark.parametrize("bad", ["", 7, "x" * 513, "a\x00b"])
async def test_bad_event_ids_are_refused(url: str, bad: object) -> None:
    job = batcher(Sink())
    async with TestRuntime({"hooks": job}, storage=url) as rt:
        h = rt.client.debounce("hooks")
        event_id: Any = bad
        result = await Effect.run_async(h.add(id="c", event=Hook("h", 1), event_id=event_id))
        error = result.failure()
        assert isinstance(error, ValidationError)
        assert error.path == "event_id"
        assert not await exists(rt, IID)


# -- names and ids ---------------------------------------------------------------------------


def _all_calls(h: Any, id_: object) -> list[Effect[Any, Any]]:
    return [
        h.add(id=id_, event=Hook("h", 1)),
        h.flush(id_),
        h.clear(id_),
        h.status(id_),
        h.get_state(id_),
    ]


async def test_unknown_job_name_fails_every_call_with_job_not_found(url: str) -> None:
    async with TestRuntime({"hooks": batcher(Sink())}, storage=url) as rt:
        h = rt.client.debounce("nope")
        for call in _all_calls(h, "c"):
            result = await Effect.run_async(call)
            assert result.failure() == JobNotFoundError(job_type="debounce", job_name="nope")


async def test_a_job_of_another_type_is_not_found(url: str) -> None:
    tick = Continuous.make(int, Continuous.every("1 hour"), lambda ctx: Effect.succeed(None))
    async with TestRuntime({"tick": tick, "hooks": batcher(Sink())}, storage=url) as rt:
        h = rt.client.debounce("tick")
        for call in _all_calls(h, "c"):
            result = await Effect.run_async(call)
            assert result.failure() == JobNotFoundError(job_type="debounce", job_name="tick")
        assert not await exists(rt, "continuous:tick:c")
        assert not await exists(rt, "debounce:tick:c")


async def test_unregistered_definition_object_is_not_found(url: str) -> None:
    stray = batcher(Sink())
    async with TestRuntime({"hooks": batcher(Sink())}, storage=url) as rt:
        result = await Effect.run_async(rt.client.debounce(stray).status("c"))
        assert isinstance(result.failure(), JobNotFoundError)


@pytest.mark.parametrize("bad", ["", "x" * 513, "nul\x00byte", 42, None])
async def test_bad_ids_fail_every_call_with_validation_error(url: str, bad: object) -> None:
    async with TestRuntime({"hooks": batcher(Sink())}, storage=url) as rt:
        h = rt.client.debounce("hooks")
        for call in _all_calls(h, bad):
            result = await Effect.run_async(call)
            assert isinstance(result.failure(), ValidationError)
        assert await rt.jobs.storage.next_alarm_at() is None
        assert rt.events == []


async def test_an_id_of_512_characters_is_fine(url: str) -> None:
    async with TestRuntime({"hooks": batcher(Sink())}, storage=url) as rt:
        h = rt.client.debounce("hooks")
        long_id = "é" * 512
        assert (await h.add(id=long_id, event=Hook("h", 1))).created
        assert (await h.status(long_id)).event_count == 1


# -- definition-time checks -----------------------------------------------------------------


def _noop(ctx: object) -> Effect[None]:
    return Effect.succeed(None)


def _keep(ctx: DebounceEventContext[int, int]) -> Effect[int]:
    return Effect.succeed(ctx.event)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"flush_after": "0 s"}, "flush_after"),
        ({"flush_after": -5}, "flush_after"),
        ({"flush_after": "soon"}, "flush_after"),
        ({"idle_after": "0"}, "idle_after"),
        ({"idle_after": "later"}, "idle_after"),
        ({"dedupe_window": "0 s"}, "dedupe_window"),
        ({"max_events": 0}, "max_events"),
        ({"max_events": True}, "max_events"),
        ({"max_events": "3"}, "max_events"),
    ],
)
def test_make_refuses_bad_values(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"flush_after": "5 s", **kwargs}
    with pytest.raises(ValueError, match=field):
        Debounce.make(int, _noop, **args)


@pytest.mark.parametrize(
    ("kwargs", "field"),
    [
        ({"state_schema": int}, "on_event"),
        ({"state_schema": object(), "on_event": _keep}, "state_schema"),
        ({"on_event": "not callable"}, "on_event"),
        ({"retry": 3}, "retry"),
        ({"logging": "loud"}, "logging"),
    ],
)
def test_make_refuses_bad_types(kwargs: dict[str, Any], field: str) -> None:
    args: dict[str, Any] = {"flush_after": "5 s", **kwargs}
    with pytest.raises(TypeError, match=field):
        Debounce.make(int, _noop, **args)


def test_make_refuses_a_bad_event_schema_and_execute() -> None:
    bad_schema: Any = object()
    with pytest.raises(TypeError, match="event_schema"):
        Debounce.make(bad_schema, _noop, "5 s")
    not_callable: Any = 3
    with pytest.raises(TypeError, match="execute"):
        Debounce.make(int, not_callable, "5 s")


def test_make_normalises_its_arguments() -> None:
    job = Debounce.make(
        int,
        _noop,
        1500,
        max_events=10,
        idle_after="1 s",
        retry=Retry(2),
        logging=True,
        dedupe_window="1 hour",
    )
    assert job.job_type == "debounce"
    assert job.flush_after == timedelta(milliseconds=1500)
    assert job.idle_after == timedelta(seconds=1)
    assert job.dedupe_window == timedelta(hours=1)
    assert job.log_level == 10
    assert job.state_schema is int
    assert Debounce.make(int, _noop, "1 s").dedupe_window == timedelta(hours=24)
    assert Debounce.make(int, _noop, "1 s").log_level == 0  # no threshold of its own
    assert Debounce.make(int, _noop, "1 s", logging=False).log_level == 40
    with pytest.raises(TypeError):
        Debounce()


class Created(msgspec.Struct, tag=True):
    name: str


class Deleted(msgspec.Struct, tag=True):
    reason: str


Change = Created | Deleted


async def test_tagged_union_events(url: str) -> None:
    sink = Sink()
    job: DebounceDefinition[Change, Change] = Debounce.make(Change, sink.execute(), "1 s")
    async with TestRuntime({"changes": job}, storage=url) as rt:
        h = rt.client.debounce("changes")
        await h.add(id="c", event={"type": "Created", "name": "x"})
        assert (await h.get_state("c")).state == Created(name="x")
        await h.add(id="c", event=Deleted(reason="spam"))
        assert (await h.get_state("c")).state == Deleted(reason="spam")
        refused = await Effect.run_async(h.add(id="c", event={"type": "Renamed"}))
        assert isinstance(refused.failure(), ValidationError)
        await rt.advance("1 s")
        assert [(r.count, r.state) for r in sink.runs] == [(2, Deleted(reason="spam"))]
