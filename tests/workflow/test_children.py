"""Child runs: ``step.run_workflow`` / ``step.start_workflow``, on every backend.

A child's id comes from its parent and the step's name (a replay never starts a second
child); the parent waits with no worker held and gets the child's output or its own typed
error; a child's end wakes the parent at once; cancelling a parent cancels its unfinished
children (trees three levels deep); the parent's deadline caps the child's.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any, ClassVar, Literal, cast

import attrs
import pytest

from durable_effect import (
    Effect,
    Gen,
    RunCancelledError,
    RunFailedError,
    RunTimeoutError,
    TaggedError,
)
from durable_effect.workflow import (
    RunChildFinished,
    RunChildStarted,
    Step,
    Workflow,
    WorkflowDefinition,
)
from tests.workflow._support import STORAGES, T0, Calls, of_type, runtime

pytestmark = pytest.mark.parametrize("kind", STORAGES)


@attrs.frozen(kw_only=True, eq=False)
class OutOfStock(TaggedError):
    tag: ClassVar[Literal["OutOfStock"]] = "OutOfStock"
    sku: str


def make_child(calls: Calls, nap: str | None = None) -> WorkflowDefinition[int, int, OutOfStock]:
    @Effect.gen
    def child(step: Step, n: int) -> Gen[int, OutOfStock]:
        yield from step.run("work", calls.effect(f"child-{n}", n))
        if nap is not None:
            yield from step.sleep("nap", nap)
        if n < 0:
            yield from OutOfStock(sku=f"sku{n}")
        return n * 10

    return Workflow.make(int, child, error_schema=OutOfStock)


async def test_run_workflow_waits_for_the_childs_output(kind: str, tmp_path: Path) -> None:
    calls = Calls()
    child = make_child(calls, nap="1 hour")

    @Effect.gen
    def parent(step: Step, n: int) -> Gen[list[int], Exception]:
        a = yield from step.run_workflow("first", child, n)
        b = yield from step.run_workflow("second", "child", n + 1)  # by registered name
        yield from step.run("after", calls.effect("after", 0))
        assert isinstance(b, int)
        return [a, b, 0]

    wf = Workflow.make(int, parent)
    async with runtime(kind, tmp_path, parent=wf, child=child) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(1)).run_id
        await rt.run_until_idle()
        assert (await h.get_run(rid)).status == "sleeping"  # no worker held meanwhile
        children = await rt.client.workflow(child).list_runs()
        assert [(c.parent_run_id, c.status) for c in children] == [(rid, "sleeping")]
        await rt.advance("1 hour")  # first child ends: the parent wakes at once
        await rt.advance("1 hour")
        run = await h.get_run(rid)
        assert (run.status, run.output) == ("completed", [10, 20, 0])
        assert run.completed_at == T0 + timedelta(hours=2)
        assert calls.log == ["child-1", "child-2", "after"]  # each child started once
        assert len(await rt.client.workflow(child).list_runs()) == 2
        started = [e for e in of_type(rt.events, RunChildStarted) if e.run_id == rid]
        assert [(e.step_name, e.child_workflow, e.wait) for e in started] == [
            ("first", "child", True),
            ("second", "child", True),
        ]
        finished = [e for e in of_type(rt.events, RunChildFinished) if e.run_id == rid]
        assert [e.status for e in finished] == ["completed", "completed"]
        assert {e.child_run_id for e in finished} == {c.id for c in children} | {
            e.child_run_id for e in started
        }


async def test_a_childs_typed_error_and_cancel_fail_the_waiting_step(
    kind: str, tmp_path: Path
) -> None:
    calls = Calls()
    child = make_child(calls, nap="1 hour")
    seen: list[object] = []

    def keep(error: BaseException) -> Effect[object, Exception]:
        return Effect.succeed(error)

    @Effect.gen
    def parent(step: Step, n: int) -> Gen[int, Exception]:
        got = yield from step.run_workflow("kid", child, n).catch_all(keep)
        seen.append(got)
        return 0

    wf = Workflow.make(int, parent)
    async with runtime(kind, tmp_path, parent=wf, child=child) as rt:
        h, hc = rt.client.workflow(wf), rt.client.workflow(child)
        failing = (await h.trigger(-3)).run_id
        cancelled = (await h.trigger(4)).run_id
        await rt.run_until_idle()
        kids = {r.parent_run_id: r.id for r in await hc.list_runs()}
        await hc.cancel(kids[cancelled])
        await rt.advance("1 hour")
        assert (await h.get_run(failing)).status == "completed"
        assert (await h.get_run(cancelled)).status == "completed"
        by_type: dict[type, object] = {type(e): e for e in seen}
        assert set(by_type) == {cast(type, OutOfStock), RunCancelledError}
        stock = by_type[OutOfStock]
        assert isinstance(stock, OutOfStock)
        assert stock.sku == "sku-3"
        assert by_type[RunCancelledError] == RunCancelledError(run_id=kids[cancelled])


async def test_start_workflow_gives_the_child_id_and_a_replay_starts_no_second_child(
    kind: str, tmp_path: Path
) -> None:
    calls = Calls()
    child = make_child(calls)

    @Effect.gen
    def parent(step: Step, n: int) -> Gen[str, Exception]:
        child_id = yield from step.start_workflow("fire", child, n, labels={"via": "parent"})
        yield from step.sleep("nap", "1 hour")  # the parent re-executes after this
        again = yield from step.start_workflow("fire", child, n)
        assert again == child_id
        return child_id

    wf = Workflow.make(int, parent)
    async with runtime(kind, tmp_path, parent=wf, child=child) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(5)).run_id
        await rt.advance("1 hour")
        run = await h.get_run(rid)
        assert run.status == "completed"
        kid = await rt.client.workflow(child).get_run(str(run.output))
        assert (kid.status, kid.output, kid.parent_run_id, kid.labels) == (
            "completed",
            50,
            rid,
            {"via": "parent"},
        )
        assert calls.log == ["child-5"]
        assert len(await rt.client.workflow(child).list_runs()) == 1


async def test_a_bad_child_input_fails_the_step_and_starts_nothing(
    kind: str, tmp_path: Path
) -> None:
    child = make_child(Calls())

    @Effect.gen
    def parent(step: Step, n: int) -> Gen[int, Exception]:
        bad: Any = "not an int"  # what an untyped caller could pass
        return (yield from step.run_workflow("kid", child, bad))

    wf = Workflow.make(int, parent)
    async with runtime(kind, tmp_path, parent=wf, child=child) as rt:
        rid = (await rt.client.workflow(wf).trigger(1)).run_id
        await rt.run_until_idle()
        run = await rt.client.workflow(wf).get_run(rid)
        assert run.status == "failed"
        assert run.error is not None
        assert run.error.startswith("ValidationError")
        assert await rt.client.workflow(child).list_runs() == []
        with pytest.raises(RunFailedError) as info:  # undeclared by the parent: its text
            await rt.client.workflow(wf).wait_output(rid)
        assert info.value.error.startswith("ValidationError: ")


def tree(calls: Calls) -> tuple[Any, Any, Any]:
    @Effect.gen
    def leaf(step: Step, n: int) -> Gen[int, Exception]:
        yield from step.sleep("forever", "30 days")
        yield from step.run("never", calls.effect("leaf-after", n))
        return n

    leaf_wf = Workflow.make(int, leaf)

    @Effect.gen
    def middle(step: Step, n: int) -> Gen[int, Exception]:
        yield from step.start_workflow("fire-and-forget", leaf_wf, n)  # not waited for
        return (yield from step.run_workflow("waited", leaf_wf, n + 1))

    middle_wf = Workflow.make(int, middle)

    @Effect.gen
    def top(step: Step, n: int) -> Gen[int, Exception]:
        return (yield from step.run_workflow("mid", middle_wf, n))

    return Workflow.make(int, top), middle_wf, leaf_wf


async def test_cancelling_a_parent_cancels_a_tree_three_levels_deep(
    kind: str, tmp_path: Path
) -> None:
    calls = Calls()
    top, middle, leaf = tree(calls)
    async with runtime(kind, tmp_path, top=top, middle=middle, leaf=leaf) as rt:
        h = rt.client.workflow(top)
        rid = (await h.trigger(1)).run_id
        other = (await h.trigger(100)).run_id
        await rt.run_until_idle()
        leaves = await rt.client.workflow(leaf).list_runs()
        assert len(leaves) == 4
        assert {r.status for r in leaves} == {"sleeping"}
        await h.cancel(rid)
        await rt.run_until_idle()
        assert (await h.get_run(rid)).status == "cancelled"
        mids = {r.id: r for r in await rt.client.workflow(middle).list_runs()}
        mine = [m for m in mids.values() if m.parent_run_id == rid]
        assert [m.status for m in mine] == ["cancelled"]
        for r in await rt.client.workflow(leaf).list_runs():
            parent = mids[str(r.parent_run_id)]
            expected = "cancelled" if parent.parent_run_id == rid else "sleeping"
            assert r.status == expected, (r.id, parent.parent_run_id)
        assert (await h.get_run(other)).status == "sleeping"  # the other tree goes on
        assert calls.log == []


async def test_a_parents_deadline_caps_its_childs(kind: str, tmp_path: Path) -> None:
    child = make_child(Calls(), nap="1 day")

    @Effect.gen
    def parent(step: Step, n: int) -> Gen[int, Exception]:
        return (yield from step.run_workflow("kid", child, n))

    wf = Workflow.make(int, parent, run_timeout="2 hours")
    async with runtime(kind, tmp_path, parent=wf, child=child) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(1)).run_id
        await rt.run_until_idle()
        await rt.advance("2 hours")
        (kid,) = await rt.client.workflow(child).list_runs()
        assert (kid.status, kid.completed_at) == ("failed", T0 + timedelta(hours=2))
        with pytest.raises(RunTimeoutError) as info:
            await rt.client.workflow(child).wait_output(kid.id)
        assert info.value.run_id == kid.id
        with pytest.raises(RunTimeoutError):
            await h.wait_output(rid)


async def test_an_idempotency_key_makes_a_retained_run_of_that_key_the_child(
    kind: str, tmp_path: Path
) -> None:
    calls = Calls()
    child = make_child(calls, nap="1 hour")

    @Effect.gen
    def parent(step: Step, n: int) -> Gen[list[object], Exception]:
        kid = yield from step.start_workflow("fire", child, n, idempotency_key="order-7")
        out = yield from step.run_workflow("wait", child, n, idempotency_key="order-7")
        return [kid, out]

    wf = Workflow.make(int, parent)
    async with runtime(kind, tmp_path, parent=wf, child=child) as rt:
        h, hc = rt.client.workflow(wf), rt.client.workflow(child)
        first = (await h.trigger(2)).run_id
        await rt.run_until_idle()
        second = (await h.trigger(3)).run_id  # the same key: the same child, input 2
        await rt.run_until_idle()
        assert (await h.get_run(second)).status == "sleeping"
        (kid,) = await hc.list_runs()
        assert (kid.idempotency_key, kid.parent_run_id) == ("order-7", first)
        again = await hc.trigger(9, idempotency_key="order-7")  # a client sees it too
        assert (again.run_id, again.disposition) == (kid.id, "idempotent")
        await rt.advance("1 hour")
        for rid in (first, second):
            run = await h.get_run(rid)
            assert (run.status, run.output) == ("completed", [kid.id, 20]), rid
            assert run.completed_at == T0 + timedelta(hours=1), rid  # woken at once
        assert calls.log == ["child-2"]  # one child for both parents and both steps


async def test_a_client_run_with_the_key_is_the_child(kind: str, tmp_path: Path) -> None:
    calls = Calls()
    child = make_child(calls)

    @Effect.gen
    def parent(step: Step, n: int) -> Gen[int, Exception]:
        return (yield from step.run_workflow("kid", child, n, idempotency_key="shared"))

    wf = Workflow.make(int, parent)
    async with runtime(kind, tmp_path, parent=wf, child=child) as rt:
        hc = rt.client.workflow(child)
        existing = (await hc.trigger(4, idempotency_key="shared")).run_id
        await rt.run_until_idle()
        rid = (await rt.client.workflow(wf).trigger(1)).run_id
        await rt.run_until_idle()
        assert await rt.client.workflow(wf).wait_output(rid) == 40  # the existing run's
        assert [r.id for r in await hc.list_runs()] == [existing]
        assert calls.log == ["child-4"]


async def test_a_bad_idempotency_key_fails_the_step_and_starts_nothing(
    kind: str, tmp_path: Path
) -> None:
    child = make_child(Calls())

    @Effect.gen
    def parent(step: Step, n: int) -> Gen[str, Exception]:
        return (yield from step.start_workflow("kid", child, n, idempotency_key=""))

    wf = Workflow.make(int, parent)
    async with runtime(kind, tmp_path, parent=wf, child=child) as rt:
        rid = (await rt.client.workflow(wf).trigger(1)).run_id
        await rt.run_until_idle()
        run = await rt.client.workflow(wf).get_run(rid)
        assert run.status == "failed"
        assert run.error is not None
        assert run.error.startswith("ValidationError")
        assert "idempotency_key" in run.error
        assert await rt.client.workflow(child).list_runs() == []


async def test_cancelling_a_parent_leaves_a_run_of_the_key_it_did_not_start(
    kind: str, tmp_path: Path
) -> None:
    calls = Calls()
    child = make_child(calls, nap="1 hour")

    @Effect.gen
    def parent(step: Step, n: int) -> Gen[int, Exception]:
        return (yield from step.run_workflow("kid", child, n, idempotency_key="shared"))

    wf = Workflow.make(int, parent)
    async with runtime(kind, tmp_path, parent=wf, child=child) as rt:
        h, hc = rt.client.workflow(wf), rt.client.workflow(child)
        existing = (await hc.trigger(4, idempotency_key="shared")).run_id
        rid = (await h.trigger(1)).run_id
        await rt.run_until_idle()
        assert (await h.get_run(rid)).status == "sleeping"
        await h.cancel(rid)
        await rt.run_until_idle()
        assert (await h.get_run(rid)).status == "cancelled"
        assert (await hc.get_run(existing)).status == "sleeping"  # the client's run goes on
        await rt.advance("1 hour")
        assert (await hc.get_run(existing)).output == 40


async def test_cancelling_an_idle_child_wakes_its_waiting_parent_at_once(
    kind: str, tmp_path: Path
) -> None:
    child = make_child(Calls(), nap="1 hour")

    @Effect.gen
    def parent(step: Step, n: int) -> Gen[str, Exception]:
        got = yield from step.run_workflow("kid", child, n).catch_all(
            lambda e: Effect.succeed(type(e).__name__)
        )
        return str(got)

    wf = Workflow.make(int, parent)
    async with runtime(kind, tmp_path, parent=wf, child=child) as rt:
        h, hc = rt.client.workflow(wf), rt.client.workflow(child)
        rid = (await h.trigger(1)).run_id
        await rt.run_until_idle()
        (kid,) = await hc.list_runs()
        await hc.cancel(kid.id)  # no worker holds it: cancelled by the call itself
        await rt.run_until_idle()  # no time passes
        run = await h.get_run(rid)
        assert (run.status, run.output, run.completed_at) == ("completed", "RunCancelledError", T0)


async def test_a_child_ending_while_its_parent_is_held_wakes_it_once_free(
    kind: str, tmp_path: Path
) -> None:
    # A parent may be held at the very moment its child ends (a sibling's end waking it,
    # a client call, a dead worker's lease): the wake is not lost, the child's alarm tries
    # again soon — the parent does not wait for its next look (a minute to an hour away).
    child = make_child(Calls(), nap="1 hour")

    @Effect.gen
    def parent(step: Step, n: int) -> Gen[int, Exception]:
        return (yield from step.run_workflow("kid", child, n))

    wf = Workflow.make(int, parent)
    async with runtime(kind, tmp_path, parent=wf, child=child) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(2)).run_id
        await rt.run_until_idle()
        await rt.advance(timedelta(minutes=59, seconds=59))
        storage = rt.jobs.storage
        held = await storage.acquire(
            [f"workflow:parent:{rid}"], owner="holder", now=rt.clock.now(), ttl=timedelta(hours=1)
        )
        assert held is not None
        await rt.advance("1 second")  # the child ends: its parent is held
        (kid,) = await rt.client.workflow(child).list_runs()
        assert kid.status == "completed"
        assert (await h.get_run(rid)).status == "sleeping"
        await storage.release(held.leases)
        await rt.advance("1 second")
        run = await h.get_run(rid)
        assert (run.status, run.output) == ("completed", 20)
        assert run.completed_at is not None
        assert run.completed_at <= T0 + timedelta(hours=1, seconds=2)
