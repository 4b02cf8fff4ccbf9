"""Run deadlines: ``run_timeout`` on the definition or the trigger, ``RunTimeoutError``.

A run past its deadline stops at its next step boundary (or when it wakes) and ends
``failed`` with ``RunTimeoutError(run_id, timeout)``; a sleep, a retry wait (or an event
wait) that would outlast the deadline wakes at the deadline; a step running at the deadline
is not interrupted (its result is recorded); ``retrigger`` starts a fresh deadline.
"""

from __future__ import annotations

from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from durable_effect import Effect, Gen, RunTimeoutError, ValidationError
from durable_effect._backoff import Retry
from durable_effect.workflow import RunFailed, Step, TriggerRequest, Workflow
from tests.workflow._support import STORAGES, T0, Boom, Calls, Order, of_type, runtime, snapshot

pytestmark = pytest.mark.parametrize("kind", STORAGES)

HOUR = timedelta(hours=1)


def napper(calls: Calls) -> Any:
    @Effect.gen
    def run(step: Step, order: Order) -> Gen[int, Exception]:
        yield from step.run("before", calls.effect("before", 1))
        yield from step.sleep("nap", "1 day")
        yield from step.run("after", calls.effect("after", 2))
        return order.qty

    return run


async def test_a_sleep_past_the_deadline_wakes_at_it_and_fails_the_run(
    kind: str, tmp_path: Path
) -> None:
    calls = Calls()
    wf = Workflow.make(Order, napper(calls), run_timeout="1 hour")
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await rt.run_until_idle()
        assert (await h.get_run(rid)).status == "sleeping"
        assert (await snapshot(rt, f"workflow:w:{rid}")).alarm_at == T0 + HOUR  # not a day
        await rt.advance("1 hour")
        run = await h.get_run(rid)
        assert (run.status, run.completed_at) == ("failed", T0 + HOUR)
        assert run.error == (
            f"RunTimeoutError: run {rid!r} passed its deadline (1 hour after it was triggered)"
        )
        assert calls.log == ["before"]  # "after" never ran
        with pytest.raises(RunTimeoutError) as info:
            await h.wait_output(rid)
        assert info.value == RunTimeoutError(run_id=rid, timeout=HOUR)
        (failed,) = of_type(rt.events, RunFailed)
        assert failed.failed_step_name == "nap"


async def test_trigger_overrides_the_definitions_timeout(kind: str, tmp_path: Path) -> None:
    calls = Calls()
    wf = Workflow.make(Order, napper(calls), run_timeout="1 hour")
    plain = Workflow.make(Order, napper(calls))
    async with runtime(kind, tmp_path, w=wf, p=plain) as rt:
        h, hp = rt.client.workflow(wf), rt.client.workflow(plain)
        longer = (await h.trigger(Order(order_id="o"), run_timeout="2 days")).run_id
        shorter = (await hp.trigger(Order(order_id="o"), run_timeout="10 minutes")).run_id
        (batched,) = await hp.batch_trigger(
            [TriggerRequest(input=Order(order_id="b"), run_timeout=timedelta(minutes=20))]
        )
        free = (await hp.trigger(Order(order_id="o", qty=9))).run_id
        await rt.advance("1 day")
        assert (await h.get_run(longer)).status == "completed"
        with pytest.raises(RunTimeoutError) as info:
            await hp.wait_output(shorter)
        assert info.value.timeout == timedelta(minutes=10)
        assert (await hp.get_run(shorter)).completed_at == T0 + timedelta(minutes=10)
        assert (await hp.get_run(batched.run_id)).completed_at == T0 + timedelta(minutes=20)
        assert await hp.wait_output(free) == 9  # no deadline at all


async def test_a_step_running_at_the_deadline_is_not_interrupted(kind: str, tmp_path: Path) -> None:
    calls = Calls()

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[int, Exception]:
        slow = Effect.sleep("2 hours").flat_map(lambda _: calls.effect("slow", 1))
        yield from step.run("slow", slow)
        yield from step.run("next", calls.effect("next", 2))
        return 0

    wf = Workflow.make(Order, run, run_timeout="1 hour")
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await rt.advance("3 hours")
        run_ = await h.get_run(rid)
        assert (run_.status, run_.completed_at) == ("failed", T0 + 2 * HOUR)
        assert calls.log == ["slow"]  # it ran to its end; the next step did not start
        assert [(s.name, s.status) for s in await h.steps(rid)] == [("slow", "completed")]
        with pytest.raises(RunTimeoutError):
            await h.wait_output(rid)


async def test_retry_waits_wake_at_the_deadline(kind: str, tmp_path: Path) -> None:
    @Effect.gen
    def run(step: Step, order: Order) -> Gen[int, Exception]:
        policy = Retry(5, delay="2 hours", jitter=False)
        return (yield from step.run("flaky", Effect.fail(Boom(code=1)), retry=policy))

    wf = Workflow.make(Order, run, run_timeout="1 hour")
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await rt.run_until_idle()
        assert (await snapshot(rt, f"workflow:w:{rid}")).alarm_at == T0 + HOUR
        await rt.advance("1 hour")
        run_ = await h.get_run(rid)
        assert (run_.status, run_.completed_at) == ("failed", T0 + HOUR)
        assert [s.attempts for s in await h.steps(rid)] == [1]  # no second attempt


async def test_a_run_that_starts_past_its_deadline_fails_at_once(kind: str, tmp_path: Path) -> None:
    calls = Calls()
    wf = Workflow.make(Order, napper(calls), run_timeout="1 minute")
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        rt.clock.set(T0 + HOUR)  # no worker took it in time
        await rt.run_until_idle()
        run_ = await h.get_run(rid)
        assert (run_.status, run_.attempt, run_.started_at) == ("failed", 0, None)
        assert calls.log == []
        with pytest.raises(RunTimeoutError):
            await h.wait_output(rid)


async def test_retrigger_starts_a_fresh_deadline(kind: str, tmp_path: Path) -> None:
    calls = Calls()
    wf = Workflow.make(Order, napper(calls))
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"), run_timeout="1 hour")).run_id
        await rt.advance("2 hours")
        assert (await h.get_run(rid)).status == "failed"
        again = (await h.retrigger(rid)).run_id  # the same timeout, from now
        await rt.run_until_idle()
        alarm = (await snapshot(rt, f"workflow:w:{again}")).alarm_at
        assert alarm == T0 + 3 * HOUR
        await rt.advance("1 hour")
        with pytest.raises(RunTimeoutError) as info:
            await h.wait_output(again)
        assert info.value == RunTimeoutError(run_id=again, timeout=HOUR)


async def test_an_invalid_run_timeout_writes_nothing(kind: str, tmp_path: Path) -> None:
    wf = Workflow.make(Order, napper(Calls()))
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        bad: list[Any] = ["soon", "0 s", -5, True]
        for timeout in bad:
            with pytest.raises(ValidationError) as info:
                await h.trigger(Order(order_id="o"), run_timeout=timeout)
            assert info.value.path == "run_timeout"
        assert await h.list_runs() == []
