"""Steps: caching on resume, repeated names, the replay-value fix, durable retries, timeouts.

Every test runs on memory and on SQLite storage.
"""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from durable_effect import (
    Effect,
    Gen,
    RetryExhaustedError,
    StepTimeoutError,
)
from durable_effect._backoff import Backoff, Retry
from durable_effect.workflow import Step, StepFailed, StepStarted, Workflow
from tests.workflow._support import (
    STORAGES,
    T0,
    Boom,
    Calls,
    Money,
    Order,
    Point,
    Receipt,
    of_type,
    runtime,
    snapshot,
)

pytestmark = pytest.mark.parametrize("kind", STORAGES)


async def test_completed_steps_are_not_run_again_after_a_sleep(kind: str, tmp_path: Path) -> None:
    calls = Calls()
    seen: list[object] = []

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[list[object], Exception]:
        a = yield from step.run("a", calls.effect("a", {"n": 1}))
        seen.append(a)
        yield from step.sleep("nap", "30 minutes")
        b = yield from step.run("b", calls.effect("b", [1, 2]))
        yield from step.sleep("nap-2", "30 minutes")
        return [a, b]

    wf = Workflow.make(Order, run)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await rt.run_until_idle()
        run_ = await h.get_run(rid)
        assert (run_.status, run_.current_step) == ("sleeping", "nap")
        assert (await snapshot(rt, f"workflow:w:{rid}")).alarm_at == T0 + timedelta(minutes=30)
        await rt.advance("29 minutes")
        assert calls.log == ["a"]
        await rt.advance("1 minute")
        assert calls.log == ["a", "b"]
        await rt.advance("30 minutes")
        run_ = await h.get_run(rid)
        assert run_.status == "completed"
        assert run_.output == [{"n": 1}, [1, 2]]
        assert calls.log == ["a", "b"]  # each step's effect ran exactly once
        assert seen == [{"n": 1}] * 3  # replayed twice with the same value
        assert run_.attempt == 3
        # replayed steps emit nothing
        assert [e.step_name for e in of_type(rt.events, StepStarted)] == ["a", "nap", "b", "nap-2"]
        steps = await h.steps(rid)
        assert [(s.name, s.completed_at) for s in steps] == [
            ("a", T0),
            ("nap", T0 + timedelta(minutes=30)),
            ("b", T0 + timedelta(minutes=30)),
            ("nap-2", T0 + timedelta(hours=1)),
        ]


async def test_a_repeated_step_name_returns_the_first_result(kind: str, tmp_path: Path) -> None:
    calls = Calls()

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[tuple[object, object], Exception]:
        users = yield from step.run("fetch", calls.effect("users", ["ann"]))
        orders = yield from step.run("fetch", calls.effect("orders", ["o-1"]))
        return (users, orders)

    wf = Workflow.make(Order, run)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await rt.run_until_idle()
        assert (await h.get_run(rid)).output == (["ann"], ["ann"])
        assert calls.log == ["users"]
        assert [s.name for s in await h.steps(rid)] == ["fetch"]


def _roundtrip_workflow(
    values: dict[str, tuple[object, object]], seen: dict[str, list[object]]
) -> Any:
    @Effect.gen
    def run(step: Step, order: Order) -> Gen[None, Exception]:
        for name, (value, schema) in values.items():
            got = yield from step.run(name, Effect.succeed(value), schema=schema)
            seen.setdefault(name, []).append(got)
        typed = yield from step.run(
            "typed", Effect.succeed([{"order_id": "x", "total": 1}]), schema=list[Receipt]
        )
        seen.setdefault("typed", []).append(typed)
        declared = yield from step.run("declared", Effect.succeed(Order(order_id="d")))
        seen.setdefault("declared", []).append(declared)
        yield from step.sleep("nap", "1 minute")

    return Workflow.make(Order, run)


