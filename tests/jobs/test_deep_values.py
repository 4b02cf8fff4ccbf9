"""SPEC 10.1: input nested too deep is a ``ValidationError``, never a ``RecursionError``.

Every way a value enters: a Continuous start input and a state set by ``execute``, a
Debounce event and the state ``on_event`` returns, a Task event and a state set by a
handler, a workflow input and a step's output. Each is 100,000 levels deep; each call
fails with a typed error, writes nothing, and the instance keeps working afterwards.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest

from durable_effect import (
    Continuous,
    ContinuousContext,
    Debounce,
    DebounceContext,
    DebounceEventContext,
    Effect,
    ExecutionError,
    Gen,
    Step,
    Task,
    TaskContext,
    TaskEventContext,
    ValidationError,
    Workflow,
)
from durable_effect._codec import codec_for
from durable_effect.testing import TestRuntime
from tests.jobs.conftest import KINDS, storage_for

pytestmark = pytest.mark.parametrize("kind", KINDS)

DEPTH = 100_000


def deep() -> list[Any]:
    value: list[Any] = []
    for _ in range(DEPTH):
        value = [value]
    return value


def nothing_of(rt: TestRuntime) -> list[str]:
    return [event.type for event in rt.events]


def assert_too_deep(error: BaseException) -> None:
    assert isinstance(error, ValidationError), repr(error)
    assert error.message == "nested too deeply"


async def test_continuous_input_and_state(kind: str, tmp_path: Path) -> None:
    @Effect.gen
    def execute(ctx: ContinuousContext[object]) -> Gen[None, ValidationError]:
        state = yield from ctx.state
        if state == "go deep":
            yield from ctx.set_state(deep())

    job = Continuous.make(object, Continuous.every("1 min"), execute)
    async with TestRuntime({"c": job}, storage=storage_for(kind, tmp_path)) as rt:
        handle = rt.client.continuous(job)
        with pytest.raises(ValidationError) as refused:
            await handle.start(id="a", input=deep())
        assert_too_deep(refused.value)
        assert (await handle.status("a")).status == "not_found"
        assert nothing_of(rt) == []
        with pytest.raises(ExecutionError) as failed:  # the first run sets a deep state
            await handle.start(id="b", input="go deep")
        assert_too_deep(failed.value.cause)
        assert (await handle.status("b")).status == "not_found"  # nothing written
        assert (await handle.start(id="c", input=[[1]])).created


async def test_debounce_event_and_state(kind: str, tmp_path: Path) -> None:
    def on_event(ctx: DebounceEventContext[object, object]) -> Effect[object, ValidationError]:
        return Effect.succeed(deep() if ctx.event == "go deep" else ctx.event)

    def execute(ctx: DebounceContext[object]) -> Effect[None]:
        return Effect.succeed(None)

    job = Debounce.make(object, execute, "1 s", state_schema=object, on_event=on_event)
    async with TestRuntime({"d": job}, storage=storage_for(kind, tmp_path)) as rt:
        handle = rt.client.debounce(job)
        with pytest.raises(ValidationError) as refused:
            await handle.add(id="a", event=deep())
        assert_too_deep(refused.value)
        with pytest.raises((ValidationError, ExecutionError)) as from_handler:
            await handle.add(id="a", event="go deep")
        error = from_handler.value
        assert_too_deep(error.cause if isinstance(error, ExecutionError) else error)
        assert (await handle.status("a")).status == "not_found"
        assert (await handle.add(id="a", event=[1])).event_count == 1


async def test_task_event_and_state(kind: str, tmp_path: Path) -> None:
    @Effect.gen
    def on_event(event: object, ctx: TaskEventContext[object]) -> Gen[None, ValidationError]:
        yield from ctx.set_state(deep() if event == "go deep" else event)

    def execute(ctx: TaskContext[object]) -> Effect[None]:
        return Effect.succeed(None)

    job = Task.make(object, object, on_event, execute)
    async with TestRuntime({"t": job}, storage=storage_for(kind, tmp_path)) as rt:
        handle = rt.client.task(job)
        with pytest.raises(ValidationError) as refused:
            await handle.send(id="a", event=deep())
        assert_too_deep(refused.value)
        with pytest.raises((ValidationError, ExecutionError)) as from_handler:
            await handle.send(id="a", event="go deep")
        error = from_handler.value
        assert_too_deep(error.cause if isinstance(error, ExecutionError) else error)
        assert (await handle.status("a")).status == "not_found"
        assert (await handle.send(id="a", event=[1])).created


async def test_workflow_input_and_step_output(kind: str, tmp_path: Path) -> None:
    @Effect.gen
    def run(step: Step, given: object) -> Gen[object, ValidationError]:
        if given == "go deep":
            return (yield from step.run("deep", Effect.sync(deep)))
        return given

    wf = Workflow.make(object, run, output_schema=object)
    async with TestRuntime({"w": wf}, storage=storage_for(kind, tmp_path)) as rt:
        handle = rt.client.workflow(wf)
        with pytest.raises(ValidationError) as refused:
            await handle.trigger(deep())
        assert_too_deep(refused.value)
        assert await handle.list_runs() == []
        started = await handle.trigger("go deep")
        await rt.advance("1 s")
        run_ = await handle.get_run(started.run_id)
        assert run_.status == "failed"
        assert run_.error is not None
        assert "nested too deeply" in run_.error
        fine = await handle.trigger([[2]])
        await rt.advance("1 s")
        assert (await handle.get_run(fine.run_id)).output == [[2]]


def test_the_codec_boundary_itself(kind: str) -> None:
    if kind != "memory":
        return
    with pytest.raises(ValidationError, match="nested too deeply"):
        codec_for(list[Any]).decode(b"[" * 60_000 + b"]" * 60_000)
