"""The engine writes each commit's events into the storage feed, in the same commit.

On memory, SQLite and PostgreSQL: what a worker committed is readable from the feed as the
events' wire JSON, in the order they were published; a call that failed (nothing written)
leaves no entry; ``event_feed=False`` turns it off.
"""

from __future__ import annotations

from pathlib import Path

import msgspec
import pytest

from durable_effect import Continuous, ContinuousContext, Effect, ExecutionError, Gen, Step
from durable_effect._jobs import DurableJobs
from durable_effect.errors import ValidationError
from durable_effect.storage import Storage
from durable_effect.testing import TestRuntime
from durable_effect.workflow import Workflow
from tests.conftest_pg import pg_server, pg_store  # noqa: F401
from tests.jobs.conftest import KINDS, postgres_job_stores, storage_for  # noqa: F401


class Job(msgspec.Struct):
    n: int


@Effect.gen
def three_steps(step: Step, job: Job) -> Gen[int, ValidationError]:
    total = 0
    for k in range(3):
        total += yield from step.run(f"s{k}", Effect.succeed(job.n + k))
        yield from step.progress(k + 1, 3)
    return total


flow = Workflow.make(Job, three_steps)


class Counter(msgspec.Struct):
    runs: int = 0


@Effect.gen
def fail_on_odd(ctx: ContinuousContext[Counter]) -> Gen[None, ValidationError | ExecutionError]:
    state = yield from ctx.state
    if state.runs % 2 == 1:
        yield from Effect.fail(ValidationError(schema="x", message="odd", path="$"))
    yield from ctx.set_state(Counter(runs=state.runs + 1))


ticker = Continuous.make(Counter, Continuous.every("1 hour"), fail_on_odd)


async def _feed(storage: Storage) -> list[dict[str, object]]:
    entries = await storage.read_feed(after=0, limit=10_000)
    decoded: list[dict[str, object]] = [msgspec.json.decode(e.data) for e in entries]
    return decoded


@pytest.mark.parametrize("kind", KINDS)
async def test_a_runs_events_are_in_the_feed_as_published(kind: str, tmp_path: Path) -> None:
    async with TestRuntime({"flow": flow}, storage=storage_for(kind, tmp_path)) as rt:
        triggered = await Effect.run_async(rt.client.workflow(flow).trigger(Job(n=1)))
        await rt.run_until_idle()
        run_id = triggered.unwrap().run_id
        feed = await _feed(rt.jobs.storage)
        published = [e.to_wire() for e in rt.events if getattr(e, "run_id", None) == run_id]
        mine = [w for w in feed if w.get("runId") == run_id]
        # every published event of the run is there, as its wire JSON, in order
        assert [w["type"] for w in mine] == [w["type"] for w in published]
        assert mine == msgspec.json.decode(msgspec.json.encode(published))
        assert [w["type"] for w in mine][:2] == ["run:trigger", "run:leased"]
        assert mine[-1]["type"] == "run:complete"
        assert mine[-1]["output"] == 1 + 2 + 3


@pytest.mark.parametrize("kind", KINDS)
async def test_a_failed_call_leaves_no_entry(kind: str, tmp_path: Path) -> None:
    async with TestRuntime({"tick": ticker}, storage=storage_for(kind, tmp_path)) as rt:
        handle = rt.client.continuous(ticker)
        started = await Effect.run_async(handle.start(id="a", input=Counter(runs=0)))
        assert started.unwrap().created
        head = await rt.jobs.storage.feed_head()
        failed = await Effect.run_async(handle.trigger("a"))
        assert isinstance(failed.failure(), ExecutionError)
        assert any(e.type == "job.failed" for e in rt.events)  # published in-process...
        assert await rt.jobs.storage.feed_head() == head  # ...but nothing was committed


async def test_event_feed_false_appends_nothing(tmp_path: Path) -> None:
    jobs = DurableJobs({"flow": flow}, storage=f"sqlite:///{tmp_path}/off.db", event_feed=False)
    async with jobs:
        await Effect.run_async(jobs.client.workflow(flow).trigger(Job(n=1)))
        await jobs.worker().run_until_idle()
        run = await Effect.run_async(jobs.client.workflow(flow).list_runs())
        assert [r.status for r in run.unwrap()] == ["completed"]
        assert await jobs.storage.feed_head() == 0
