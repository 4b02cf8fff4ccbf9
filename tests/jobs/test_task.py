"""Task jobs: sending events, the state machine, scheduling, the alarm, on_idle, terminate.

Every test runs on memory and on SQLite storage.
"""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Literal

import msgspec
import pytest
from msgspec.structs import replace

from durable_effect import Effect, Gen, ValidationError
from durable_effect._events import JobExecuted, JobStarted, JobTerminated, TaskScheduled
from durable_effect.jobs._task import Task, TaskDefinition, TaskStatusResult
from durable_effect.jobs._task_context import (
    ScheduleInput,
    TaskContext,
    TaskEventContext,
    TaskIdleContext,
)
from tests.jobs._task_support import (
    STORAGES,
    T0,
    Add,
    Box,
    Ev,
    Ping,
    at,
    noop,
    of_type,
    runtime,
    snapshot,
    types_of,
)

pytestmark = pytest.mark.parametrize("kind", STORAGES)


# -- the original's order processor ----------------------------------------------------------


class Order(msgspec.Struct):
    order_id: str
    status: Literal["pending", "processing", "shipped", "delivered"]
    reminders: int = 0


class OrderPlaced(msgspec.Struct, tag=True):
    order_id: str


class PaymentReceived(msgspec.Struct, tag=True):
    pass


class Shipped(msgspec.Struct, tag=True):
    tracking_number: str


OrderEvent = OrderPlaced | PaymentReceived | Shipped


def order_processor(delivered: set[str], reminders: list[str]) -> TaskDefinition[Order, OrderEvent]:
    @Effect.gen
    def on_event(event: OrderEvent, ctx: TaskEventContext[Order]) -> Gen[None, ValidationError]:
        match event:
            case OrderPlaced(order_id=order_id):
                yield from ctx.set_state(Order(order_id=order_id, status="pending"))
                yield from ctx.schedule(timedelta(minutes=5))
            case PaymentReceived():
                yield from ctx.update_state(lambda s: replace(s, status="processing"))
            case Shipped():
                yield from ctx.update_state(lambda s: replace(s, status="shipped"))
                yield from ctx.schedule(timedelta(hours=24))

    @Effect.gen
    def execute(ctx: TaskContext[Order]) -> Gen[None, ValidationError]:
        state = yield from ctx.state
        if state is None:
            return
        if state.status == "pending":
            reminders.append(state.order_id)
            yield from ctx.set_state(replace(state, reminders=state.reminders + 1))
            yield from ctx.schedule("30 minutes")
        elif state.status == "shipped":
            if state.order_id in delivered:
                yield from ctx.update_state(lambda s: replace(s, status="delivered"))
                yield from ctx.terminate()
            yield from ctx.schedule(timedelta(hours=24))

    return Task.make(Order, OrderPlaced | PaymentReceived | Shipped, on_event, execute)


async def test_order_state_machine_over_several_events(kind: str, tmp_path: Path) -> None:
    delivered: set[str] = set()
    reminders: list[str] = []
    job = order_processor(delivered, reminders)
    async with runtime(kind, tmp_path, orderProcessor=job) as rt:
        orders = rt.client.task(job)

        placed = await orders.send(id="order-789", event=OrderPlaced(order_id="o-1"))
        assert placed.created is True
        assert placed.instance_id == "task:orderProcessor:order-789"
        assert placed.scheduled_at == at(minutes=5)

        await rt.advance("5 minutes")  # still pending: a reminder, check again in 30 minutes
        assert reminders == ["o-1"]
        assert (await orders.get_state("order-789")).state == Order(
            order_id="o-1", status="pending", reminders=1
        )
        assert (await orders.status("order-789")).scheduled_at == at(minutes=35)

        paid = await orders.send(id="order-789", event=PaymentReceived())
        assert paid.created is False
        assert paid.scheduled_at == at(minutes=35)  # on_event left the schedule alone

        await rt.advance("30 minutes")  # processing: execute does nothing, the task is idle
        status = await orders.status("order-789")
        assert status.status == "idle"
        assert status.scheduled_at is None
        assert (status.event_count, status.execute_count) == (2, 2)

        shipped = await orders.send(id="order-789", event=Shipped(tracking_number="T1"))
        assert shipped.scheduled_at == at(minutes=35, hours=24)
        await rt.advance("24 hours")  # not delivered yet: check again tomorrow
        assert (await orders.status("order-789")).scheduled_at == at(minutes=35, hours=48)

        delivered.add("o-1")
        await rt.advance("24 hours")  # delivered: execute terminates the task
        gone = await orders.status("order-789")
        assert gone.status == "not_found"
        assert (await orders.get_state("order-789")).state is None
        assert not (await snapshot(rt, "task:orderProcessor:order-789")).exists
        assert reminders == ["o-1"]
        assert types_of(rt.events)[-1] == "job.terminated"


