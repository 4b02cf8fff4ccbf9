"""Leases: a crashed worker's run resumes elsewhere, a stale owner is fenced, leases renew,
and cancels race correctly with running steps.

Two runtimes sharing one storage (one ``MemoryStorage`` object, or one SQLite file) play two
worker processes, each with its own clock. A "crash" is a storage whose every call fails
from some instant on (``CrashableStorage``): the dead worker can commit, renew or release
nothing, so its lease simply expires. Every test runs on memory and on SQLite.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from datetime import timedelta
from pathlib import Path

import pytest

from durable_effect import Effect, Gen, StorageError
from durable_effect.storage import Storage, open_storage
from durable_effect.testing import TestRuntime
from durable_effect.workflow import (
    RunLeased,
    RunLeaseRenewed,
    Step,
    StepCancelled,
    StepCompleted,
    Workflow,
    WorkflowDefinition,
)
from tests.workflow._support import (
    STORAGES,
    T0,
    Calls,
    CrashableStorage,
    Order,
    of_type,
    runtime,
    shared_storage,
    types_of,
)

pytestmark = pytest.mark.parametrize("kind", STORAGES)

TTL = timedelta(seconds=10)


class Gate:
    """A step effect that blocks its first invocation until ``open()``; later ones pass."""

    def __init__(self, calls: Calls, name: str) -> None:
        self.calls = calls
        self.name = name
        self.reached = asyncio.Event()
        self._open = asyncio.Event()

    def open(self) -> None:
        self._open.set()

    def effect(self) -> Effect[str]:
        def start() -> asyncio.Future[str]:
            n = self.calls.count(self.name)
            self.calls.log.append(self.name)

            async def go() -> str:
                if n == 0:
                    self.reached.set()
                    await self._open.wait()
                return f"{self.name}{n}"

            return asyncio.ensure_future(go())

        return Effect.promise(start)


def gated(calls: Calls, gate: Gate) -> WorkflowDefinition[Order, str]:
    """a → (gated) b → c."""

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[str, Exception]:
        yield from step.run("a", calls.effect("a", 1))
        b = yield from step.run("b", gate.effect())
        yield from step.run("c", calls.effect("c", 3))
        return str(b)

    return Workflow.make(Order, run)


@asynccontextmanager
async def two_workers(
    kind: str, tmp_path: Path, wf: WorkflowDefinition[Order, str], *, crashable: bool
) -> AsyncIterator[tuple[TestRuntime, TestRuntime, CrashableStorage | None]]:
    """Two runtimes on one storage; the first one's storage can be killed."""
    shared = shared_storage(kind, tmp_path)
    inner: Storage = shared if isinstance(shared, Storage) else open_storage(shared)
    crash = CrashableStorage(inner) if crashable else None
    first = TestRuntime({"w": wf}, storage=crash or inner, lease_ttl=TTL)
    second = TestRuntime({"w": wf}, storage=shared, lease_ttl=TTL)
    try:
        async with second, first:
            yield first, second, crash
    finally:
        await inner.close()


async def test_a_crashed_workers_run_resumes_after_its_last_committed_step(
    kind: str, tmp_path: Path
) -> None:
    calls = Calls()
    gate = Gate(calls, "b")
    wf = gated(calls, gate)
    async with two_workers(kind, tmp_path, wf, crashable=True) as (rt1, rt2, crash):
        assert crash is not None
        rid = (await rt1.client.workflow(wf).trigger(Order(order_id="o"))).run_id
        dying = asyncio.ensure_future(rt1.run_until_idle())
        await gate.reached.wait()
        crash.kill()  # the worker dies in the middle of step b
        h = rt2.client.workflow(wf)
        assert (await h.get_run(rid)).status == "leased"
        assert [s.name for s in await h.steps(rid)] == ["a"]
        await rt2.run_until_idle()  # its lease has not expired yet: nobody takes the run
        assert calls.log == ["a", "b"]
        await rt2.advance(TTL + timedelta(seconds=1))
        run = await h.get_run(rid)
        assert (run.status, run.output, run.attempt) == ("completed", "b1", 2)
        assert calls.log == ["a", "b", "b", "c"]  # a once (replayed), b at least once
        assert [(s.name, s.output) for s in await h.steps(rid)] == [
            ("a", 1),
            ("b", "b1"),
            ("c", 3),
        ]
        assert [e.attempt for e in of_type(rt2.events, RunLeased)] == [2]
        gate.open()  # the dead worker's step "finishes": it can write nothing
        with pytest.raises(StorageError):
            await dying
        assert [(s.name, s.output) for s in await h.steps(rid)] == [
            ("a", 1),
            ("b", "b1"),
            ("c", 3),
        ]