async def test_a_step_gives_the_same_value_and_type_on_first_run_and_on_replay(
    kind: str, tmp_path: Path
) -> None:
    live_list = [1, 2]
    values: dict[str, tuple[object, object]] = {
        # the user's classes: with schema= (the replaying worker decodes with it)
        "struct": (Receipt(order_id="o", total=3), Receipt),
        "attrs": (Money(cents=5, currency="EUR"), Money),
        "dataclass": (Point(x=1, y=2), Point),
        # the standard library's value types and JSON: as themselves, without a schema
        "tuple": ((1, "a"), None),
        "set": ({3}, None),
        "when": (datetime(2026, 5, 1, 12, tzinfo=UTC), None),
        "list": (live_list, None),
        "nested_tuple": ({"pair": (1, 2)}, None),
        "none": (None, None),
        "float": (1.5, None),
    }
    seen: dict[str, list[object]] = {}
    wf = _roundtrip_workflow(values, seen)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        await h.trigger(Order(order_id="o"))
        await rt.run_until_idle()
        await rt.advance("1 minute")
    for name, (first, replay) in seen.items():
        assert first == replay, name
        assert type(first) is type(replay), name
    assert seen["struct"][0] == Receipt(order_id="o", total=3)
    assert seen["attrs"][0] == Money(cents=5, currency="EUR")
    assert seen["dataclass"][0] == Point(x=1, y=2)
    assert seen["tuple"][0] == (1, "a")
    assert seen["set"][0] == {3}
    assert seen["when"][0] == datetime(2026, 5, 1, 12, tzinfo=UTC)
    # the first run already gets the decoded value: never the live object (fix)
    assert seen["list"][0] == [1, 2]
    assert seen["list"][0] is not live_list
    assert seen["nested_tuple"][0] == {"pair": [1, 2]}  # JSON, on both runs alike
    assert seen["typed"][0] == [Receipt(order_id="x", total=1)]
    # a class declared on the workflow (its input schema) needs no schema=
    assert seen["declared"][0] == Order(order_id="d")


async def test_a_step_result_that_cannot_be_stored_fails_the_run(kind: str, tmp_path: Path) -> None:
    class Local(msgspec.Struct):
        x: int

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[object, Exception]:
        if order.order_id == "local":
            return (yield from step.run("local", Effect.succeed(Local(x=1))))
        if order.order_id == "module":  # importable, but not declared: refused all the same
            return (yield from step.run("module", Effect.succeed(Receipt(order_id="r", total=1))))
        if order.order_id == "object":
            return (yield from step.run("object", Effect.succeed(object())))
        bad: Any = {"order_id": 1}
        return (yield from step.run("schema", Effect.succeed(bad), schema=Receipt))

    wf = Workflow.make(Order, run)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        kinds = ("local", "module", "object", "schema")
        ids = [(await h.trigger(Order(order_id=k))).run_id for k in kinds]
        await rt.run_until_idle()
        errors = [(await h.get_run(i)).error or "" for i in ids]
        assert errors[0].startswith("TypeError: a value of type Local cannot be stored")
        assert "pass schema=Local" in errors[0]
        assert errors[1].startswith("TypeError: a value of type Receipt cannot be stored")
        assert "pass schema=Receipt" in errors[1]
        assert errors[2].startswith("ValidationError: object at $: cannot encode object")
        assert errors[3].startswith("ValidationError: Receipt at $.order_id")
        for rid in ids:
            assert [s.status for s in await h.steps(rid)] == ["failed"]


async def test_step_retries_are_durable_alarms(kind: str, tmp_path: Path) -> None:
    attempts: list[int] = []

    def flaky() -> Effect[str, Boom]:
        def run() -> Effect[str, Boom]:
            attempts.append(len(attempts) + 1)
            if len(attempts) < 3:
                return Effect.fail(Boom(code=len(attempts)))
            return Effect.succeed("ok")

        return Effect.suspend(run)

    policy = Retry(3, delay=Backoff.exponential("10 seconds"), jitter=False)

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[str, RetryExhaustedError]:
        return (yield from step.run("flaky", flaky(), retry=policy))

    wf = Workflow.make(Order, run)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await rt.run_until_idle()
        assert attempts == [1]
        assert (await h.get_run(rid)).status == "sleeping"
        assert (await snapshot(rt, f"workflow:w:{rid}")).alarm_at == T0 + timedelta(seconds=10)
        await rt.advance("9 seconds")
        assert attempts == [1]
        await rt.advance("1 second")
        assert attempts == [1, 2]
        assert (await snapshot(rt, f"workflow:w:{rid}")).alarm_at == T0 + timedelta(seconds=30)
        await rt.advance("20 seconds")
        run_ = await h.get_run(rid)
        assert (run_.status, run_.output, run_.attempt) == ("completed", "ok", 3)
        (record,) = await h.steps(rid)
        assert (record.status, record.attempts, record.output) == ("completed", 3, "ok")
        fails = of_type(rt.events, StepFailed)
        assert [(f.attempt, f.will_retry, f.error) for f in fails] == [
            (1, True, "Boom: code=1"),
            (2, True, "Boom: code=2"),
        ]


