"""What a workflow run costs in storage round trips, and the cancel semantics that go with it.

A storage wrapper counts the port calls the worker makes for each run, after the trigger:

* a run whose body reaches no step costs one ``commit`` (its end, which also takes the
  start — ``leased``, ``attempt``, ``started_at`` — checks the cancel request with a commit
  guard and releases the lease), besides its share of ``claim_due``;
* a run of N steps costs N + 2 commits (its start, just before the first step's effect
  runs; each step; its end); a woken run, one commit per checkpoint;
* none of them acquires, releases or reads anything else (no lease on, or read of, the
  run's ``wfcancel:…`` instance).

The cancel request is checked only by those commits, so the tests also pin what a cancel
does: before the run starts, while a worker is taking it (a request the first checkpoint
finds: the run is cancelled as it was), while a step runs (the step is not recorded, also
for the first step), after a sleep, and after completion (refused).
"""

from __future__ import annotations

import asyncio
from collections import Counter
from collections.abc import AsyncIterator, Mapping, Sequence
from contextlib import asynccontextmanager
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import pytest

from durable_effect import Effect, Gen, InvalidStateError
from durable_effect.jobs._base import JobDefinition
from durable_effect.storage import (
    Acquired,
    Claimed,
    InstanceSnapshot,
    InstanceWrite,
    Lease,
    Storage,
    open_storage,
)
from durable_effect.testing import TestRuntime
from durable_effect.workflow import Step, Workflow, WorkflowDefinition
from durable_effect.workflow._records import CANCEL_KEY, cancel_flag_record, cancel_ref
from tests.workflow._support import (
    STORAGES,
    T0,
    Calls,
    CrashableStorage,
    Order,
    storage_url,
    types_of,
)
from tests.workflow.test_leases import Gate

pytestmark = pytest.mark.parametrize("kind", STORAGES)

#: Port calls that cost a round trip apart from ``claim_due`` (and the worker's idle checks).
COUNTED = ("acquire", "extend", "release", "load", "commit")
RUNS = 5