# -- send ------------------------------------------------------------------------------------


def box_job(
    on_event: Callable[[Ev, TaskEventContext[Box]], Effect[None, BaseException]] | None = None,
    execute: Callable[[TaskContext[Box]], Effect[None, BaseException]] = noop,
    on_idle: Callable[[TaskIdleContext[Box]], Effect[None, BaseException]] | None = None,
) -> TaskDefinition[Box, Ev]:
    """A Task over ``Box`` whose default ``on_event`` adds ``Add.n`` to the state."""

    @Effect.gen
    def add(event: Ev, ctx: TaskEventContext[Box]) -> Gen[None, ValidationError]:
        state = yield from ctx.state
        n = event.n if isinstance(event, Add) else 0
        yield from ctx.set_state(Box(n=(state.n if state else 0) + n))

    return Task.make(Box, Add | Ping, on_event or add, execute, on_idle=on_idle)


async def test_send_creates_the_instance(kind: str, tmp_path: Path) -> None:
    job = box_job()
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        first = await boxes.send(id="a", event=Add(n=2))
        assert (first.created, first.instance_id, first.scheduled_at) == (True, "task:box:a", None)
        second = await boxes.send(id="a", event=Add(n=3))
        assert second.created is False
        assert await boxes.status("a") == TaskStatusResult(
            status="idle", scheduled_at=None, event_count=2, execute_count=0, created_at=T0
        )
        assert (await boxes.get_state("a")).state == Box(n=5)
        started = of_type(rt.events, JobStarted)
        assert len(started) == 1
        assert (started[0].instance_id, started[0].id) == ("task:box:a", "a")
        assert (started[0].job_type, started[0].job_name, started[0].timestamp) == (
            "task",
            "box",
            T0,
        )


async def test_is_first_event_only_for_the_event_that_creates_the_instance(
    kind: str, tmp_path: Path
) -> None:
    seen: list[bool] = []

    @Effect.gen
    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Gen[None, ValidationError]:
        seen.append(ctx.is_first_event)
        if isinstance(event, Ping):
            yield from ctx.terminate()
        yield from Effect.succeed(None)

    job = box_job(on_event)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Add(n=1))
        await boxes.send(id="a", event=Add(n=1))
        await boxes.send(id="a", event=Ping())  # terminates
        await boxes.send(id="a", event=Add(n=1))  # starts afresh
        assert seen == [True, False, False, True]


async def test_state_is_live_within_a_handler(kind: str, tmp_path: Path) -> None:
    """**fix**: after ``set_state``, ``state`` gives the new value in the same handler."""
    seen: list[object] = []

    @Effect.gen
    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Gen[None, ValidationError]:
        seen.append((yield from ctx.state))
        yield from ctx.set_state(Box(n=1))
        seen.append((yield from ctx.state))
        yield from ctx.update_state(lambda s: Box(n=s.n + 10))
        seen.append((yield from ctx.state))

    @Effect.gen
    def execute(ctx: TaskContext[Box]) -> Gen[None, ValidationError]:
        yield from ctx.update_state(lambda s: Box(n=s.n * 2))
        seen.append((yield from ctx.state))

    job = box_job(on_event, execute)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Ping())
        assert seen == [None, Box(n=1), Box(n=11)]
        await boxes.trigger("a")
        assert seen[-1] == Box(n=22)
        assert (await boxes.get_state("a")).state == Box(n=22)


