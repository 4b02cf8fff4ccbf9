"""The app the worker-logging tests run: jobs that log and fail, on the SQLite file $DE_TEST_DB.

* ``boom`` (Task): an event schedules ``execute`` now; it logs ``working`` at INFO, a
  DEBUG line, then raises ``ValueError("kaboom")`` (a defect), no retry.
* ``typed`` (Task): ``execute`` fails with the typed ``Refused`` error, retried once.
* ``wf`` (workflow): step ``fetch`` succeeds, step ``explode`` raises a defect.
* ``ok`` (workflow): two steps and progress; its output is twice its input's length.
"""

from __future__ import annotations

import os
from typing import ClassVar, Literal

import attrs

from durable_effect import (
    Effect,
    Gen,
    Retry,
    Step,
    TaggedError,
    Task,
    TaskContext,
    TaskEventContext,
    ValidationError,
    Workflow,
    create_durable_jobs,
)


@attrs.frozen
class Refused(TaggedError):
    tag: ClassVar[Literal["Refused"]] = "Refused"
    why: str


@Effect.gen
def schedule_now(event: int, ctx: TaskEventContext[int]) -> Gen[None, ValidationError]:
    yield from ctx.set_state(event)
    yield from ctx.schedule("0 ms")


@Effect.gen
def explode(ctx: TaskContext[int]) -> Gen[None, ValidationError]:
    state = yield from ctx.state
    yield from Effect.log_info("working", n=state)
    yield from Effect.log_debug("details", n=state)
    raise ValueError("kaboom")


def refuse(ctx: TaskContext[int]) -> Effect[None, Refused]:
    return Effect.fail(Refused(why="no stock"))


def _boom() -> int:
    raise RuntimeError("step exploded")


@Effect.gen
def flow(step: Step, n: int) -> Gen[int, Exception]:
    got = yield from step.run("fetch", Effect.succeed(n))
    yield from step.run("explode", Effect.sync(_boom))
    return got


@Effect.gen
def steady(step: Step, text: str) -> Gen[int, Exception]:
    size = yield from step.run("measure", Effect.succeed(len(text)))
    yield from step.progress(1, 2, "measured")
    doubled = yield from step.run("double", Effect.succeed(size * 2))
    yield from step.progress(2, 2, "doubled")
    return doubled


boom = Task.make(int, int, schedule_now, explode)
typed = Task.make(int, int, schedule_now, refuse, retry=Retry(max_attempts=2))
wf = Workflow.make(int, flow, output_schema=int)
ok = Workflow.make(str, steady, output_schema=int)

jobs = create_durable_jobs(
    {"boom": boom, "typed": typed, "wf": wf, "ok": ok},
    storage=f"sqlite:///{os.environ.get('DE_TEST_DB', '.demo/worker-app.db')}",
)
