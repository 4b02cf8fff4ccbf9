"""``fork`` and ``resume``: running a finished run again, from a step or after its last one.

A fork is a new run of the same input whose steps before ``from_step`` are copied (they
replay, their effects do not run again); a resume continues a failed or cancelled run, same
id, after its last completed step. Both start a fresh deadline.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from durable_effect import (
    Effect,
    Gen,
    InstanceNotFoundError,
    InvalidStateError,
    ValidationError,
)
from durable_effect.workflow import RunResumed, RunTriggered, Step, Workflow
from tests.workflow._support import STORAGES, T0, Boom, Calls, Order, of_type, runtime

pytestmark = pytest.mark.parametrize("kind", STORAGES)

NAMES = ("one", "two", "three", "four", "five")


def five_steps(calls: Calls, fail_at: dict[str, int] | None = None) -> Any:
    """Five steps; step ``n`` gives ``n * 10``; ``fail_at[name]`` failures left make it fail."""
    failing = {} if fail_at is None else fail_at

    def effect(name: str, value: int) -> Effect[int, Boom]:
        def go() -> Effect[int, Boom]:
            calls.log.append(name)
            if failing.get(name, 0) > 0:
                failing[name] -= 1
                return Effect.fail(Boom(code=value))
            return Effect.succeed(value)

        return Effect.suspend(go)

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[list[int], Boom]:
        out: list[int] = []
        for n, name in enumerate(NAMES, start=1):
            out.append((yield from step.run(name, effect(name, n * 10 + order.qty))))
        return out

    return run


@pytest.mark.parametrize("from_step", NAMES)
async def test_fork_from_every_step_runs_only_the_steps_from_there(
    kind: str, tmp_path: Path, from_step: str
) -> None:
    calls = Calls()
    wf = Workflow.make(Order, five_steps(calls), retain=None)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (
            await h.trigger(Order(order_id="o"), labels={"team": "ops"}, concurrency_key="k")
        ).run_id
        await rt.run_until_idle()
        assert calls.log == list(NAMES)
        calls.log.clear()
        forked = await h.fork(rid, from_step=from_step)
        assert forked.disposition == "created"
        assert forked.run_id != rid
        await rt.run_until_idle()
        cut = NAMES.index(from_step)
        assert calls.log == list(NAMES[cut:])  # the steps before from_step were copied
        run = await h.get_run(forked.run_id)
        assert run.status == "completed"
        assert run.output == [11, 21, 31, 41, 51]
        assert (run.forked_from, run.labels, run.concurrency_key) == (rid, {"team": "ops"}, "k")
        assert (await h.get_run(rid)).forked_from is None
        steps = await h.steps(forked.run_id)
        assert [s.name for s in steps] == list(NAMES)
        (triggered,) = [e for e in of_type(rt.events, RunTriggered) if e.run_id == run.id]
        assert triggered.forked_from == rid


async def test_fork_without_from_step_copies_every_completed_step(
    kind: str, tmp_path: Path
) -> None:
    calls = Calls()
    wf = Workflow.make(Order, five_steps(calls, {"four": 1}))
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"), idempotency_key="idem")).run_id
        await rt.run_until_idle()
        assert (await h.get_run(rid)).status == "failed"
        calls.log.clear()
        forked = (await h.fork(rid)).run_id
        await rt.run_until_idle()
        assert calls.log == ["four", "five"]
        run = await h.get_run(forked)
        assert run.status == "completed"
        assert run.idempotency_key is None
        # The idempotency key still gives the original run.
        again = await h.trigger(Order(order_id="o"), idempotency_key="idem")
        assert (again.run_id, again.disposition) == (rid, "idempotent")


async def test_fork_refuses_an_active_run_and_a_step_that_did_not_complete(
    kind: str, tmp_path: Path
) -> None:
    calls = Calls()
    wf = Workflow.make(Order, five_steps(calls, {"three": 1}))
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        with pytest.raises(InvalidStateError) as state:
            await h.fork(rid)
        assert (state.value.actual, state.value.operation) == ("pending", "fork")
        await rt.run_until_idle()
        for bad in ("three", "four", "nope"):
            with pytest.raises(ValidationError) as info:
                await h.fork(rid, from_step=bad)
            assert info.value.path == "from_step"
            assert repr(bad) in str(info.value)
        with pytest.raises(InstanceNotFoundError):
            await h.fork("no-such-run")
        assert len(await h.list_runs()) == 1  # nothing was written


async def test_resume_after_a_failure_continues_after_the_last_completed_step(
    kind: str, tmp_path: Path
) -> None:
    calls = Calls()
    wf = Workflow.make(Order, five_steps(calls, {"three": 1}))
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await rt.run_until_idle()
        failed = await h.get_run(rid)
        assert (failed.status, failed.attempt) == ("failed", 1)
        calls.log.clear()
        resumed = await h.resume(rid)
        assert (resumed.id, resumed.status, resumed.error, resumed.completed_at) == (
            rid,
            "pending",
            None,
            None,
        )
        await rt.run_until_idle()
        assert calls.log == ["three", "four", "five"]
        run = await h.get_run(rid)
        assert (run.status, run.output, run.attempt) == ("completed", [11, 21, 31, 41, 51], 2)
        assert await h.wait_output(rid) == [11, 21, 31, 41, 51]
        (event,) = of_type(rt.events, RunResumed)
        assert (event.run_id, event.previous_status) == (rid, "failed")


def sleeper(calls: Calls) -> Any:
    @Effect.gen
    def run(step: Step, order: Order) -> Gen[int, Exception]:
        yield from step.run("before", calls.effect("before", 1))
        yield from step.sleep("nap", "1 hour")
        yield from step.run("after", calls.effect("after", 2))
        return order.qty

    return run


async def test_resume_after_a_cancel_keeps_the_sleeps_wake_time(kind: str, tmp_path: Path) -> None:
    calls = Calls()
    wf = Workflow.make(Order, sleeper(calls))
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o", qty=7))).run_id
        await rt.run_until_idle()
        await h.cancel(rid)
        assert (await h.get_run(rid)).status == "cancelled"
        with pytest.raises(InvalidStateError):
            await h.cancel(rid)
        await rt.advance("10 minutes")
        assert (await h.resume(rid)).status == "pending"
        await rt.run_until_idle()
        assert (await h.get_run(rid)).status == "sleeping"  # until T0 + 1 hour, as before
        await rt.advance("49 minutes")
        assert (await h.get_run(rid)).status == "sleeping"
        await rt.advance("1 minute")
        run = await h.get_run(rid)
        assert (run.status, run.output, run.completed_at) == (
            "completed",
            7,
            T0 + timedelta(hours=1),
        )
        assert calls.log == ["before", "after"]


async def test_resume_refuses_runs_that_are_not_failed_or_cancelled(
    kind: str, tmp_path: Path
) -> None:
    calls = Calls()
    wf = Workflow.make(Order, sleeper(calls))
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        with pytest.raises(InvalidStateError) as info:
            await h.resume(rid)
        assert (info.value.actual, info.value.operation) == ("pending", "resume")
        await rt.run_until_idle()
        with pytest.raises(InvalidStateError):
            await h.resume(rid)  # sleeping
        await rt.advance("1 hour")
        with pytest.raises(InvalidStateError) as done:
            await h.resume(rid)
        assert done.value.actual == "completed"
        with pytest.raises(InstanceNotFoundError):
            await h.resume("nope")


async def test_resume_and_fork_start_a_fresh_deadline(kind: str, tmp_path: Path) -> None:
    calls = Calls()
    wf = Workflow.make(Order, sleeper(calls), run_timeout="30 minutes")
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await rt.advance("30 minutes")
        assert (await h.get_run(rid)).error is not None  # RunTimeoutError at T0 + 30 min
        forked = (await h.fork(rid)).run_id
        await h.resume(rid)
        await rt.run_until_idle()
        # Both sleep until T0 + 1 hour: the fresh deadline (T0 + 1 hour) is not passed yet.
        for run_id in (rid, forked):
            assert (await h.get_run(run_id)).status == "sleeping"
        await rt.advance("30 minutes")
        for run_id in (rid, forked):  # the fresh deadlines: 30 minutes after the calls
            run = await h.get_run(run_id)
            assert (run.status, run.completed_at) == ("failed", T0 + timedelta(hours=1))
            assert run.error is not None
            assert run.error.startswith("RunTimeoutError")
        assert calls.log == ["before"]  # the fork replayed its copy, the resumed run its own


async def test_cancelling_a_fork_leaves_the_originals_children_alone(
    kind: str, tmp_path: Path
) -> None:
    calls = Calls()

    @Effect.gen
    def leaf(step: Step, n: int) -> Gen[int, Exception]:
        yield from step.sleep("long", "30 days")
        return n

    leaf_wf = Workflow.make(int, leaf)
    failures = {"check": 1}

    def check() -> Effect[int, Boom]:
        calls.log.append("check")
        if failures["check"] > 0:
            failures["check"] -= 1
            return Effect.fail(Boom(code=1))
        return Effect.succeed(0)

    @Effect.gen
    def parent(step: Step, n: int) -> Gen[str, Exception]:
        child_id = yield from step.start_workflow("fire", leaf_wf, n)
        yield from step.run("check", Effect.suspend(check))
        yield from step.sleep("nap", "1 day")
        return child_id

    wf = Workflow.make(int, parent)
    async with runtime(kind, tmp_path, parent=wf, leaf=leaf_wf) as rt:
        h, hl = rt.client.workflow(wf), rt.client.workflow(leaf_wf)
        rid = (await h.trigger(1)).run_id
        await rt.run_until_idle()
        assert (await h.get_run(rid)).status == "failed"
        (child,) = await hl.list_runs()
        assert (child.parent_run_id, child.status) == (rid, "sleeping")
        forked = (await h.fork(rid)).run_id  # copies "fire": the child stays the original's
        await rt.run_until_idle()
        assert (await h.get_run(forked)).status == "sleeping"
        assert [r.id for r in await hl.list_runs()] == [child.id]  # no second child
        await h.cancel(forked)
        await rt.run_until_idle()
        assert (await h.get_run(forked)).status == "cancelled"
        assert (await hl.get_run(child.id)).status == "sleeping"  # not the fork's to cancel
        await h.resume(forked)
        await rt.advance("1 day")
        run = await h.get_run(forked)
        assert (run.status, run.output) == ("completed", child.id)  # the copied output
        assert calls.log == ["check", "check"]
