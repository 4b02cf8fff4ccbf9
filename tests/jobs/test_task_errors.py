"""Task jobs: bad inputs, failing handlers, rollback, on_error, alarm retries, event ids.

The main suites run on memory and on SQLite storage.
"""

from __future__ import annotations

import logging
from collections.abc import Callable
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, cast

import pytest

from durable_effect import (
    DuplicateEventError,
    Effect,
    ExecutionError,
    Gen,
    JobNotFoundError,
    ValidationError,
)
from durable_effect._backoff import Retry
from durable_effect._events import (
    JobFailed,
    JobRetryExhausted,
    JobStarted,
    JobTerminated,
    TaskScheduled,
)
from durable_effect.jobs._continuous import Continuous, ContinuousContext
from durable_effect.jobs._task import DEFAULT_ALARM_RETRY, Task, TaskDefinition
from durable_effect.jobs._task_context import (
    ScheduleInput,
    TaskContext,
    TaskErrorContext,
    TaskEventContext,
    TaskIdleContext,
)
from durable_effect.testing._runtime import TestRuntime
from tests.jobs._task_support import (
    STORAGES,
    Add,
    Boom,
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

OnEvent = Callable[[Ev, TaskEventContext[Box]], Effect[None, BaseException]]
Execute = Callable[[TaskContext[Box]], Effect[None, BaseException]]
OnIdle = Callable[[TaskIdleContext[Box]], Effect[None, BaseException]]
OnError = Callable[[BaseException, TaskErrorContext[Box]], Effect[None, BaseException]]


@pytest.fixture(params=STORAGES)
def kind(request: pytest.FixtureRequest) -> str:
    return cast(str, request.param)


@Effect.gen
def add_or_fail(event: Ev, ctx: TaskEventContext[Box]) -> Gen[None, Boom | ValidationError]:
    """``Add`` adds to the state and schedules in 1 hour; ``Ping`` writes, then fails."""
    state = yield from ctx.state
    if isinstance(event, Add):
        yield from ctx.set_state(Box(n=(state.n if state else 0) + event.n))
        yield from ctx.schedule("1 hour")
        return
    yield from ctx.set_state(Box(n=99))
    yield from ctx.schedule("1 minute")
    yield from Boom(code=1)


def job_of(
    on_event: OnEvent = add_or_fail,
    execute: Execute = noop,
    on_idle: OnIdle | None = None,
    on_error: OnError | None = None,
    retry: Retry | None = None,
) -> TaskDefinition[Box, Ev]:
    return Task.make(Box, Add | Ping, on_event, execute, on_idle, on_error, retry)


def failure_of(result: object) -> BaseException:
    """The typed failure of a ``run_async`` result."""
    failure = cast(Any, result).failure()
    assert isinstance(failure, BaseException)
    return failure


# -- invalid input writes nothing ------------------------------------------------------------


@pytest.mark.parametrize(
    "bad_event",
    [
        {"type": "Add", "n": "three"},
        {"type": "Nope"},
        {"n": 1},
        Box(n=1),
        Add(n=cast(int, "x")),  # the msgspec trap: an instance is never trusted
        42,
    ],
    ids=["wrong-field-type", "unknown-tag", "no-tag", "other-struct", "bad-instance", "int"],
)
async def test_an_invalid_event_fails_with_validation_error_and_writes_nothing(
    kind: str, tmp_path: Path, bad_event: object
) -> None:
    calls: list[object] = []

    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Effect[None]:
        calls.append(event)
        return Effect.succeed(None)

    job = job_of(on_event)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        result = await Effect.run_async(boxes.send(id="a", event=cast(Ev, bad_event)))
        assert isinstance(failure_of(result), ValidationError)
        assert calls == []
        assert (await boxes.status("a")).status == "not_found"
        assert not (await snapshot(rt, "task:box:a")).exists
        assert await rt.jobs.storage.next_alarm_at() is None
        assert rt.events == []


async def test_an_invalid_event_leaves_an_existing_instance_unchanged(
    kind: str, tmp_path: Path
) -> None:
    job = job_of()
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Add(n=2))
        before = await snapshot(rt, "task:box:a")
        result = await Effect.run_async(boxes.send(id="a", event=cast(Ev, {"type": "Add"})))
        error = failure_of(result)
        assert isinstance(error, ValidationError)
        assert error.path == "$"
        assert "n" in error.message
        assert await snapshot(rt, "task:box:a") == before
        assert (await boxes.status("a")).event_count == 1


