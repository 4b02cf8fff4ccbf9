"""Task ``event_id`` dedupe: a configurable ``dedupe_window``, and ids remembered by older
versions (the ``event_ids`` record) still honoured after an upgrade."""

from __future__ import annotations

from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import msgspec
import pytest

from durable_effect import DuplicateEventError, Effect, Gen, ValidationError
from durable_effect.jobs._task import Task, TaskDefinition
from durable_effect.jobs._task_context import TaskEventContext
from durable_effect.jobs._task_records import META, TaskMeta
from durable_effect.storage import InstanceWrite
from tests.jobs._task_support import STORAGES, Add, Box, at, noop, runtime, snapshot

IID = "task:box:a"


@pytest.fixture(params=STORAGES)
def kind(request: pytest.FixtureRequest) -> str:
    return cast(str, request.param)


@Effect.gen
def count(event: Add, ctx: TaskEventContext[Box]) -> Gen[None, ValidationError]:
    state = yield from ctx.state
    yield from ctx.set_state(Box(n=(state.n if state else 0) + event.n))


def job(window: str | None = None) -> TaskDefinition[Box, Add]:
    if window is None:
        return Task.make(Box, Add, count, noop)
    return Task.make(Box, Add, count, noop, dedupe_window=window)


async def test_event_ids_are_remembered_for_the_configured_window(
    kind: str, tmp_path: Path
) -> None:
    box = job("10 minutes")
    async with runtime(kind, tmp_path, box=box) as rt:
        boxes = rt.client.task(box)
        await boxes.send(id="a", event=Add(n=1), event_id="evt-1")
        await rt.advance("9 minutes")
        with pytest.raises(DuplicateEventError):
            await boxes.send(id="a", event=Add(n=1), event_id="evt-1")
        await rt.advance("1 minute")  # ten minutes after it was applied: forgotten
        await boxes.send(id="a", event=Add(n=1), event_id="evt-1")
        assert (await boxes.status("a")).event_count == 2


async def test_the_default_window_is_24_hours(kind: str, tmp_path: Path) -> None:
    box = job()
    assert box.dedupe_window.total_seconds() == 24 * 3600
    async with runtime(kind, tmp_path, box=box) as rt:
        boxes = rt.client.task(box)
        await boxes.send(id="a", event=Add(n=1), event_id="evt-1")
        await rt.advance("23 hours")
        with pytest.raises(DuplicateEventError):
            await boxes.send(id="a", event=Add(n=1), event_id="evt-1")
        await rt.advance("1 hour")
        await boxes.send(id="a", event=Add(n=1), event_id="evt-1")


async def test_ids_remembered_in_the_old_record_are_still_refused(
    kind: str, tmp_path: Path
) -> None:
    box = job("1 hour")
    async with runtime(kind, tmp_path, box=box) as rt:
        boxes = rt.client.task(box)
        # An instance as an older version left it: ``event_ids`` maps an id to when it was
        # applied (one within the window, one long past it).
        old: dict[str, datetime] = {"evt-old": at(), "evt-stale": at(hours=-2)}
        records = {
            "meta": META.codec.encode(TaskMeta(created_at=at(), event_count=1)),
            "state": msgspec.json.encode(Box(n=1)),
            "event_ids": msgspec.json.encode(old),
        }
        storage = rt.jobs.storage
        got = await storage.acquire([IID], owner="old", now=at(), ttl=timedelta(seconds=5))
        assert got is not None
        await storage.commit(got.leases, [InstanceWrite(instance_id=IID, puts=records)])
        with pytest.raises(DuplicateEventError):
            await boxes.send(id="a", event=Add(n=1), event_id="evt-old")
        await boxes.send(id="a", event=Add(n=1), event_id="evt-stale")  # past its window
        stored = (await snapshot(rt, IID)).records
        assert "event_ids" not in stored  # folded into the one dedupe record
        assert b"evt-old" in stored["dedupe"]
        await rt.advance("1 hour")
        await boxes.send(id="a", event=Add(n=1), event_id="evt-old")
        assert (await boxes.status("a")).event_count == 3


@pytest.mark.parametrize("bad", ["0 s", -5, "soon"])
def test_make_refuses_a_bad_dedupe_window(bad: Any) -> None:
    with pytest.raises(ValueError, match="dedupe_window"):
        Task.make(Box, Add, count, noop, dedupe_window=bad)
