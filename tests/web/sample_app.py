"""The jobs the web tests serve: two workflows, and one job of each other type.

``imports`` reports progress batch by batch with a durable one-second pause between batches
(so a page can watch its bar move); ``waits`` sleeps an hour (a run to cancel); ``approvals``
waits a day for an ``Approval`` or a ``Refusal`` event (a run to send an event to). The storage
is whatever the caller passes (``--storage`` on the CLI, ``jobs_on(url)`` in tests).
"""

from __future__ import annotations

import msgspec

from durable_effect import (
    Continuous,
    ContinuousContext,
    Debounce,
    DebounceContext,
    Effect,
    Gen,
    Step,
    Task,
    TaskContext,
    ValidationError,
    Workflow,
    create_durable_jobs,
)
from durable_effect._jobs import DurableJobs
from durable_effect.jobs._base import JobDefinition

BATCHES = 4


class ImportRequest(msgspec.Struct):
    """The input of ``imports``."""

    filename: str
    rows: int


class Summary(msgspec.Struct):
    """The output of ``imports``."""

    filename: str
    imported: int


@Effect.gen
def run_import(step: Step, job: ImportRequest) -> Gen[Summary, ValidationError]:
    imported = 0
    per_batch = max(job.rows // BATCHES, 1)
    for batch in range(BATCHES):
        imported += yield from step.run(f"batch-{batch}", Effect.succeed(per_batch))
        yield from step.log.info(f"batch {batch} imported", rows=per_batch)
        yield from step.progress(batch + 1, BATCHES, f"{imported} rows")
        if batch < BATCHES - 1:
            yield from step.sleep(f"pause-{batch}", "1 second")
    return Summary(filename=job.filename, imported=imported)


imports = Workflow.make(ImportRequest, run_import, output_schema=Summary)


@Effect.gen
def wait_an_hour(step: Step, note: str) -> Gen[str, ValidationError]:
    yield from step.run("prepare", Effect.succeed(note))
    yield from step.sleep("nap", "1 hour")
    return note


waits = Workflow.make(str, wait_an_hour)


class Approval(msgspec.Struct, tag=True):
    """An event ``approvals`` waits for."""

    by: str


class Refusal(msgspec.Struct, tag=True):
    """The other event ``approvals`` accepts."""

    reason: str


@Effect.gen
def await_decision(step: Step, amount: int) -> Gen[str, ValidationError]:
    yield from step.run("request", Effect.succeed(f"please approve {amount}"))
    decision = yield from step.wait_for_event("decision", timeout="1 day")
    if decision is None:
        return "nobody answered"
    if isinstance(decision, Approval):
        return f"approved by {decision.by}"
    assert isinstance(decision, Refusal)
    return f"refused: {decision.reason}"


approvals = Workflow.make(int, await_decision, event_schema=Approval | Refusal)


class Beat(msgspec.Struct):
    beats: int = 0


@Effect.gen
def beat(ctx: ContinuousContext[Beat]) -> Gen[None, ValidationError]:
    state = yield from ctx.state
    yield from ctx.set_state(Beat(beats=state.beats + 1))


heartbeat = Continuous.make(Beat, Continuous.cron("0 3 * * *"), beat)


class Reminder(msgspec.Struct):
    text: str


@Effect.gen
def on_reminder(event: Reminder, ctx: TaskContext[Reminder]) -> Gen[None, ValidationError]:
    yield from ctx.set_state(event)
    yield from ctx.schedule("1 hour")


def on_reminder_alarm(ctx: TaskContext[Reminder]) -> Effect[None, ValidationError]:
    return Effect.succeed(None)


reminders = Task.make(Reminder, Reminder, on_reminder, on_reminder_alarm)


def flush_clicks(ctx: DebounceContext[int]) -> Effect[None]:
    return Effect.succeed(None)


clicks = Debounce.make(int, flush_clicks, "1 hour")

DEFINITIONS: dict[str, JobDefinition] = {
    "imports": imports,
    "waits": waits,
    "approvals": approvals,
    "heartbeat": heartbeat,
    "reminders": reminders,
    "clicks": clicks,
}


def jobs_on(storage: object) -> DurableJobs:
    """The sample jobs on ``storage`` (a URL or a ``Storage``)."""
    return create_durable_jobs(DEFINITIONS, storage=storage)  # type: ignore[arg-type]


#: For the CLI (``tests.web.sample_app:jobs --storage URL``).
jobs = jobs_on("memory://")