@pytest.mark.parametrize(
    "bad_id", ["", "x" * 513, "a\x00b", 123, None], ids=["empty", "513", "nul", "int", "none"]
)
async def test_bad_ids_fail_with_validation_error(
    kind: str, tmp_path: Path, bad_id: object
) -> None:
    job = job_of()
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        id_ = cast(str, bad_id)
        calls: list[Effect[object, BaseException]] = [
            boxes.send(id=id_, event=Add(n=1)),
            boxes.trigger(id_),
            boxes.status(id_),
            boxes.get_state(id_),
            boxes.terminate(id_),
        ]
        for call in calls:
            error = failure_of(await Effect.run_async(call))
            assert isinstance(error, ValidationError)
            assert error.path == "id"
        assert await rt.jobs.storage.next_alarm_at() is None
        assert rt.events == []


@pytest.mark.parametrize("bad_event_id", ["", "a\x00", 7], ids=["empty", "nul", "int"])
async def test_a_bad_event_id_fails_with_validation_error(
    kind: str, tmp_path: Path, bad_event_id: object
) -> None:
    job = job_of()
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        call = boxes.send(id="a", event=Add(n=1), event_id=cast(str, bad_event_id))
        error = failure_of(await Effect.run_async(call))
        assert isinstance(error, ValidationError)
        assert error.path == "event_id"
        assert (await boxes.status("a")).status == "not_found"


async def test_unknown_job_and_wrong_type_handles_fail_with_job_not_found(
    kind: str, tmp_path: Path
) -> None:
    def execute(ctx: ContinuousContext[int]) -> Effect[None]:
        return Effect.succeed(None)

    continuous = Continuous.make(int, Continuous.every("1 hour"), execute)
    job = job_of()
    stranger = job_of()
    async with runtime(kind, tmp_path, box=job, refresher=continuous) as rt:
        for handle in (
            rt.client.task("nope"),
            rt.client.task("refresher"),
            rt.client.task(stranger),
        ):
            calls: list[Effect[object, BaseException]] = [
                handle.send(id="a", event=Add(n=1)),
                handle.trigger("a"),
                handle.status("a"),
                handle.get_state("a"),
                handle.terminate("a"),
            ]
            for call in calls:
                error = failure_of(await Effect.run_async(call))
                assert isinstance(error, JobNotFoundError)
                assert error.job_type == "task"
        assert rt.events == []
        by_name = rt.client.task("box")
        assert (await by_name.send(id="a", event={"type": "Add", "n": 1})).created


# -- failing handlers without on_error --------------------------------------------------------


async def test_a_failing_on_event_fails_the_send_and_writes_nothing(
    kind: str, tmp_path: Path
) -> None:
    job = job_of()
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        error = failure_of(await Effect.run_async(boxes.send(id="a", event=Ping())))
        assert error == ExecutionError(
            job_type="task", job_name="box", instance_id="task:box:a", cause=Boom(code=1)
        )
        assert (await boxes.status("a")).status == "not_found"
        assert not (await snapshot(rt, "task:box:a")).exists
        # Nothing was written, but the call's events are reported: its job.started first.
        assert types_of(rt.events) == ["job.started", "job.failed"]
        assert of_type(rt.events, JobStarted)[0].input == {"type": "Ping"}
        (failed,) = of_type(rt.events, JobFailed)
        assert failed.error.message == "Boom: code=1"
        assert failed.will_retry is False

        await boxes.send(id="a", event=Add(n=1))
        before = await snapshot(rt, "task:box:a")
        with pytest.raises(ExecutionError):
            await boxes.send(id="a", event=Ping())
        assert await snapshot(rt, "task:box:a") == before  # state, counters, schedule kept


