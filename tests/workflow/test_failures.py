"""Typed failures across persistence: a failed run's error reads back as its own class.

``error_schema`` errors come back with the same class and fields, the library's run errors
(``RetryExhaustedError`` — with its ``last_error`` decoded the same way — ``StepTimeoutError``,
``RunCancelledError``) as themselves, anything else (undeclared errors, defects) as
``RunFailedError(run_id, "Tag: message")``. Every test reads the error back from storage:
through ``wait_output`` in the same runtime, and through a second runtime over the same
store that never ran the workflow.
"""

from __future__ import annotations

import asyncio
from pathlib import Path
from typing import Any, ClassVar, Literal

import attrs
import pytest

from durable_effect import (
    Effect,
    Gen,
    RetryExhaustedError,
    RunCancelledError,
    RunFailedError,
    StepTimeoutError,
    TaggedError,
)
from durable_effect._backoff import Retry
from durable_effect.testing import TestRuntime
from durable_effect.workflow import Step, Workflow, WorkflowDefinition
from durable_effect.workflow._records import META
from tests.workflow._support import STORAGES, Boom, Order, plant, shared_storage, snapshot

pytestmark = pytest.mark.parametrize("kind", STORAGES)


@attrs.frozen(kw_only=True, eq=False)
class Declined(TaggedError):
    """A declared error with fields of several kinds."""

    tag: ClassVar[Literal["Declined"]] = "Declined"
    reason: str
    amount: int
    codes: list[str] = attrs.field(factory=list)


@attrs.frozen(kw_only=True, eq=False)
class OutOfStock(TaggedError):
    tag: ClassVar[Literal["OutOfStock"]] = "OutOfStock"
    sku: str


def fail_with(step: Step, order: Order) -> Effect[int, Exception]:
    """Fails the way ``order.order_id`` says."""
    kind = order.order_id
    if kind == "declined":
        return step.run("charge", Effect.fail(Declined(reason="card", amount=5, codes=["51"])))
    if kind == "stock":
        return step.run("reserve", Effect.fail(OutOfStock(sku="A-1")))
    if kind == "boom":
        return step.run("boom", Effect.fail(Boom(code=7)))
    if kind == "defect":  # a declared error *raised* is a defect, not a typed failure

        def explode() -> int:
            raise Declined(reason="raised", amount=1)

        return step.run("explode", Effect.sync(explode))
    if kind == "timeout":
        return step.run("slow", Effect.sleep("1 hour").map(lambda _: 1), timeout="1 minute")
    if kind == "retried":
        declined = Effect.fail(Declined(reason="again", amount=2))
        return step.run("retry", declined, retry=Retry(2, delay="1 second", jitter=False))
    if kind == "retried-undeclared":
        boom = Effect.fail(Boom(code=3))
        return step.run("retry", boom, retry=Retry(2, delay="1 second", jitter=False))
    if kind == "sleep":
        return step.sleep("nap", "1 day").map(lambda _: 0)
    return Effect.succeed(order.qty)


DECLARED = Workflow.make(Order, fail_with, error_schema=Declined | OutOfStock)
UNDECLARED = Workflow.make(Order, fail_with)


async def _failed(
    kind: str, tmp_path: Path, order_id: str, *, advance: str | None = None
) -> tuple[dict[str, BaseException], str]:
    """The error ``wait_output`` gives for a run of ``order_id`` of both workflows: read
    back by the runtime that ran it, and by a second one over the same store."""
    tmp_path.mkdir(parents=True, exist_ok=True)
    target = shared_storage(kind, tmp_path)
    defs: dict[str, WorkflowDefinition[Order, int, Any, Any]] = {
        "declared": DECLARED,
        "undeclared": UNDECLARED,
    }
    got: dict[str, BaseException] = {}
    rids: dict[str, str] = {}
    async with TestRuntime(defs, storage=target) as rt:
        for name, wf in defs.items():
            rids[name] = (await rt.client.workflow(wf).trigger(Order(order_id=order_id))).run_id
        await rt.advance("0 s" if advance is None else advance)
        for name, wf in defs.items():
            with pytest.raises(TaggedError) as info:
                await rt.client.workflow(wf).wait_output(rids[name])
            got[name] = info.value
        # A runtime that never ran these runs reads the same errors from storage.
        async with TestRuntime(defs, storage=target) as other:
            for name, wf in defs.items():
                with pytest.raises(TaggedError) as info:
                    await other.client.workflow(wf).wait_output(rids[name])
                assert info.value == got[name]
                assert type(info.value) is type(got[name])
    return got, rids["declared"]


async def test_a_declared_error_reads_back_as_its_own_class_and_fields(
    kind: str, tmp_path: Path
) -> None:
    got, _ = await _failed(kind, tmp_path, "declined")
    assert got["declared"] == Declined(reason="card", amount=5, codes=["51"])
    assert type(got["declared"]) is Declined
    undeclared = got["undeclared"]
    assert isinstance(undeclared, RunFailedError)
    assert undeclared.error == "Declined: reason='card', amount=5, codes=['51']"
    got, _ = await _failed(kind, tmp_path / "stock", "stock")
    assert got["declared"] == OutOfStock(sku="A-1")  # the other member of the union