async def test_a_stale_owner_is_fenced_after_a_takeover(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    calls = Calls()
    gate = Gate(calls, "b")
    wf = gated(calls, gate)
    async with two_workers(kind, tmp_path, wf, crashable=False) as (rt1, rt2, _):
        rid = (await rt1.client.workflow(wf).trigger(Order(order_id="o"))).run_id
        slow = asyncio.ensure_future(rt1.run_until_idle())
        await gate.reached.wait()
        # worker 1 is alive but stalled past its lease: worker 2 takes the run over
        await rt2.advance(TTL + timedelta(seconds=1))
        h = rt2.client.workflow(wf)
        assert (await h.get_run(rid)).output == "b1"
        with caplog.at_level(logging.WARNING, logger="durable_effect"):
            gate.open()  # worker 1's step ends now: its checkpoint is refused
            await slow
        assert any("LeaseLostError" in r.getMessage() for r in caplog.records)
        assert [(s.name, s.output) for s in await h.steps(rid)] == [
            ("a", 1),
            ("b", "b1"),
            ("c", 3),
        ]
        assert calls.log == ["a", "b", "b", "c"]
        assert [e.step_name for e in of_type(rt1.events, StepCompleted)] == ["a"]
        assert "run:complete" not in types_of(rt1.events)
        assert (await h.get_run(rid)).status == "completed"


async def test_the_lease_is_renewed_while_a_step_runs(kind: str, tmp_path: Path) -> None:
    renewed = asyncio.Event()

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[str, Exception]:
        waited = Effect.promise(renewed.wait)  # ends once the lease was renewed
        yield from step.run("long", waited.map(lambda _: "done"))
        return "ok"

    wf = Workflow.make(Order, run)
    ttl = timedelta(milliseconds=60)  # renewed every 20 ms (loop time)
    async with runtime(kind, tmp_path, lease_ttl=ttl, w=wf) as rt:
        rt.jobs.on("run:lease-renewed", lambda _event: renewed.set())
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await asyncio.wait_for(rt.run_until_idle(), timeout=30)
        assert (await h.get_run(rid)).status == "completed"
        event = of_type(rt.events, RunLeaseRenewed)[0]
        assert event.run_id == rid
        assert event.lease_owner == rt.jobs.engine.owner
        assert event.lease_expires_at == T0 + ttl  # the test clock did not move
        assert event.to_wire()["type"] == "run:lease-renewed"


async def test_cancel_during_a_step_drops_its_result(kind: str, tmp_path: Path) -> None:
    calls = Calls()
    gate = Gate(calls, "b")
    wf = gated(calls, gate)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        working = asyncio.ensure_future(rt.run_until_idle())
        await gate.reached.wait()
        await h.cancel(rid)  # the worker holds the run: a cancel request is written
        assert (await h.get_run(rid)).status == "leased"
        gate.open()  # step b finishes after the cancel
        await working
        run = await h.get_run(rid)
        assert (run.status, run.output) == ("cancelled", None)
        assert [s.name for s in await h.steps(rid)] == ["a"]  # b is never recorded
        assert calls.log == ["a", "b"]  # and c never ran
        assert types_of(rt.events, rid) == [
            "run:trigger",
            "run:leased",
            "step:start",
            "step:complete",
            "step:start",
            "step:cancel",
            "run:cancel",
        ]
        (cancelled,) = of_type(rt.events, StepCancelled)
        assert (cancelled.step_name, cancelled.step_index) == ("b", 1)
        assert (await h.wait(rid)).status == "cancelled"
        await rt.advance("1 hour")
        assert calls.log == ["a", "b"]


async def test_a_cancel_just_before_the_run_completes_wins(kind: str, tmp_path: Path) -> None:
    reached = asyncio.Event()
    release = asyncio.Event()

    async def pause() -> None:
        reached.set()
        await release.wait()

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[str, Exception]:
        yield from step.run("only", Effect.succeed(1))
        yield from Effect.promise(pause)  # after the last step, before the end commits
        return "finished"

    wf = Workflow.make(Order, run)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        working = asyncio.ensure_future(rt.run_until_idle())
        await reached.wait()
        await h.cancel(rid)
        release.set()
        await working
        run_ = await h.get_run(rid)
        assert (run_.status, run_.output) == ("cancelled", None)
        assert "run:complete" not in types_of(rt.events, rid)
        assert [s.name for s in await h.steps(rid)] == ["only"]


async def test_cancel_of_a_run_whose_worker_died(kind: str, tmp_path: Path) -> None:
    calls = Calls()
    gate = Gate(calls, "b")
    wf = gated(calls, gate)
    async with two_workers(kind, tmp_path, wf, crashable=True) as (rt1, rt2, crash):
        assert crash is not None
        rid = (await rt1.client.workflow(wf).trigger(Order(order_id="o"))).run_id
        dying = asyncio.ensure_future(rt1.run_until_idle())
        await gate.reached.wait()
        crash.kill()
        h = rt2.client.workflow(wf)
        rt2.clock.advance(TTL + timedelta(seconds=1))
        await h.cancel(rid)  # the dead worker's lease expired: cancelled at once
        assert (await h.get_run(rid)).status == "cancelled"
        await rt2.run_until_idle()
        assert calls.log == ["a", "b"]
        gate.open()
        with pytest.raises(StorageError):
            await dying
        assert (await h.get_run(rid)).status == "cancelled"
        assert [s.name for s in await h.steps(rid)] == ["a"]