async def test_a_defect_in_a_handler_is_the_execution_errors_cause(
    kind: str, tmp_path: Path
) -> None:
    bug = ZeroDivisionError("oops")

    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Effect[None, ValidationError]:
        def explode() -> None:
            raise bug

        return ctx.set_state(Box(n=1)).flat_map(lambda _: Effect.sync(explode))

    def building_fails(event: Ev, ctx: TaskEventContext[Box]) -> Effect[None]:
        raise bug

    for handler in (on_event, building_fails):
        job = job_of(handler)
        (tmp_path / handler.__name__).mkdir()
        async with runtime(kind, tmp_path / handler.__name__, box=job) as rt:
            boxes = rt.client.task(job)
            error = failure_of(await Effect.run_async(boxes.send(id="a", event=Ping())))
            assert isinstance(error, ExecutionError)
            assert error.cause is bug  # never confused with a typed failure
            assert (await boxes.status("a")).status == "not_found"


async def test_an_invalid_state_in_set_state_fails_the_handler(kind: str, tmp_path: Path) -> None:
    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Effect[None, ValidationError]:
        return ctx.set_state(Box(n=cast(int, "many")))

    job = job_of(on_event)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        error = failure_of(await Effect.run_async(boxes.send(id="a", event=Ping())))
        assert isinstance(error, ExecutionError)
        assert isinstance(error.cause, ValidationError)
        assert error.cause.path == "$.n"
        assert (await boxes.status("a")).status == "not_found"


@pytest.mark.parametrize(
    "when",
    [
        "soon",
        "-5 minutes",
        "",
        timedelta(seconds=-1),
        datetime(2026, 1, 2),  # naive
        float("nan"),
        float("inf"),
        10**30,
        True,
        cast(ScheduleInput, object()),
        cast(ScheduleInput, None),
    ],
    ids=[
        "garbage",
        "negative-string",
        "empty",
        "negative-timedelta",
        "naive-datetime",
        "nan",
        "inf",
        "huge-epoch",
        "bool",
        "object",
        "none",
    ],
)
async def test_a_bad_schedule_input_fails_with_validation_error(
    kind: str, tmp_path: Path, when: ScheduleInput
) -> None:
    errors: list[BaseException] = []

    @Effect.gen
    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Gen[None, ValidationError]:
        yield from ctx.set_state(Box(n=1))
        yield from ctx.schedule(when)

    def on_error(error: BaseException, ctx: TaskErrorContext[Box]) -> Effect[None]:
        errors.append(error)
        return Effect.succeed(None)

    plain = job_of(on_event)
    handled = job_of(on_event, on_error=on_error)
    async with runtime(kind, tmp_path, plain=plain, handled=handled) as rt:
        error = failure_of(await Effect.run_async(rt.client.task(plain).send(id="a", event=Ping())))
        assert isinstance(error, ExecutionError)
        assert isinstance(error.cause, ValidationError)
        assert (error.cause.schema, error.cause.path) == ("schedule", "when")
        assert (await rt.client.task(plain).status("a")).status == "not_found"

        sent = await rt.client.task(handled).send(id="a", event=Ping())
        assert sent.scheduled_at is None
        assert [type(e) for e in errors] == [ValidationError]
        assert (await rt.client.task(handled).get_state("a")).state is None  # rolled back


# -- rollback and on_error -------------------------------------------------------------------


async def test_a_failed_handler_is_rolled_back_before_on_error_runs(
    kind: str, tmp_path: Path
) -> None:
    """**fix**: on_error sees the state as it was before the failed handler."""
    seen: list[tuple[BaseException, str, object, datetime | None]] = []

    @Effect.gen
    def on_error(error: BaseException, ctx: TaskErrorContext[Box]) -> Gen[None, ValidationError]:
        state = yield from ctx.state
        scheduled = yield from ctx.get_scheduled_time()
        seen.append((error, ctx.error_source, state, scheduled))
        yield from ctx.update_state(lambda s: Box(n=s.n, log=[*s.log, "handled"]))
        yield from ctx.schedule("5 minutes")

    job = job_of(on_error=on_error)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Add(n=1))  # state n=1, scheduled in 1 hour
        sent = await boxes.send(id="a", event=Ping())  # writes n=99 + 1 minute, then fails
        assert sent.scheduled_at == at(minutes=5)
        assert seen == [(Boom(code=1), "on_event", Box(n=1), at(hours=1))]
        assert (await boxes.get_state("a")).state == Box(n=1, log=["handled"])
        status = await boxes.status("a")
        assert (status.event_count, status.scheduled_at) == (2, at(minutes=5))
        (failed,) = of_type(rt.events, JobFailed)
        assert (failed.error.message, failed.will_retry) == ("Boom: code=1", False)
        scheduled = of_type(rt.events, TaskScheduled)
        assert [e.trigger for e in scheduled] == ["event", "error"]