async def test_update_state_does_nothing_while_the_state_is_none(kind: str, tmp_path: Path) -> None:
    calls: list[Box] = []

    def bump(s: Box) -> Box:
        calls.append(s)
        return Box(n=s.n + 1)

    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Effect[None, ValidationError]:
        return ctx.update_state(bump)

    job = box_job(on_event)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Ping())
        assert calls == []
        assert (await boxes.get_state("a")).state is None
        assert (await boxes.status("a")).status == "idle"


async def test_counters_and_created_at_in_contexts(kind: str, tmp_path: Path) -> None:
    seen: list[tuple[str, int, int, datetime]] = []

    @Effect.gen
    def record(ctx: TaskContext[Box], where: str) -> Gen[None, ValidationError]:
        events = yield from ctx.event_count
        executes = yield from ctx.execute_count
        created = yield from ctx.created_at
        seen.append((where, events, executes, created))

    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Effect[None, ValidationError]:
        return record(ctx, "on_event")

    def execute(ctx: TaskContext[Box]) -> Effect[None, ValidationError]:
        return record(ctx, "execute")

    job = box_job(on_event, execute)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Ping())
        await rt.advance("1 minute")
        await boxes.send(id="a", event=Ping())
        await boxes.trigger("a")
        assert seen == [
            ("on_event", 1, 0, T0),
            ("on_event", 2, 0, T0),
            ("execute", 2, 1, T0),
        ]
        assert (await boxes.status("a")).created_at == T0


async def test_context_identifiers(kind: str, tmp_path: Path) -> None:
    seen: list[tuple[str, str, str]] = []

    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Effect[None]:
        seen.append((ctx.instance_id, ctx.id, ctx.job_name))
        return Effect.succeed(None)

    job = box_job(on_event)
    async with runtime(kind, tmp_path, orders=job) as rt:
        await rt.client.task(job).send(id="x:1", event=Ping())
        assert seen == [("task:orders:x:1", "x:1", "orders")]


# -- schedule --------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("when", "expected"),
    [
        (timedelta(seconds=30), at(seconds=30)),
        ("30 seconds", at(seconds=30)),
        ("30s", at(seconds=30)),
        ("2.5 hours", at(hours=2.5)),
        ("1 week", at(hours=24 * 7)),
        (at(minutes=90), at(minutes=90)),
        (datetime(2026, 1, 1, 3, 0, tzinfo=timezone(timedelta(hours=2))), at(hours=1)),
        (int(at(minutes=10).timestamp() * 1000), at(minutes=10)),
        (at(minutes=10).timestamp() * 1000 + 500.0, at(minutes=10, seconds=0.5)),
    ],
    ids=[
        "timedelta",
        "duration-words",
        "duration-short",
        "fractional",
        "week",
        "aware-datetime",
        "other-timezone",
        "epoch-ms-int",
        "epoch-ms-float",
    ],
)
async def test_schedule_accepts_every_when_form(
    kind: str, tmp_path: Path, when: ScheduleInput, expected: datetime
) -> None:
    fired: list[datetime] = []

    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Effect[None, ValidationError]:
        return ctx.schedule(when)

    def execute(ctx: TaskContext[Box]) -> Effect[None]:
        return Effect.sync(lambda: fired.append(T0)).map(lambda _: None)

    job = box_job(on_event, execute)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        sent = await boxes.send(id="a", event=Ping())
        assert sent.scheduled_at == expected
        assert sent.scheduled_at.tzinfo == UTC
        status = await boxes.status("a")
        assert (status.status, status.scheduled_at) == ("active", expected)
        assert (await boxes.get_state("a")).scheduled_at == expected
        scheduled = of_type(rt.events, TaskScheduled)
        assert [(e.scheduled_at, e.trigger) for e in scheduled] == [(expected, "event")]
        await rt.advance(expected - T0 - timedelta(milliseconds=1))
        assert fired == []  # never early
        await rt.advance(timedelta(milliseconds=1))
        assert len(fired) == 1