async def test_exhausted_retries_fail_the_step_with_retry_exhausted(
    kind: str, tmp_path: Path
) -> None:
    @Effect.gen
    def run(step: Step, order: Order) -> Gen[None, RetryExhaustedError]:
        yield from step.run(
            "never", Effect.fail(Boom(code=9)), retry=Retry(2, delay="1 s", jitter=False)
        )

    wf = Workflow.make(Order, run)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await rt.advance("5 seconds")
        run_ = await h.get_run(rid)
        assert run_.status == "failed"
        assert run_.error == "RetryExhaustedError: gave up after 2 attempts: Boom: code=9"
        (record,) = await h.steps(rid)
        assert (record.status, record.attempts) == ("failed", 2)


async def test_a_caught_step_failure_lets_the_run_go_on(kind: str, tmp_path: Path) -> None:
    calls = Calls()

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[str, Exception]:
        fallback = step.run("risky", Effect.fail(Boom(code=1))).catch_tag(Boom)(
            lambda e: Effect.succeed(f"fallback {e.code}")
        )
        value = yield from fallback
        yield from step.run("after", calls.effect("after", 1))
        return str(value)

    wf = Workflow.make(Order, run)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await rt.run_until_idle()
        run_ = await h.get_run(rid)
        assert (run_.status, run_.output) == ("completed", "fallback 1")
        assert [(s.name, s.status) for s in await h.steps(rid)] == [
            ("risky", "failed"),
            ("after", "completed"),
        ]


async def test_a_step_timeout_fails_the_attempt(kind: str, tmp_path: Path) -> None:
    @Effect.gen
    def run(step: Step, order: Order) -> Gen[str, StepTimeoutError]:
        return (yield from step.run("slow", Effect.sleep("10 s").map(lambda _: "x"), timeout="1 s"))

    wf = Workflow.make(Order, run)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        worker = asyncio.ensure_future(rt.run_until_idle())  # the step waits on the clock
        while rt.clock.next_wakeup() != T0 + timedelta(seconds=1):  # the timeout's timer
            await asyncio.sleep(0)
        rt.clock.advance(timedelta(seconds=1))
        await worker
        run_ = await h.get_run(rid)
        assert (run_.status, run_.error) == (
            "failed",
            "StepTimeoutError: step 'slow' timed out after 1000 ms",
        )


async def test_sleep_until_an_instant(kind: str, tmp_path: Path) -> None:
    calls = Calls()
    wake = T0 + timedelta(days=1, hours=3)

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[None, Exception]:
        yield from step.sleep_until("tomorrow", wake)
        yield from step.run("then", calls.effect("then", 1))

    wf = Workflow.make(Order, run)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await rt.run_until_idle()
        assert (await snapshot(rt, f"workflow:w:{rid}")).alarm_at == wake
        await rt.advance("1 day")
        assert calls.log == []
        await rt.advance("3 hours")
        assert calls.log == ["then"]
        assert (await h.get_run(rid)).status == "completed"


async def test_nested_steps_are_refused(kind: str, tmp_path: Path) -> None:
    @Effect.gen
    def run(step: Step, order: Order) -> Gen[int, Exception]:
        inner = step.run("inner", Effect.succeed(1))
        return (yield from step.run("outer", inner))

    wf = Workflow.make(Order, run)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await rt.run_until_idle()
        error = (await h.get_run(rid)).error or ""
        assert error.startswith("RuntimeError: step 'inner' while step 'outer' is running")