async def test_on_error_that_fails_too_fails_the_call_and_writes_nothing(
    kind: str, tmp_path: Path
) -> None:
    def on_error(
        error: BaseException, ctx: TaskErrorContext[Box]
    ) -> Effect[None, Boom | ValidationError]:
        return ctx.set_state(Box(n=5)).flat_map(lambda _: Effect.fail(Boom(code=2)))

    job = job_of(on_error=on_error)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        error = failure_of(await Effect.run_async(boxes.send(id="a", event=Ping())))
        assert isinstance(error, ExecutionError)
        assert error.cause == Boom(code=2)
        assert (await boxes.status("a")).status == "not_found"
        messages = [e.error.message for e in of_type(rt.events, JobFailed)]
        assert messages == ["Boom: code=1", "Boom: code=2"]


async def test_on_error_can_terminate(kind: str, tmp_path: Path) -> None:
    def on_error(error: BaseException, ctx: TaskErrorContext[Box]) -> Effect[None]:
        return ctx.terminate("gave up")

    job = job_of(on_error=on_error)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Add(n=1))
        await boxes.send(id="a", event=Ping())
        assert (await boxes.status("a")).status == "not_found"
        assert [e.reason for e in of_type(rt.events, JobTerminated)] == ["gave up"]


async def test_a_failing_trigger_fails_with_execution_error_and_writes_nothing(
    kind: str, tmp_path: Path
) -> None:
    def execute(ctx: TaskContext[Box]) -> Effect[None, Boom | ValidationError]:
        return ctx.set_state(Box(n=-1)).flat_map(lambda _: Effect.fail(Boom(code=3)))

    job = job_of(execute=execute)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Add(n=1))
        before = await snapshot(rt, "task:box:a")
        error = failure_of(await Effect.run_async(boxes.trigger("a")))
        assert isinstance(error, ExecutionError)
        assert error.cause == Boom(code=3)
        assert await snapshot(rt, "task:box:a") == before
        assert (await boxes.status("a")).execute_count == 0
        assert "job.executed" not in types_of(rt.events)


async def test_execute_failing_on_the_alarm_goes_to_on_error_then_on_idle(
    kind: str, tmp_path: Path
) -> None:
    trail: list[str] = []

    def execute(ctx: TaskContext[Box]) -> Effect[None, Boom | ValidationError]:
        trail.append("execute")
        return ctx.schedule("1 minute").flat_map(lambda _: Effect.fail(Boom(code=4)))

    def on_error(error: BaseException, ctx: TaskErrorContext[Box]) -> Effect[None]:
        trail.append(f"on_error:{ctx.error_source}")
        return Effect.succeed(None)

    def on_idle(ctx: TaskIdleContext[Box]) -> Effect[None]:
        trail.append(f"on_idle:{ctx.idle_reason}")
        return Effect.succeed(None)

    job = job_of(execute=execute, on_idle=on_idle, on_error=on_error)
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Add(n=1))
        await rt.advance("2 hours")
        assert trail == ["execute", "on_error:execute", "on_idle:execute"]  # no retry
        status = await boxes.status("a")
        assert (status.status, status.execute_count) == ("idle", 1)


async def test_a_failing_on_idle(kind: str, tmp_path: Path) -> None:
    sources: list[str] = []

    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Effect[None, ValidationError]:
        return ctx.set_state(Box(n=1))

    def on_idle(ctx: TaskIdleContext[Box]) -> Effect[None, Boom | ValidationError]:
        return ctx.set_state(Box(n=2)).flat_map(lambda _: Effect.fail(Boom(code=5)))

    def on_error(error: BaseException, ctx: TaskErrorContext[Box]) -> Effect[None]:
        sources.append(ctx.error_source)
        return Effect.succeed(None)

    plain = job_of(on_event, on_idle=on_idle)
    handled = job_of(on_event, on_idle=on_idle, on_error=on_error)
    async with runtime(kind, tmp_path, plain=plain, handled=handled) as rt:
        error = failure_of(await Effect.run_async(rt.client.task(plain).send(id="a", event=Ping())))
        assert isinstance(error, ExecutionError)
        assert error.cause == Boom(code=5)
        assert (await rt.client.task(plain).status("a")).status == "not_found"

        await rt.client.task(handled).send(id="a", event=Ping())
        assert sources == ["on_idle"]
        assert (await rt.client.task(handled).get_state("a")).state == Box(n=1)