async def test_undeclared_errors_and_defects_are_run_failed_errors(
    kind: str, tmp_path: Path
) -> None:
    got, rid = await _failed(kind, tmp_path, "boom")
    assert got["declared"] == RunFailedError(run_id=rid, error="Boom: code=7")
    got, rid = await _failed(kind, tmp_path / "defect", "defect")
    # a declared class raised (a defect) never reads back as a typed failure
    assert got["declared"] == RunFailedError(
        run_id=rid, error="Declined: reason='raised', amount=1, codes=[]"
    )


async def test_library_errors_read_back_as_themselves(kind: str, tmp_path: Path) -> None:
    got, _ = await _failed(kind, tmp_path, "timeout", advance="1 minute")
    assert got["declared"] == StepTimeoutError(step="slow", timeout_ms=60_000)
    assert got["undeclared"] == got["declared"]  # declared or not


async def test_retry_exhausted_decodes_its_last_error_by_the_same_rule(
    kind: str, tmp_path: Path
) -> None:
    got, _ = await _failed(kind, tmp_path, "retried", advance="1 second")
    declared = got["declared"]
    assert isinstance(declared, RetryExhaustedError)
    assert declared.attempts == 2
    assert declared.last_error == Declined(reason="again", amount=2)
    assert type(declared.last_error) is Declined
    undeclared = got["undeclared"]
    assert isinstance(undeclared, RetryExhaustedError)
    assert undeclared.last_error == "Declined: reason='again', amount=2, codes=[]"
    got, _ = await _failed(kind, tmp_path / "u", "retried-undeclared", advance="1 second")
    assert got["declared"] == RetryExhaustedError(attempts=2, last_error="Boom: code=3")


async def test_the_run_sees_the_last_error_as_it_reads_back(kind: str, tmp_path: Path) -> None:
    seen: list[object] = []

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[int, Exception]:
        failing = Effect.fail(Declined(reason="r", amount=1))
        retried = step.run("pay", failing, retry=Retry(1, jitter=False))

        def caught(e: RetryExhaustedError) -> Effect[int]:
            seen.append(e.last_error)
            return Effect.succeed(0)

        return (yield from retried.catch_tag(RetryExhaustedError)(caught))

    declared = Workflow.make(Order, run, error_schema=Declined)
    undeclared = Workflow.make(Order, run)
    async with TestRuntime({"d": declared, "u": undeclared}, storage="memory://") as rt:
        await rt.client.workflow(declared).trigger(Order(order_id="o"))
        await rt.run_until_idle()
        await rt.client.workflow(undeclared).trigger(Order(order_id="o"))
        await rt.run_until_idle()
    assert seen == [Declined(reason="r", amount=1), "Declined: reason='r', amount=1, codes=[]"]


async def test_cancelled_runs_and_wait(kind: str, tmp_path: Path) -> None:
    async with TestRuntime({"w": DECLARED}, storage=shared_storage(kind, tmp_path)) as rt:
        h = rt.client.workflow(DECLARED)
        rid = (await h.trigger(Order(order_id="sleep"))).run_id
        await rt.run_until_idle()
        await h.cancel(rid)
        with pytest.raises(RunCancelledError) as info:
            await h.wait_output(rid)
        assert info.value == RunCancelledError(run_id=rid)
        ok = (await h.trigger(Order(order_id="ok", qty=3))).run_id
        failed = (await h.trigger(Order(order_id="declined"))).run_id
        await rt.run_until_idle()
        assert await h.wait_output(ok) == 3
        run = await h.wait(failed)  # wait still gives the finished Run
        assert run.status == "failed"
        assert run.error == "Declined: reason='card', amount=5, codes=['51']"


async def test_trigger_and_wait_fails_with_the_declared_error(kind: str, tmp_path: Path) -> None:
    async with TestRuntime({"w": DECLARED}, storage=shared_storage(kind, tmp_path)) as rt:
        h = rt.client.workflow(DECLARED)
        worker = rt.jobs.worker()
        task = asyncio.ensure_future(worker.run())
        try:
            with pytest.raises(Declined) as info:
                await h.trigger_and_wait(Order(order_id="declined"))
            assert info.value.codes == ["51"]
            # catch_tag selects it, as for any typed failure
            recovered = h.trigger_and_wait(Order(order_id="declined")).catch_tag(Declined)(
                lambda e: Effect.succeed(-e.amount)
            )
            assert await recovered == -5
        finally:
            await worker.stop()
            await task


async def test_a_stored_error_that_no_longer_fits_its_class_is_a_run_failed_error(
    kind: str, tmp_path: Path
) -> None:
    async with TestRuntime({"w": DECLARED}, storage=shared_storage(kind, tmp_path)) as rt:
        h = rt.client.workflow(DECLARED)
        rid = (await h.trigger(Order(order_id="declined"))).run_id
        await rt.run_until_idle()
        iid = f"workflow:w:{rid}"
        meta = META.codec.decode((await snapshot(rt, iid)).records["meta"])
        assert meta.failure is not None
        bent = attrs.evolve(
            meta, failure=attrs.evolve(meta.failure, fields={"reason": 1, "amount": "x"})
        )
        await plant(rt, iid, {"meta": META.codec.encode(bent)})
        with pytest.raises(RunFailedError) as info:
            await h.wait_output(rid)
        assert info.value.error == "Declined: reason='card', amount=5, codes=['51']"
