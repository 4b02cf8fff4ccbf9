"""Changing a workflow while runs are in flight: ``step.patched`` and the replay check.

Each case runs a run under the old code until it sleeps, then "deploys" the new code (a
second runtime over the same store, the workflow registered under the same name) and lets
the run finish there — as after a real deploy.
"""

from __future__ import annotations

from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from pathlib import Path
from typing import Any

import pytest

from durable_effect import Effect, Gen, NonDeterminismError
from durable_effect.testing import TestRuntime
from durable_effect.workflow import RunFailed, Step, Workflow, WorkflowDefinition
from tests.workflow._support import STORAGES, Calls, Order, of_type, shared_storage

pytestmark = pytest.mark.parametrize("kind", STORAGES)

Code = Callable[[Step, Calls], Effect[list[str], Exception]]


def workflow(calls: Calls, code: Any) -> WorkflowDefinition[Order, list[str]]:
    def run(step: Step, order: Order) -> Effect[list[str], Exception]:
        out: Effect[list[str], Exception] = code(step, calls)
        return out

    return Workflow.make(Order, run)


@Effect.gen
def old_code(step: Step, calls: Calls) -> Gen[list[str], Exception]:
    """The workflow as deployed first: fetch, a nap, then ship."""
    a = yield from step.run("fetch", calls.effect("fetch", "fetched"))
    yield from step.sleep("nap", "1 hour")
    b = yield from step.run("ship", calls.effect("ship", "shipped"))
    return [str(a), str(b)]


class Deploy:
    """An old run and a new run of the same workflow across a deploy."""

    def __init__(self, old: TestRuntime, new: TestRuntime, in_flight: str) -> None:
        self.old, self.new, self.in_flight = old, new, in_flight


@asynccontextmanager
async def deployed(
    kind: str, tmp_path: Path, old_calls: Calls, new_calls: Calls, new_code: Any
) -> AsyncIterator[Deploy]:
    """Trigger a run under ``old_code`` until it naps, then open the new code's runtime."""
    store = shared_storage(kind, tmp_path)
    async with TestRuntime({"w": workflow(old_calls, old_code)}, storage=store) as old:
        h = old.client.workflow("w")
        rid = (await h.trigger(Order(order_id="old"))).run_id
        await old.run_until_idle()
        assert (await h.get_run(rid)).status == "sleeping"
        new_defs = {"w": workflow(new_calls, new_code)}
        async with TestRuntime(new_defs, storage=store, start=old.clock.now()) as new:
            yield Deploy(old, new, rid)


async def finish(rt: TestRuntime, run_id: str) -> Any:
    """Let the run wake (and anything else due) and give its finished ``Run``."""
    await rt.advance("1 hour")
    return await rt.client.workflow("w").get_run(run_id)


# -- adding a step ----------------------------------------------------------------------------


@Effect.gen
def with_audit(step: Step, calls: Calls) -> Gen[list[str], Exception]:
    """New code: an ``audit`` step before the nap, behind a patch."""
    a = yield from step.run("fetch", calls.effect("fetch", "fetched"))
    if (yield from step.patched("add-audit")):
        yield from step.run("audit", calls.effect("audit", "audited"))
    yield from step.sleep("nap", "1 hour")
    b = yield from step.run("ship", calls.effect("ship", "shipped"))
    return [str(a), str(b)]


async def test_an_added_step_behind_a_patch_runs_for_new_runs_only(
    kind: str, tmp_path: Path
) -> None:
    old_calls, new_calls = Calls(), Calls()
    async with deployed(kind, tmp_path, old_calls, new_calls, with_audit) as d:
        h = d.new.client.workflow("w")
        fresh = (await h.trigger(Order(order_id="new"))).run_id
        await d.new.run_until_idle()
        old_run = await finish(d.new, d.in_flight)
        new_run = await h.get_run(fresh)
        assert (old_run.status, new_run.status) == ("completed", "completed")
        # The run in flight had passed the patch point: no audit; the new run audits once
        # (the patch answered True again when it replayed after its nap).
        assert [s.name for s in await h.steps(d.in_flight)] == ["fetch", "nap", "ship"]
        assert [s.name for s in await h.steps(fresh)] == ["fetch", "audit", "nap", "ship"]
        assert new_calls.log.count("audit") == 1
        assert old_calls.log == ["fetch"]
        assert new_calls.log.count("fetch") == 1