async def test_a_past_instant_fires_at_once(kind: str, tmp_path: Path) -> None:
    fired: list[datetime] = []

    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Effect[None, ValidationError]:
        return ctx.schedule(at(minutes=-5))

    def execute(ctx: TaskContext[Box]) -> Effect[None]:
        return Effect.sync(lambda: fired.append(T0)).map(lambda _: None)

    job = box_job(on_event, execute)
    async with runtime(kind, tmp_path, box=job) as rt:
        await rt.client.task(job).send(id="a", event=Ping())
        await rt.run_until_idle()
        assert len(fired) == 1


async def test_the_last_schedule_call_of_a_handler_wins(kind: str, tmp_path: Path) -> None:
    seen: list[datetime | None] = []

    @Effect.gen
    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Gen[None, ValidationError]:
        seen.append((yield from ctx.get_scheduled_time()))
        yield from ctx.schedule("10 minutes")
        seen.append((yield from ctx.get_scheduled_time()))
        yield from ctx.schedule("3 minutes")
        seen.append((yield from ctx.get_scheduled_time()))
        if isinstance(event, Ping):
            yield from ctx.cancel_schedule()
            seen.append((yield from ctx.get_scheduled_time()))

    job = box_job(on_event)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        sent = await boxes.send(id="a", event=Add(n=1))
        assert sent.scheduled_at == at(minutes=3)
        assert seen == [None, at(minutes=10), at(minutes=3)]
        assert [e.scheduled_at for e in of_type(rt.events, TaskScheduled)] == [at(minutes=3)]

        cancelled = await boxes.send(id="a", event=Ping())
        assert cancelled.scheduled_at is None
        assert seen[3:] == [at(minutes=3), at(minutes=10), at(minutes=3), None]
        assert (await boxes.status("a")).status == "idle"
        assert len(of_type(rt.events, TaskScheduled)) == 1  # a cancelled schedule emits nothing


async def test_a_handler_that_does_not_touch_the_schedule_keeps_it(
    kind: str, tmp_path: Path
) -> None:
    @Effect.gen
    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Gen[None, ValidationError]:
        if isinstance(event, Add):
            yield from ctx.schedule("1 hour")
        yield from Effect.succeed(None)

    job = box_job(on_event)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Add(n=1))
        await rt.advance("10 minutes")
        assert (await boxes.send(id="a", event=Ping())).scheduled_at == at(hours=1)


# -- the alarm -------------------------------------------------------------------------------


async def test_the_alarm_runs_execute_and_clears_the_schedule_first(
    kind: str, tmp_path: Path
) -> None:
    """**fix**: the stored schedule is cleared before execute runs; the task becomes idle."""
    during: list[tuple[datetime | None, int]] = []
    idle: list[str] = []

    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Effect[None, ValidationError]:
        return ctx.schedule("10 minutes")

    @Effect.gen
    def execute(ctx: TaskContext[Box]) -> Gen[None, ValidationError]:
        scheduled = yield from ctx.get_scheduled_time()
        during.append((scheduled, (yield from ctx.execute_count)))

    def on_idle(ctx: TaskIdleContext[Box]) -> Effect[None]:
        idle.append(ctx.idle_reason)
        return Effect.succeed(None)

    job = box_job(on_event, execute, on_idle)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Ping())
        assert idle == []  # on_event scheduled something: not idle
        await rt.advance("9 minutes")
        assert during == []
        await rt.advance("1 minute")
        assert during == [(None, 1)]
        assert idle == ["execute"]
        status = await boxes.status("a")
        assert (status.status, status.scheduled_at, status.execute_count) == ("idle", None, 1)
        assert (await snapshot(rt, "task:box:a")).alarm_at is None
        executed = of_type(rt.events, JobExecuted)
        assert [(e.run_count, e.attempt, e.timestamp) for e in executed] == [(1, 1, at(minutes=10))]