# -- alarm retries ---------------------------------------------------------------------------


def failing_execute(
    attempts: list[datetime], rt_ref: list[TestRuntime], *, fail_times: int = 1000
) -> Execute:
    @Effect.gen
    def execute(ctx: TaskContext[Box]) -> Gen[None, Boom | ValidationError]:
        attempts.append(rt_ref[0].clock.now())
        yield from ctx.update_state(lambda s: Box(n=s.n, log=[*s.log, "attempt"]))
        if len(attempts) <= fail_times:
            yield from Boom(code=len(attempts))
        yield from ctx.update_state(lambda s: Box(n=s.n + 1, log=s.log))

    return execute


async def test_a_failing_alarm_is_retried_like_a_durable_object_alarm(
    kind: str, tmp_path: Path
) -> None:
    attempts: list[datetime] = []
    rt_ref: list[TestRuntime] = []
    job = job_of(execute=failing_execute(attempts, rt_ref))
    assert DEFAULT_ALARM_RETRY.max_attempts == 7
    async with runtime(kind, tmp_path, box=job) as rt:
        rt_ref.append(rt)
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Add(n=1))  # execute in 1 hour
        await rt.advance("1 hour")
        status = await boxes.status("a")
        assert (status.status, status.scheduled_at) == ("active", at(hours=1, seconds=2))
        await rt.advance("10 minutes")
        start = at(hours=1)
        assert [round((t - start).total_seconds()) for t in attempts] == [
            0,
            2,
            6,
            14,
            30,
            62,
            126,
        ]
        failed = of_type(rt.events, JobFailed)
        assert [e.will_retry for e in failed] == [True] * 6 + [False]
        assert [e.attempt for e in failed] == [1, 2, 3, 4, 5, 6, 7]
        assert {e.run_count for e in failed} == {1}
        (exhausted,) = of_type(rt.events, JobRetryExhausted)
        assert (exhausted.attempts, exhausted.reason) == (7, "max_attempts")
        assert exhausted.error.message == "Boom: code=7"
        assert exhausted.timestamp == at(hours=1, seconds=126)
        status = await boxes.status("a")
        assert (status.status, status.scheduled_at, status.execute_count) == ("idle", None, 1)
        assert (await boxes.get_state("a")).state == Box(n=1)  # state kept, attempts discarded


async def test_a_custom_retry_policy_for_the_alarm(kind: str, tmp_path: Path) -> None:
    attempts: list[datetime] = []
    rt_ref: list[TestRuntime] = []
    job = job_of(
        execute=failing_execute(attempts, rt_ref), retry=Retry(3, delay="10 s", jitter=False)
    )
    async with runtime(kind, tmp_path, box=job) as rt:
        rt_ref.append(rt)
        await rt.client.task(job).send(id="a", event=Add(n=1))
        await rt.advance("2 hours")
        assert [round((t - at(hours=1)).total_seconds()) for t in attempts] == [0, 10, 20]
        assert [e.attempts for e in of_type(rt.events, JobRetryExhausted)] == [3]


async def test_a_retry_that_succeeds_sees_the_state_before_the_failed_attempt(
    kind: str, tmp_path: Path
) -> None:
    attempts: list[datetime] = []
    rt_ref: list[TestRuntime] = []
    job = job_of(execute=failing_execute(attempts, rt_ref, fail_times=1))
    async with runtime(kind, tmp_path, box=job) as rt:
        rt_ref.append(rt)
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Add(n=1))
        await rt.advance("2 hours")
        assert len(attempts) == 2
        assert (await boxes.get_state("a")).state == Box(n=2, log=["attempt"])
        status = await boxes.status("a")
        assert (status.status, status.execute_count) == ("idle", 1)
        assert "job.executed" in types_of(rt.events)
        executed = [e for e in rt.events if e.type == "job.executed"]
        assert [(getattr(e, "attempt", None), getattr(e, "run_count", None)) for e in executed] == [
            (2, 1)
        ]