async def test_an_added_step_without_a_patch_fails_the_run_in_flight(
    kind: str, tmp_path: Path
) -> None:
    @Effect.gen
    def unpatched(step: Step, calls: Calls) -> Gen[list[str], Exception]:
        yield from step.run("fetch", calls.effect("fetch", "fetched"))
        yield from step.run("audit", calls.effect("audit", "audited"))
        yield from step.sleep("nap", "1 hour")
        return []

    new_calls = Calls()
    async with deployed(kind, tmp_path, Calls(), new_calls, unpatched) as d:
        run = await finish(d.new, d.in_flight)
        assert run.status == "failed"
        with pytest.raises(NonDeterminismError) as info:
            await d.new.client.workflow("w").wait_output(d.in_flight)
        assert info.value == NonDeterminismError(
            run_id=d.in_flight, step=1, expected="nap", found="audit"
        )
        assert new_calls.log == []  # nothing of the new code's steps ran for it
        (failed,) = of_type(d.new.events, RunFailed)
        assert failed.error.startswith("NonDeterminismError: ")
        assert failed.failed_step_name == "nap"


async def test_a_step_added_after_where_runs_are_needs_no_patch(kind: str, tmp_path: Path) -> None:
    @Effect.gen
    def appended(step: Step, calls: Calls) -> Gen[list[str], Exception]:
        out = yield from old_code(step, calls)
        yield from step.run("notify", calls.effect("notify", "notified"))
        return out

    new_calls = Calls()
    async with deployed(kind, tmp_path, Calls(), new_calls, appended) as d:
        run = await finish(d.new, d.in_flight)
        assert run.status == "completed"
        assert new_calls.log == ["ship", "notify"]


# -- removing a step --------------------------------------------------------------------------


@Effect.gen
def old_with_check(step: Step, calls: Calls) -> Gen[list[str], Exception]:
    yield from step.run("fetch", calls.effect("fetch", "fetched"))
    yield from step.run("check", calls.effect("check", "checked"))
    yield from step.sleep("nap", "1 hour")
    yield from step.run("ship", calls.effect("ship", "shipped"))
    return ["done"]


async def test_a_removed_step_behind_a_patch_replays_for_old_runs(
    kind: str, tmp_path: Path
) -> None:
    @Effect.gen
    def without_check(step: Step, calls: Calls) -> Gen[list[str], Exception]:
        yield from step.run("fetch", calls.effect("fetch", "fetched"))
        if not (yield from step.patched("drop-check")):
            yield from step.run("check", calls.effect("check", "checked"))  # old runs only
        yield from step.sleep("nap", "1 hour")
        yield from step.run("ship", calls.effect("ship", "shipped"))
        return ["done"]

    new_calls = Calls()
    store = shared_storage(kind, tmp_path)
    async with TestRuntime({"w": workflow(Calls(), old_with_check)}, storage=store) as old:
        rid = (await old.client.workflow("w").trigger(Order(order_id="o"))).run_id
        await old.run_until_idle()
        defs = {"w": workflow(new_calls, without_check)}
        async with TestRuntime(defs, storage=store, start=old.clock.now()) as new:
            h = new.client.workflow("w")
            fresh = (await h.trigger(Order(order_id="n"))).run_id
            await new.run_until_idle()
            assert (await finish(new, rid)).status == "completed"
            assert (await h.get_run(fresh)).status == "completed"
            assert [s.name for s in await h.steps(rid)] == ["fetch", "check", "nap", "ship"]
            assert [s.name for s in await h.steps(fresh)] == ["fetch", "nap", "ship"]
            assert new_calls.log.count("check") == 0  # the old run's check replayed


async def test_a_removed_step_without_a_patch_fails_the_run_in_flight(
    kind: str, tmp_path: Path
) -> None:
    @Effect.gen
    def without_check(step: Step, calls: Calls) -> Gen[list[str], Exception]:
        yield from step.run("fetch", calls.effect("fetch", "fetched"))
        yield from step.sleep("nap", "1 hour")
        return ["done"]

    store = shared_storage(kind, tmp_path)
    async with TestRuntime({"w": workflow(Calls(), old_with_check)}, storage=store) as old:
        rid = (await old.client.workflow("w").trigger(Order(order_id="o"))).run_id
        await old.run_until_idle()
        defs = {"w": workflow(Calls(), without_check)}
        async with TestRuntime(defs, storage=store, start=old.clock.now()) as new:
            await finish(new, rid)
            with pytest.raises(NonDeterminismError) as info:
                await new.client.workflow("w").wait_output(rid)
            # Sleeps count as steps: the nap now stands where "check" was recorded.
            assert (info.value.step, info.value.expected, info.value.found) == (1, "check", "nap")


# -- renaming a step --------------------------------------------------------------------------