async def test_execute_can_schedule_itself_again(kind: str, tmp_path: Path) -> None:
    runs: list[int] = []

    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Effect[None, ValidationError]:
        return ctx.schedule("1 minute")

    @Effect.gen
    def execute(ctx: TaskContext[Box]) -> Gen[None, ValidationError]:
        count = yield from ctx.execute_count
        runs.append(count)
        if count < 3:
            yield from ctx.schedule(timedelta(minutes=1))

    job = box_job(on_event, execute)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Ping())
        await rt.advance("10 minutes")
        assert runs == [1, 2, 3]
        triggers = [(e.trigger, e.scheduled_at) for e in of_type(rt.events, TaskScheduled)]
        assert triggers == [
            ("event", at(minutes=1)),
            ("execute", at(minutes=2)),
            ("execute", at(minutes=3)),
        ]
        assert (await boxes.status("a")).status == "idle"


async def test_pre_execution_state_and_payloads_of_job_executed(kind: str, tmp_path: Path) -> None:
    @Effect.gen
    def execute(ctx: TaskContext[Box]) -> Gen[None, ValidationError]:
        yield from ctx.update_state(lambda s: Box(n=s.n + 100))

    job = box_job(execute=execute)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Add(n=7))
        await boxes.trigger("a")
        (executed,) = of_type(rt.events, JobExecuted)
        assert executed.pre_execution_state == {"n": 7, "log": []}
        assert (executed.run_count, executed.attempt, executed.duration_ms) == (1, 1, 0)
        wire = executed.to_wire()
        assert wire["type"] == "job.executed"
        assert wire["instanceId"] == "task:box:a"
        assert wire["jobType"] == "task"
        assert wire["timestamp"] == "2026-01-01T00:00:00.000Z"


# -- on_idle ---------------------------------------------------------------------------------


async def test_on_idle_after_on_event_when_nothing_is_scheduled(kind: str, tmp_path: Path) -> None:
    reasons: list[str] = []

    @Effect.gen
    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Gen[None, ValidationError]:
        if isinstance(event, Add):
            yield from ctx.schedule("5 minutes")
        yield from ctx.set_state(Box(n=1))

    @Effect.gen
    def on_idle(ctx: TaskIdleContext[Box]) -> Gen[None, ValidationError]:
        reasons.append(ctx.idle_reason)
        state = yield from ctx.state  # sees what on_event wrote
        assert state == Box(n=1)
        yield from ctx.schedule("1 hour")  # e.g. schedule a cleanup

    job = box_job(on_event, on_idle=on_idle)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        scheduled = await boxes.send(id="a", event=Add(n=1))
        assert scheduled.scheduled_at == at(minutes=5)
        assert reasons == []
        await boxes.send(id="b", event=Ping())
        assert reasons == ["on_event"]
        assert (await boxes.status("b")).scheduled_at == at(hours=1)
        assert [(e.id, e.trigger) for e in of_type(rt.events, TaskScheduled)] == [
            ("a", "event"),
            ("b", "idle"),
        ]
        await rt.advance("5 minutes")  # a's execute schedules nothing: idle → on_idle
        assert reasons == ["on_event", "execute"]
        assert (await boxes.status("a")).scheduled_at == at(hours=1, minutes=5)


async def test_on_idle_keeps_firing_after_every_idle_execute(kind: str, tmp_path: Path) -> None:
    """**fix**: the original's stale schedule stopped on_idle after the first alarm."""
    reasons: list[str] = []

    def on_idle(ctx: TaskIdleContext[Box]) -> Effect[None, ValidationError]:
        reasons.append(ctx.idle_reason)
        return ctx.schedule("10 minutes")

    job = box_job(on_idle=on_idle)
    async with runtime(kind, tmp_path, box=job) as rt:
        await rt.client.task(job).send(id="a", event=Ping())
        await rt.advance("30 minutes")
        assert reasons == ["on_event", "execute", "execute", "execute"]


# -- trigger ---------------------------------------------------------------------------------