class CountingStorage(CrashableStorage):
    """A storage that counts its port calls (``calls``); ``reset()`` starts over."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self.calls: Counter[str] = Counter()

    def reset(self) -> None:
        self.calls.clear()

    def counted(self) -> dict[str, int]:
        """The counted calls made since the last ``reset`` (zeros left out)."""
        return {name: n for name in COUNTED if (n := self.calls[name])}

    async def acquire(
        self, instance_ids: Sequence[str], *, owner: str, now: datetime, ttl: timedelta
    ) -> Acquired | None:
        self.calls["acquire"] += 1
        return await super().acquire(instance_ids, owner=owner, now=now, ttl=ttl)

    async def extend(self, lease: Lease, *, now: datetime, ttl: timedelta) -> Lease:
        self.calls["extend"] += 1
        return await super().extend(lease, now=now, ttl=ttl)

    async def release(self, leases: Sequence[Lease]) -> None:
        self.calls["release"] += 1
        await super().release(leases)

    async def load(self, instance_ids: Sequence[str]) -> Mapping[str, InstanceSnapshot]:
        self.calls["load"] += 1
        return await super().load(instance_ids)

    async def commit(
        self,
        leases: Sequence[Lease],
        writes: Sequence[InstanceWrite],
        *,
        release: bool = True,
        unless_present: Sequence[tuple[str, str]] = (),
        feed: Sequence[bytes] = (),
    ) -> None:
        self.calls["commit"] += 1
        await super().commit(
            leases, writes, release=release, unless_present=unless_present, feed=feed
        )

    async def claim_due(
        self, *, now: datetime, owner: str, ttl: timedelta, limit: int
    ) -> Sequence[Claimed]:
        self.calls["claim_due"] += 1
        return await super().claim_due(now=now, owner=owner, ttl=ttl, limit=limit)


@asynccontextmanager
async def counted_runtime(
    kind: str, tmp_path: Path, **defs: JobDefinition
) -> AsyncIterator[tuple[TestRuntime, CountingStorage]]:
    """A ``TestRuntime`` over ``defs`` whose storage counts its calls."""
    target = storage_url(kind, tmp_path)
    inner = open_storage(target) if isinstance(target, str) else target
    storage = CountingStorage(inner)
    async with TestRuntime(dict(defs), storage=storage) as rt:
        yield rt, storage


def no_steps(step: Step, n: int) -> Effect[int]:
    return Effect.succeed(n)


@Effect.gen
def three_steps(step: Step, n: int) -> Gen[int, Exception]:
    a = yield from step.run("add", Effect.succeed(n + 1))
    b = yield from step.run("double", Effect.succeed(a * 2))
    return (yield from step.run("dec", Effect.succeed(b - 1)))


NO_STEPS = Workflow.make(int, no_steps)
THREE_STEPS = Workflow.make(int, three_steps)


async def request_cancel(rt: TestRuntime, workflow: str, run_id: str) -> None:
    """Write the cancel request a ``cancel`` writes for a run that a worker holds (as if the
    worker was taking the run at that moment)."""
    storage = rt.jobs.storage
    iid = cancel_ref(workflow, run_id).instance_id
    got = await storage.acquire([iid], owner="canceller", now=T0, ttl=timedelta(seconds=5))
    assert got is not None
    write = InstanceWrite(instance_id=iid, puts={CANCEL_KEY: cancel_flag_record(T0)})
    await storage.commit(got.leases, [write])


# -- round trips -----------------------------------------------------------------------------


async def test_a_run_without_steps_costs_one_commit(kind: str, tmp_path: Path) -> None:
    async with counted_runtime(kind, tmp_path, noop=NO_STEPS) as (rt, storage):
        h = rt.client.workflow(NO_STEPS)
        results = await h.batch_trigger(list(range(RUNS)))
        storage.reset()
        await rt.run_until_idle()
        assert storage.counted() == {"commit": RUNS}  # no acquire, release or load at all
        assert storage.calls["claim_due"] <= RUNS + 1
        for i, result in enumerate(results):
            run = await h.get_run(result.run_id)
            assert (run.status, run.output, run.attempt) == ("completed", i, 1)
            assert (run.started_at, run.completed_at) == (T0, T0)
            assert types_of(rt.events, result.run_id) == [
                "run:trigger",
                "run:leased",
                "run:complete",
            ]
        # The end released the lease: the run is free at once (no lease left to expire).
        iid = f"workflow:noop:{results[0].run_id}"
        got = await rt.jobs.storage.acquire([iid], owner="other", now=T0, ttl=timedelta(seconds=5))
        assert got is not None


async def test_a_run_of_n_steps_costs_n_plus_two_commits(kind: str, tmp_path: Path) -> None:
    async with counted_runtime(kind, tmp_path, three=THREE_STEPS) as (rt, storage):
        h = rt.client.workflow(THREE_STEPS)
        results = await h.batch_trigger(list(range(RUNS)))
        storage.reset()
        await rt.run_until_idle()
        assert storage.counted() == {"commit": RUNS * (3 + 2)}
        for i, result in enumerate(results):
            run = await h.get_run(result.run_id)
            assert (run.status, run.output, run.attempt) == ("completed", (i + 1) * 2 - 1, 1)
            assert [s.name for s in await h.steps(result.run_id)] == ["add", "double", "dec"]


async def test_a_sleeping_run_costs_one_commit_per_checkpoint(kind: str, tmp_path: Path) -> None:
    @Effect.gen
    def nap(step: Step, n: int) -> Gen[int, Exception]:
        yield from step.sleep("nap", "1 minute")
        return n

    wf = Workflow.make(int, nap)
    async with counted_runtime(kind, tmp_path, nap=wf) as (rt, storage):
        h = rt.client.workflow(wf)
        rid = (await h.trigger(7)).run_id
        storage.reset()
        await rt.run_until_idle()  # the start and the sleep: one commit
        assert storage.counted() == {"commit": 1}
        assert ((await h.get_run(rid)).status, (await h.get_run(rid)).attempt) == ("sleeping", 1)
        storage.reset()
        await rt.advance("1 minute")  # woken: the nap's end (with the start), the run's end
        assert storage.counted() == {"commit": 2}  # no read of the cancel instance first
        run = await h.get_run(rid)
        assert (run.status, run.output, run.attempt) == ("completed", 7, 2)


# -- the cancel request, checked only by the commits ---------------------------------------------


async def test_cancel_before_the_run_starts(kind: str, tmp_path: Path) -> None:
    calls = Calls()

    @Effect.gen
    def run(step: Step, n: int) -> Gen[object, Exception]:
        return (yield from step.run("a", calls.effect("a", n)))

    wf = Workflow.make(int, run)
    async with counted_runtime(kind, tmp_path, w=wf) as (rt, storage):
        h = rt.client.workflow(wf)
        rid = (await h.trigger(1)).run_id
        await h.cancel(rid)  # nobody holds it: cancelled at once
        storage.reset()
        await rt.run_until_idle()
        assert storage.counted() == {}
        run_ = await h.get_run(rid)
        assert (run_.status, run_.attempt, run_.started_at) == ("cancelled", 0, None)
        assert calls.log == []
        assert types_of(rt.events, rid) == ["run:trigger", "run:cancel"]


async def test_a_request_found_by_the_first_checkpoint_cancels_the_run_as_it_was(
    kind: str, tmp_path: Path
) -> None:
    calls = Calls()

    @Effect.gen
    def run(step: Step, n: int) -> Gen[object, Exception]:
        yield from step.log.info("before the first step")
        return (yield from step.run("a", calls.effect("a", n)))

    @Effect.gen
    def reports(step: Step, n: int) -> Gen[object, Exception]:
        yield from step.progress(1, 2)  # outside any step, before the first one
        return (yield from step.run("a", calls.effect("a", n)))

    wf = Workflow.make(int, run)
    progress = Workflow.make(int, reports)
    defs: dict[str, WorkflowDefinition[int, Any]] = {
        "w": wf,
        "noop": NO_STEPS,
        "progress": progress,
    }
    async with counted_runtime(kind, tmp_path, **defs) as (rt, storage):
        runs = []
        for name, definition in defs.items():
            handle = rt.client.workflow(definition)
            run_id = (await handle.trigger(1)).run_id
            await request_cancel(rt, name, run_id)
            runs.append((handle, run_id))
        storage.reset()
        await rt.run_until_idle()
        # Per run: the refused (guarded) first checkpoint, then the cancelled end.
        assert storage.counted() == {"commit": 2 * len(runs)}
        assert calls.log == []  # no step's effect ran
        for handle, run_id in runs:
            got = await handle.get_run(run_id)
            assert (got.status, got.attempt, got.started_at) == ("cancelled", 0, None)
            assert (got.completed_at, got.progress) == (T0, None)
            assert types_of(rt.events, run_id) == ["run:trigger", "run:cancel"]
            assert await handle.steps(run_id) == []


async def test_cancel_during_the_first_step_drops_its_result(kind: str, tmp_path: Path) -> None:
    calls = Calls()
    gate = Gate(calls, "a")

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[str, Exception]:
        a = yield from step.run("a", gate.effect())
        yield from step.run("b", calls.effect("b", 2))
        return a

    wf = Workflow.make(Order, run)
    async with counted_runtime(kind, tmp_path, w=wf) as (rt, _):
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        working = asyncio.ensure_future(rt.run_until_idle())
        await gate.reached.wait()
        # The start was committed before the step's effect began.
        during = await h.get_run(rid)
        assert (during.status, during.attempt, during.started_at) == ("leased", 1, T0)
        await h.cancel(rid)  # the worker holds the run: a cancel request is written
        gate.open()  # step a finishes after the cancel
        await working
        run_ = await h.get_run(rid)
        assert (run_.status, run_.output, run_.attempt) == ("cancelled", None, 1)
        assert await h.steps(rid) == []  # a is never recorded
        assert calls.log == ["a"]  # and b never ran
        assert types_of(rt.events, rid) == [
            "run:trigger",
            "run:leased",
            "step:start",
            "step:cancel",
            "run:cancel",
        ]


async def test_a_request_waiting_for_a_sleeping_run_cancels_it_on_waking(
    kind: str, tmp_path: Path
) -> None:
    calls = Calls()

    @Effect.gen
    def run(step: Step, n: int) -> Gen[object, Exception]:
        yield from step.run("a", calls.effect("a", 1))
        yield from step.sleep("nap", "1 minute")
        return (yield from step.run("b", calls.effect("b", 2)))

    wf = Workflow.make(int, run)
    async with counted_runtime(kind, tmp_path, w=wf) as (rt, storage):
        h = rt.client.workflow(wf)
        rid = (await h.trigger(1)).run_id
        await rt.run_until_idle()
        assert (await h.get_run(rid)).status == "sleeping"
        await request_cancel(rt, "w", rid)  # as if written while something held the run
        storage.reset()
        await rt.advance("1 minute")
        assert storage.counted() == {"commit": 2}  # the refused first checkpoint, the end
        run_ = await h.get_run(rid)
        assert (run_.status, run_.attempt) == ("cancelled", 1)  # that execution left no trace
        assert calls.log == ["a"]  # b never ran
        assert [s.name for s in await h.steps(rid)] == ["a"]


async def test_cancel_after_completion_is_refused(kind: str, tmp_path: Path) -> None:
    async with counted_runtime(kind, tmp_path, noop=NO_STEPS) as (rt, _):
        h = rt.client.workflow(NO_STEPS)
        rid = (await h.trigger(3)).run_id
        await rt.run_until_idle()
        with pytest.raises(InvalidStateError):
            await h.cancel(rid)
        run_ = await h.get_run(rid)
        assert (run_.status, run_.output) == ("completed", 3)
        assert types_of(rt.events, rid) == ["run:trigger", "run:leased", "run:complete"]
