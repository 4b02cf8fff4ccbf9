"""Workflow definitions and the step API refuse programmer errors at once."""

from __future__ import annotations

from datetime import datetime
from typing import Any

import pytest

from durable_effect import Effect, Gen
from durable_effect.testing import TestRuntime
from durable_effect.workflow import Step, Workflow
from tests.workflow._support import Order


def _run(step: Step, order: Order) -> Effect[None]:
    return Effect.succeed(None)


def test_make_checks_its_arguments() -> None:
    bad: Any = object()
    with pytest.raises(TypeError, match="input_schema"):
        Workflow.make(bad, _run)
    with pytest.raises(TypeError, match="output_schema"):
        Workflow.make(Order, _run, output_schema=bad)
    with pytest.raises(TypeError, match="run"):
        Workflow.make(Order, bad)
    limits: list[Any] = [0, -1, 1.5, True]
    for limit in limits:
        with pytest.raises(ValueError, match="concurrency_limit"):
            Workflow.make(Order, _run, concurrency_limit=limit)
    with pytest.raises(ValueError, match="retain"):
        Workflow.make(Order, _run, retain="soon")
    with pytest.raises(TypeError, match="logging"):
        Workflow.make(Order, _run, logging=bad)
    wf = Workflow.make(Order, _run, retain="2 days", concurrency_limit=3)
    assert (wf.job_type, wf.concurrency_limit, wf.retain.days if wf.retain else None) == (
        "workflow",
        3,
        2,
    )


async def test_step_api_misuse_fails_the_run_with_a_clear_error() -> None:
    cases: dict[str, Any] = {
        "not-an-effect": lambda step: step.run("x", 42),
        "empty-name": lambda step: step.run("", Effect.succeed(1)),
        "bad-retry": lambda step: step.run("x", Effect.succeed(1), retry=3),
        "naive-datetime": lambda step: step.sleep_until("x", datetime(2026, 1, 1)),
        "bad-progress": lambda step: step.progress("1"),
        "bad-duration": lambda step: step.sleep("x", "forever"),
    }

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[None, Exception]:
        yield from Effect.suspend(lambda: cases[order.order_id](step))

    wf = Workflow.make(Order, run)
    async with TestRuntime({"w": wf}) as rt:
        h = rt.client.workflow(wf)
        ids = {name: (await h.trigger(Order(order_id=name))).run_id for name in cases}
        await rt.run_until_idle()
        errors = {name: (await h.get_run(rid)).error or "" for name, rid in ids.items()}
    assert errors["not-an-effect"].startswith("TypeError: step.run('x', ...) needs an Effect")
    assert errors["empty-name"] == "ValueError: step names must not be empty"
    assert errors["bad-retry"].startswith("TypeError: step.run: retry must be a Retry")
    assert errors["naive-datetime"].startswith("TypeError: step.sleep_until needs an aware")
    assert errors["bad-progress"].startswith("TypeError: step.progress: current must be an int")
    assert errors["bad-duration"].startswith("ValueError: invalid duration 'forever'")


async def test_run_must_return_an_effect() -> None:
    def run(step: Step, order: Order) -> Any:
        return 42

    wf = Workflow.make(Order, run)
    async with TestRuntime({"w": wf}) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await rt.run_until_idle()
        assert (await h.get_run(rid)).error == (
            "TypeError: a workflow's run must return an Effect, got int"
        )