async def test_trigger_runs_execute_now_and_keeps_the_schedule(kind: str, tmp_path: Path) -> None:
    runs: list[datetime | None] = []

    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Effect[None, ValidationError]:
        return ctx.schedule("1 hour")

    @Effect.gen
    def execute(ctx: TaskContext[Box]) -> Gen[None, ValidationError]:
        runs.append((yield from ctx.get_scheduled_time()))

    job = box_job(on_event, execute)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Ping())
        result = await boxes.trigger("a")
        assert result.triggered is True
        assert runs == [at(hours=1)]
        status = await boxes.status("a")
        assert (status.status, status.scheduled_at, status.execute_count) == (
            "active",
            at(hours=1),
            1,
        )
        await rt.advance("1 hour")
        assert runs == [at(hours=1), None]
        assert (await boxes.status("a")).execute_count == 2


async def test_trigger_of_an_absent_instance_does_nothing(kind: str, tmp_path: Path) -> None:
    runs: list[int] = []

    def execute(ctx: TaskContext[Box]) -> Effect[None]:
        runs.append(1)
        return Effect.succeed(None)

    job = box_job(execute=execute)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        assert (await boxes.trigger("nobody")).triggered is False
        assert runs == []
        assert (await boxes.status("nobody")).status == "not_found"
        assert not (await snapshot(rt, "task:box:nobody")).exists
        assert rt.events == []


async def test_trigger_then_on_idle_with_reason_execute(kind: str, tmp_path: Path) -> None:
    reasons: list[str] = []

    def on_idle(ctx: TaskIdleContext[Box]) -> Effect[None]:
        reasons.append(ctx.idle_reason)
        return Effect.succeed(None)

    job = box_job(on_idle=on_idle)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Ping())
        await boxes.trigger("a")
        assert reasons == ["on_event", "execute"]


# -- terminate -------------------------------------------------------------------------------


async def test_terminate_from_the_client(kind: str, tmp_path: Path) -> None:
    runs: list[int] = []

    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Effect[None, ValidationError]:
        return ctx.set_state(Box(n=1)).flat_map(lambda _: ctx.schedule("5 minutes"))

    def execute(ctx: TaskContext[Box]) -> Effect[None]:
        runs.append(1)
        return Effect.succeed(None)

    job = box_job(on_event, execute)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Ping())
        rt.clock.advance(timedelta(minutes=1))
        assert (await boxes.terminate("a")).terminated is True
        assert (await boxes.status("a")).status == "not_found"
        assert (await boxes.get_state("a")).state is None
        assert not (await snapshot(rt, "task:box:a")).exists
        await rt.advance("10 minutes")
        assert runs == []  # the alarm was cancelled
        (terminated,) = of_type(rt.events, JobTerminated)
        assert (terminated.instance_id, terminated.timestamp) == ("task:box:a", at(minutes=1))
        assert (await boxes.terminate("a")).terminated is False

        again = await boxes.send(id="a", event=Ping())  # the id starts afresh
        assert again.created is True
        status = await boxes.status("a")
        assert (status.event_count, status.created_at) == (1, at(minutes=11))


async def test_terminate_from_execute_stops_it_there(kind: str, tmp_path: Path) -> None:
    after: list[str] = []

    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Effect[None, ValidationError]:
        return ctx.set_state(Box(n=1)).flat_map(lambda _: ctx.schedule("5 minutes"))

    @Effect.gen
    def execute(ctx: TaskContext[Box]) -> Gen[None, ValidationError]:
        yield from ctx.set_state(Box(n=2))
        yield from ctx.terminate("done")

    def on_idle(ctx: TaskIdleContext[Box]) -> Effect[None]:
        after.append("on_idle")
        return Effect.succeed(None)

    job = box_job(on_event, execute, on_idle)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Ping())
        await rt.advance("5 minutes")
        assert (await boxes.status("a")).status == "not_found"
        assert not (await snapshot(rt, "task:box:a")).exists
        assert after == []  # a terminated task is not idle
        (terminated,) = of_type(rt.events, JobTerminated)
        assert (terminated.reason, terminated.run_count) == ("done", 1)
        assert "job.executed" not in types_of(rt.events)


