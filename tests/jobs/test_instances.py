"""``client.instances(...)``: job instances newest first, by job and status, by cursor.

Runs on memory, SQLite and PostgreSQL with time moved only by the test. The statuses are
what each handle's ``status()`` says, kept in step as instances change: a Task turns
``active`` when it schedules an execution and ``idle`` after it; a Continuous instance is
``running`` or ``paused``; a Debounce instance is listed while its batch is open.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from durable_effect import (
    Continuous,
    ContinuousContext,
    Debounce,
    DebounceContext,
    Effect,
    Gen,
    InstanceInfo,
    InstancePage,
    JobNotFoundError,
    Task,
    TaskContext,
    TaskEventContext,
    ValidationError,
    Workflow,
)
from durable_effect.testing import TestRuntime
from tests.jobs.conftest import KINDS, storage_for

pytestmark = pytest.mark.parametrize("kind", KINDS)


class Count(msgspec.Struct):
    n: int


class Later(msgspec.Struct):
    minutes: int


def tick(ctx: ContinuousContext[Count]) -> Effect[None, Any]:
    return ctx.update_state(lambda c: Count(n=c.n + 1))


def flush(ctx: DebounceContext[Count]) -> Effect[None, Any]:
    return Effect.succeed(None)


@Effect.gen
def plan(event: Later, ctx: TaskEventContext[Count]) -> Gen[None, Any]:
    yield from ctx.set_state(Count(n=event.minutes))
    if event.minutes:
        yield from ctx.schedule(timedelta(minutes=event.minutes))


def run_task(ctx: TaskContext[Count]) -> Effect[None, Any]:
    return Effect.succeed(None)


def noop_run(step: Any, x: int) -> Effect[int]:
    return Effect.succeed(x)


TICKER = Continuous.make(Count, Continuous.every("10 minutes"), tick)
BATCHER = Debounce.make(Count, flush, "5 minutes")
PLANNER = Task.make(Count, Later, plan, run_task)
FLOW = Workflow.make(int, noop_run)


def runtime(kind: str, tmp_path: Path) -> TestRuntime:
    return TestRuntime(
        {"ticker": TICKER, "batcher": BATCHER, "planner": PLANNER, "flow": FLOW},
        storage=storage_for(kind, tmp_path, "instances.db"),
    )


def ids(page: list[InstanceInfo]) -> list[str]:
    return [i.instance_id for i in page]


async def everything(rt: TestRuntime, limit: int, **filters: Any) -> list[str]:
    """Every instance id of a listing, page by page along ``next_cursor``."""
    out: list[str] = []
    after = None
    while True:
        page = await rt.client.instances(limit=limit, after=after, **filters)
        out.extend(ids(page))
        if page.next_cursor is None:
            return out
        after = page.next_cursor


async def test_instances_newest_first_with_their_status_and_alarm(
    kind: str, tmp_path: Path
) -> None:
    async with runtime(kind, tmp_path) as rt:
        client = rt.client
        await client.continuous(TICKER).start(id="t1", input=Count(n=0))
        await rt.advance("1 s")
        await client.task(PLANNER).send(id="p1", event=Later(minutes=30))
        await rt.advance("1 s")
        await client.debounce(BATCHER).add(id="b1", event=Count(n=1))
        await rt.advance("1 s")
        await client.task(PLANNER).send(id="p2", event=Later(minutes=0))
        await rt.advance("1 s")
        await client.workflow(FLOW).trigger(1)  # runs are not job instances
        page = await client.instances()
        assert isinstance(page, InstancePage)
        assert page.next_cursor is None
        assert [(i.id, i.job_type, i.job_name, i.status) for i in page] == [
            ("p2", "task", "planner", "idle"),
            ("b1", "debounce", "batcher", "debouncing"),
            ("p1", "task", "planner", "active"),
            ("t1", "continuous", "ticker", "running"),
        ]
        start = rt.clock.now() - timedelta(seconds=4)
        assert page[3] == InstanceInfo(
            instance_id="continuous:ticker:t1",
            id="t1",
            job_type="continuous",
            job_name="ticker",
            status="running",
            next_alarm_at=start + timedelta(minutes=10),
            created_at=start,
        )
        assert page[2].next_alarm_at == start + timedelta(seconds=1, minutes=30)
        assert page[0].next_alarm_at is None


async def test_status_follows_each_change(kind: str, tmp_path: Path) -> None:
    async with runtime(kind, tmp_path) as rt:
        client = rt.client
        planner = client.task(PLANNER)
        await planner.send(id="p", event=Later(minutes=5))
        assert ids(await client.instances("planner", status="active")) == ["task:planner:p"]
        await rt.advance("5 minutes")  # executed: nothing scheduled any more
        assert await client.instances("planner", status="active") == []
        assert ids(await client.instances("planner", status="idle")) == ["task:planner:p"]
        ticker = client.continuous(TICKER)
        await ticker.start(id="t", input=Count(n=0))
        await ticker.pause("t")
        assert ids(await client.instances(TICKER, status="paused")) == ["continuous:ticker:t"]
        await ticker.resume("t")
        assert ids(await client.instances(TICKER, status=["paused", "running"])) == [
            "continuous:ticker:t"
        ]
        await ticker.terminate("t")
        batcher = client.debounce(BATCHER)
        await batcher.add(id="b", event=Count(n=1))
        assert ids(await client.instances("batcher")) == ["debounce:batcher:b"]
        await batcher.flush("b")  # the batch is gone: so is the instance
        assert await client.instances("batcher") == []
        assert ids(await client.instances()) == ["task:planner:p"]


async def test_cursor_pages_cover_every_instance_once(kind: str, tmp_path: Path) -> None:
    async with runtime(kind, tmp_path) as rt:
        planner = rt.client.task(PLANNER)
        made = []
        for n in range(23):
            await planner.send(id=f"p{n:02d}", event=Later(minutes=n % 3))
            made.append(f"task:planner:p{n:02d}")
            await rt.advance("1 ms")
        assert await everything(rt, 5) == made[::-1]
        assert await everything(rt, 23) == made[::-1]
        idle = [m for n, m in enumerate(made) if n % 3 == 0]
        assert await everything(rt, 3, status="idle") == idle[::-1]
        # instances written meanwhile never shift a page
        first = await rt.client.instances(limit=10)
        await planner.send(id="newer", event=Later(minutes=1))
        rest = await rt.client.instances(limit=50, after=first.next_cursor)
        assert ids(first) + ids(rest) == made[::-1]


async def test_bad_arguments(kind: str, tmp_path: Path) -> None:
    async with runtime(kind, tmp_path) as rt:
        client = rt.client
        await client.task(PLANNER).send(id="p", event=Later(minutes=0))
        await client.task(PLANNER).send(id="q", event=Later(minutes=0))
        theirs = (await client.instances("planner", limit=1)).next_cursor
        cases: list[tuple[dict[str, Any], str]] = [
            ({"status": "sleeping"}, "status"),
            ({"job": "ticker", "status": "idle"}, "status"),  # not a Continuous status
            ({"job": "flow"}, "job"),  # a workflow: list_runs
            ({"job": 3}, "job"),
            ({"limit": -1}, "limit"),
            ({"limit": 5000}, "limit"),
            ({"after": "i1.%%%"}, "after"),
            ({"after": "r1.W10"}, "after"),  # a run cursor
            ({"job": "ticker", "after": theirs}, "after"),  # another job's cursor
        ]
        for bad, field in cases:
            with pytest.raises(ValidationError) as caught:
                await client.instances(**bad)
            assert caught.value.path == field, bad
        with pytest.raises(JobNotFoundError):
            await client.instances("nobody")
        unregistered = Task.make(Count, Later, plan, run_task)
        with pytest.raises(JobNotFoundError):
            await client.instances(unregistered)
