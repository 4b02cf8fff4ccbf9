"""Workflow definitions and the step API refuse programmer errors at once."""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import Any, ClassVar, Literal

import attrs
import pytest

from durable_effect import Effect, Gen, TaggedError
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


@attrs.frozen(kw_only=True, eq=False)
class Declined(TaggedError):
    tag: ClassVar[Literal["Declined"]] = "Declined"
    reason: str


def test_make_checks_the_error_schema_events_and_deadline() -> None:
    class Plain(TaggedError):  # not an attrs class: its fields cannot be stored
        tag = "Plain"

    @attrs.frozen(kw_only=True, eq=False)
    class Twin(TaggedError):
        tag: ClassVar[Literal["Declined"]] = "Declined"

    @attrs.frozen(kw_only=True, eq=False)
    class Opaque(TaggedError):
        tag: ClassVar[Literal["Opaque"]] = "Opaque"
        cause: object

    bad_errors: list[tuple[Any, str]] = [
        (int, "is not an @attrs.frozen TaggedError subclass"),
        (Plain, "is not an @attrs.frozen TaggedError subclass"),
        (Declined | None, "is not an @attrs.frozen TaggedError subclass"),
        (Declined | Twin, "share the tag 'Declined'"),
    ]
    for bad, message in bad_errors:
        with pytest.raises(TypeError, match=f"error_schema: .*{message}"):
            Workflow.make(Order, _run, error_schema=bad)
    assert Workflow.make(Order, _run, error_schema=Opaque).errors.by_tag["Opaque"] is Opaque
    no_schema: Any = object()
    with pytest.raises(TypeError, match="event_schema"):
        Workflow.make(Order, _run, event_schema=no_schema)
    bad_timeouts: list[Any] = ["soon", 0, "-1 s", timedelta(0)]
    for timeout in bad_timeouts:
        with pytest.raises(ValueError, match="run_timeout"):
            Workflow.make(Order, _run, run_timeout=timeout)
    wf = Workflow.make(Order, _run, run_timeout="1 hour", error_schema=Declined)
    assert wf.run_timeout == timedelta(hours=1)
    assert wf.errors.by_tag["Declined"] is Declined


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