async def test_terminate_from_on_event(kind: str, tmp_path: Path) -> None:
    @Effect.gen
    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Gen[None, ValidationError]:
        yield from ctx.set_state(Box(n=1))
        yield from ctx.schedule("5 minutes")
        if isinstance(event, Ping):
            yield from ctx.terminate()

    job = box_job(on_event)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Add(n=1))
        sent = await boxes.send(id="a", event=Ping())
        assert (sent.created, sent.scheduled_at) == (False, None)
        assert (await boxes.status("a")).status == "not_found"
        assert not (await snapshot(rt, "task:box:a")).exists
        assert types_of(rt.events) == [
            "job.started",
            "task.scheduled",
            "job.terminated",
        ]


# -- status and get_state --------------------------------------------------------------------


async def test_status_and_get_state_of_an_absent_instance(kind: str, tmp_path: Path) -> None:
    job = box_job()
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        assert await boxes.status("nope") == TaskStatusResult(
            status="not_found", scheduled_at=None, event_count=0, execute_count=0, created_at=None
        )
        state = await boxes.get_state("nope")
        assert (state.state, state.scheduled_at, state.created_at) == (None, None, None)


async def test_get_state_reports_state_schedule_and_creation(kind: str, tmp_path: Path) -> None:
    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Effect[None, ValidationError]:
        return ctx.set_state(Box(n=4, log=["x"])).flat_map(lambda _: ctx.schedule("2 hours"))

    job = box_job(on_event)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        rt.clock.advance(timedelta(minutes=3))
        await boxes.send(id="a", event=Ping())
        state = await boxes.get_state("a")
        assert state.state == Box(n=4, log=["x"])
        assert (state.scheduled_at, state.created_at) == (at(minutes=123), at(minutes=3))


# -- client calls are lazy; ids --------------------------------------------------------------


async def test_client_calls_are_lazy_and_rerunnable(kind: str, tmp_path: Path) -> None:
    job = box_job()
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        send = boxes.send(id="a", event=Add(n=1))
        assert (await boxes.status("a")).status == "not_found"  # nothing sent yet
        await send
        await send
        assert (await boxes.get_state("a")).state == Box(n=2)


@pytest.mark.parametrize(
    "id_",
    [
        "ünïcødé-✓",
        "a:b:c",
        "quote'\"`",
        "x'); DROP TABLE records; --",
        "100% _like_ %",
        "/path/like\\this",
        "x" * 500,
        "x" * 512,
    ],
)
async def test_unusual_ids_work(kind: str, tmp_path: Path, id_: str) -> None:
    job = box_job()
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        sent = await boxes.send(id=id_, event=Add(n=3))
        assert sent.instance_id == f"task:box:{id_}"
        assert (await boxes.get_state(id_)).state == Box(n=3)
        assert (await boxes.trigger(id_)).triggered is True
        assert (await boxes.status(id_)).event_count == 1
        assert (await boxes.terminate(id_)).terminated is True
        assert (await boxes.status(id_)).status == "not_found"


async def test_concurrent_sends_to_one_instance_are_all_applied(kind: str, tmp_path: Path) -> None:
    job = box_job()
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        results = await asyncio.gather(*(boxes.send(id="a", event=Add(n=1)) for _ in range(20)))
        assert sum(r.created for r in results) == 1
        assert (await boxes.get_state("a")).state == Box(n=20)
        assert (await boxes.status("a")).event_count == 20


async def test_wire_form_of_task_events(kind: str, tmp_path: Path) -> None:
    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Effect[None, ValidationError]:
        return ctx.schedule("90 seconds")

    job = box_job(on_event)
    async with runtime(kind, tmp_path, box=job) as rt:
        await rt.client.task(job).send(id="a", event=Ping())
        wire = [e.to_wire() for e in rt.events]
        assert [w["type"] for w in wire] == ["job.started", "task.scheduled"]
        assert wire[0]["input"] == {"type": "Ping"}  # the event that created the instance
        scheduled = wire[1]
        assert scheduled["scheduledAt"] == "2026-01-01T00:01:30.000Z"
        assert scheduled["trigger"] == "event"
        assert (scheduled["instanceId"], scheduled["id"], scheduled["jobName"]) == (
            "task:box:a",
            "a",
            "box",
        )
        assert scheduled["source"] == "job"
        assert len({w["eventId"] for w in wire}) == 2