async def test_a_new_schedule_replaces_a_pending_retry(kind: str, tmp_path: Path) -> None:
    attempts: list[datetime] = []
    rt_ref: list[TestRuntime] = []
    job = job_of(execute=failing_execute(attempts, rt_ref, fail_times=1))
    async with runtime(kind, tmp_path, box=job) as rt:
        rt_ref.append(rt)
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Add(n=1))
        await rt.advance("1 hour")  # attempt 1 fails; retry due in 2 s
        await boxes.send(id="a", event=Add(n=1))  # schedules in 1 hour: the retry is gone
        await rt.advance("1 minute")
        assert len(attempts) == 1
        await rt.advance("1 hour")
        assert len(attempts) == 2
        assert (await boxes.status("a")).execute_count == 2  # a fresh execution, not a retry


async def test_an_event_that_does_not_schedule_keeps_the_pending_retry(
    kind: str, tmp_path: Path
) -> None:
    attempts: list[datetime] = []
    rt_ref: list[TestRuntime] = []

    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Effect[None, ValidationError]:
        if isinstance(event, Add):
            return ctx.set_state(Box(n=event.n)).flat_map(lambda _: ctx.schedule("1 hour"))
        return Effect.succeed(None)

    job = job_of(on_event, execute=failing_execute(attempts, rt_ref, fail_times=1))
    async with runtime(kind, tmp_path, box=job) as rt:
        rt_ref.append(rt)
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Add(n=1))
        await rt.advance("1 hour")
        assert (await boxes.send(id="a", event=Ping())).scheduled_at == at(hours=1, seconds=2)
        await rt.advance("5 seconds")
        assert len(attempts) == 2
        assert (await boxes.status("a")).execute_count == 1


async def test_trigger_abandons_a_pending_retry(kind: str, tmp_path: Path) -> None:
    attempts: list[datetime] = []
    rt_ref: list[TestRuntime] = []
    job = job_of(execute=failing_execute(attempts, rt_ref, fail_times=1))
    async with runtime(kind, tmp_path, box=job) as rt:
        rt_ref.append(rt)
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Add(n=1))
        await rt.advance("1 hour")
        assert (await boxes.trigger("a")).triggered is True
        status = await boxes.status("a")
        assert (status.status, status.execute_count) == ("idle", 2)
        await rt.advance("1 hour")
        assert len(attempts) == 2


# -- event ids -------------------------------------------------------------------------------


async def test_a_repeated_event_id_fails_with_duplicate_event_error(
    kind: str, tmp_path: Path
) -> None:
    job = job_of()
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Add(n=1), event_id="evt-1")
        before = await snapshot(rt, "task:box:a")
        with pytest.raises(DuplicateEventError) as caught:
            await boxes.send(id="a", event=Add(n=5), event_id="evt-1")
        assert caught.value == DuplicateEventError(event_id="evt-1")
        assert await snapshot(rt, "task:box:a") == before
        await boxes.send(id="a", event=Add(n=1), event_id="evt-2")
        await boxes.send(id="b", event=Add(n=1), event_id="evt-1")  # ids are per instance
        await boxes.send(id="a", event=Add(n=1))  # no id: never de-duplicated
        await boxes.send(id="a", event=Add(n=1))
        assert (await boxes.get_state("a")).state == Box(n=4)

        with pytest.raises(ExecutionError):  # a failed send does not remember its id
            await boxes.send(id="a", event=Ping(), event_id="evt-3")
        await boxes.send(id="a", event=Add(n=1), event_id="evt-3")

        await rt.advance("25 hours")  # remembered for 24 hours
        await boxes.send(id="a", event=Add(n=1), event_id="evt-1")
        assert (await boxes.status("a")).event_count == 6


async def test_event_ids_are_forgotten_when_the_instance_is_terminated(
    kind: str, tmp_path: Path
) -> None:
    job = job_of()
    async with runtime(kind, tmp_path, box=job) as rt:
        boxes = rt.client.task(job)
        await boxes.send(id="a", event=Add(n=1), event_id="evt-1")
        await boxes.terminate("a")
        assert (await boxes.send(id="a", event=Add(n=1), event_id="evt-1")).created


# -- durability ------------------------------------------------------------------------------