async def test_a_renamed_step_behind_a_patch_keeps_the_old_name_for_old_runs(
    kind: str, tmp_path: Path
) -> None:
    @Effect.gen
    def renamed(step: Step, calls: Calls) -> Gen[list[str], Exception]:
        name = "load" if (yield from step.patched("fetch-is-load")) else "fetch"
        a = yield from step.run(name, calls.effect(name, "fetched"))
        yield from step.sleep("nap", "1 hour")
        b = yield from step.run("ship", calls.effect("ship", "shipped"))
        return [str(a), str(b)]

    new_calls = Calls()
    async with deployed(kind, tmp_path, Calls(), new_calls, renamed) as d:
        h = d.new.client.workflow("w")
        fresh = (await h.trigger(Order(order_id="new"))).run_id
        await d.new.run_until_idle()
        old_run = await finish(d.new, d.in_flight)
        assert old_run.status == "completed"
        assert old_run.output == ["fetched", "shipped"]
        assert [s.name for s in await h.steps(d.in_flight)] == ["fetch", "nap", "ship"]
        assert [s.name for s in await h.steps(fresh)] == ["load", "nap", "ship"]
        assert "fetch" not in new_calls.log  # replayed, not re-run


async def test_a_renamed_step_without_a_patch_fails_instead_of_running_again(
    kind: str, tmp_path: Path
) -> None:
    @Effect.gen
    def renamed(step: Step, calls: Calls) -> Gen[list[str], Exception]:
        yield from step.run("load", calls.effect("load", "fetched"))
        yield from step.sleep("nap", "1 hour")
        return []

    new_calls = Calls()
    async with deployed(kind, tmp_path, Calls(), new_calls, renamed) as d:
        assert (await finish(d.new, d.in_flight)).status == "failed"
        with pytest.raises(NonDeterminismError) as info:
            await d.new.client.workflow("w").wait_output(d.in_flight)
        assert (info.value.step, info.value.expected, info.value.found) == (0, "fetch", "load")
        assert new_calls.log == []  # "load" did not run a second fetch


# -- patch markers and failed steps -----------------------------------------------------------


async def test_patched_is_recorded_and_takes_no_position(kind: str, tmp_path: Path) -> None:
    seen: list[bool] = []

    @Effect.gen
    def code(step: Step, calls: Calls) -> Gen[list[str], Exception]:
        first = yield from step.patched("p1")
        yield from step.run("fetch", calls.effect("fetch", "x"))
        seen.append(first)
        again = yield from step.patched("p1")  # the same name: the recorded answer
        seen.append(again)
        yield from step.sleep("nap", "1 hour")
        late = yield from step.patched("p2")
        seen.append(late)
        return []

    store = shared_storage(kind, tmp_path)
    async with TestRuntime({"w": workflow(Calls(), code)}, storage=store) as rt:
        h = rt.client.workflow("w")
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await rt.run_until_idle()
        await rt.advance("1 hour")
        assert (await h.get_run(rid)).status == "completed"
        # First execution: True, True; after the nap the replay gives True (recorded) for
        # p1 again, and p2 (no step recorded after it) True.
        assert seen == [True, True, True, True, True]
        assert [s.name for s in await h.steps(rid)] == ["fetch", "nap"]  # no marker steps


async def test_resume_under_fixed_code_may_rename_the_failed_step(
    kind: str, tmp_path: Path
) -> None:
    @Effect.gen
    def broken(step: Step, calls: Calls) -> Gen[list[str], Exception]:
        yield from step.run("fetch", calls.effect("fetch", "fetched"))
        yield from step.run("charge", Effect.fail(ValueError("card declined")))
        return []

    @Effect.gen
    def fixed(step: Step, calls: Calls) -> Gen[list[str], Exception]:
        yield from step.run("fetch", calls.effect("fetch", "fetched"))
        c = yield from step.run("charge-v2", calls.effect("charge-v2", "charged"))
        return [str(c)]

    old_calls, new_calls = Calls(), Calls()
    store = shared_storage(kind, tmp_path)
    async with TestRuntime({"w": workflow(old_calls, broken)}, storage=store) as old:
        rid = (await old.client.workflow("w").trigger(Order(order_id="o"))).run_id
        await old.run_until_idle()
        assert (await old.client.workflow("w").get_run(rid)).status == "failed"
        defs = {"w": workflow(new_calls, fixed)}
        async with TestRuntime(defs, storage=store, start=old.clock.now()) as new:
            h = new.client.workflow("w")
            await h.resume(rid)
            await new.run_until_idle()
            run = await h.get_run(rid)
            assert (run.status, run.output) == ("completed", ["charged"])
            assert new_calls.log == ["charge-v2"]  # fetch replayed
            assert [s.name for s in await h.steps(rid)] == ["fetch", "charge-v2"]
