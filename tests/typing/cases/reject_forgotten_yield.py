# A forgotten `yield from` (an Effect built and dropped inside a generator) does nothing at
# run time; mypy's `unused-awaitable` (enabled in mypy.ini, documented in the quickstart)
# reports each one. Nothing here runs: pytest imports this file and finds only functions.
from __future__ import annotations

import msgspec

from durable_effect import (
    ContinuousContext,
    Effect,
    Gen,
    Step,
    TaskContext,
    TaskEventContext,
    ValidationError,
)


class Counter(msgspec.Struct):
    ticks: int = 0


@Effect.gen
def tick(ctx: ContinuousContext[Counter]) -> Gen[None, ValidationError]:
    state = yield from ctx.state
    ctx.set_state(Counter(ticks=state.ticks + 1))  # E: unused-awaitable
    Effect.log_info("tick", n=state.ticks)  # E: unused-awaitable
    yield from ctx.set_state(Counter(ticks=state.ticks + 1))  # the right way: no error


@Effect.gen
def on_event(event: int, ctx: TaskEventContext[Counter]) -> Gen[None, ValidationError]:
    ctx.set_state(Counter(ticks=event))  # E: unused-awaitable
    ctx.schedule("5 minutes")  # E: unused-awaitable
    yield from ctx.schedule("5 minutes")


@Effect.gen
def execute(ctx: TaskContext[Counter]) -> Gen[None, ValidationError]:
    ctx.terminate()  # E: unused-awaitable
    yield from ctx.terminate()


@Effect.gen
def flow(step: Step, n: int) -> Gen[int, ValidationError]:
    step.run("fetch", Effect.succeed(n))  # E: unused-awaitable
    step.sleep("pause", "1 second")  # E: unused-awaitable
    return (yield from step.run("fetch", Effect.succeed(n)))