async def test_state_and_schedule_survive_a_restart(tmp_path: Path) -> None:
    runs: list[int] = []

    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Effect[None, ValidationError]:
        return ctx.set_state(Box(n=9)).flat_map(lambda _: ctx.schedule("1 hour"))

    def execute(ctx: TaskContext[Box]) -> Effect[None]:
        runs.append(1)
        return Effect.succeed(None)

    job = job_of(on_event, execute)
    async with runtime("sqlite", tmp_path, box=job) as rt:
        await rt.client.task(job).send(id="a", event=Ping())
    async with runtime("sqlite", tmp_path, box=job) as again:
        boxes = again.client.task(job)
        assert (await boxes.get_state("a")).state == Box(n=9)
        assert (await boxes.status("a")).scheduled_at == at(hours=1)
        await again.advance("1 hour")
        assert runs == [1]


# -- definition-time checks ------------------------------------------------------------------


def test_make_checks_its_arguments() -> None:
    bad: Any = 42
    with pytest.raises(TypeError, match="on_event must be callable"):
        Task.make(Box, Add | Ping, bad, noop)
    with pytest.raises(TypeError, match="execute must be callable"):
        Task.make(Box, Add | Ping, noop, bad)
    with pytest.raises(TypeError, match="on_idle must be callable"):
        Task.make(Box, Add | Ping, noop, noop, on_idle=bad)
    with pytest.raises(TypeError, match="on_error must be callable"):
        Task.make(Box, Add | Ping, noop, noop, on_error=bad)
    with pytest.raises(TypeError, match="state_schema"):
        Task.make(bad, Add | Ping, noop, noop)
    with pytest.raises(TypeError, match="event_schema"):
        Task.make(Box, bad, noop, noop)
    with pytest.raises(TypeError, match="retry must be a Retry"):
        Task.make(Box, Add | Ping, noop, noop, retry=bad)
    with pytest.raises(TypeError, match="logging"):
        Task.make(Box, Add | Ping, noop, noop, logging=cast(Any, "loud"))


def test_logging_levels() -> None:
    assert Task.make(Box, Add | Ping, noop, noop).log_level == logging.NOTSET
    assert Task.make(Box, Add | Ping, noop, noop, logging=False).log_level == logging.ERROR
    assert Task.make(Box, Add | Ping, noop, noop, logging=True).log_level == logging.DEBUG
    assert Task.make(Box, Add | Ping, noop, noop, logging=logging.INFO).log_level == logging.INFO
    assert Task.make(Box, Add | Ping, noop, noop).job_type == "task"


def test_task_is_a_namespace() -> None:
    with pytest.raises(TypeError):
        Task()


# -- logging and stale alarms ----------------------------------------------------------------


@pytest.mark.parametrize(("setting", "logged"), [(False, False), (True, True)])
async def test_handler_logs_follow_the_logging_setting(
    caplog: pytest.LogCaptureFixture, setting: bool, logged: bool
) -> None:
    def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Effect[None]:
        return Effect.log_info("got an event", kind=type(event).__name__)

    job = Task.make(Box, Add | Ping, on_event, noop, logging=setting)
    caplog.set_level(logging.DEBUG, logger="durable_effect")
    async with TestRuntime({"box": job}) as rt:
        await rt.client.task(job).send(id="a", event=Ping())
    records = [r for r in caplog.records if r.getMessage() == "got an event"]
    assert bool(records) is logged
    if logged:
        record = records[0]
        assert (
            getattr(record, "job_type", None),
            getattr(record, "job_name", None),
            getattr(record, "instance_id", None),
        ) == ("task", "box", "task:box:a")


async def test_a_stale_alarm_of_an_absent_instance_is_dropped(kind: str, tmp_path: Path) -> None:
    from durable_effect.storage import InstanceWrite

    runs: list[int] = []

    def execute(ctx: TaskContext[Box]) -> Effect[None]:
        runs.append(1)
        return Effect.succeed(None)

    job = job_of(execute=execute)
    async with runtime(kind, tmp_path, box=job) as rt:
        storage = rt.jobs.storage
        acquired = await storage.acquire(
            ["task:box:ghost"], owner="test", now=rt.clock.now(), ttl=timedelta(seconds=30)
        )
        assert acquired is not None
        write = InstanceWrite(instance_id="task:box:ghost", alarm=at(minutes=1))
        await storage.commit(acquired.leases, [write], release=True)
        await rt.advance("2 minutes")
        assert runs == []
        assert await storage.next_alarm_at() is None
        assert rt.events == []
