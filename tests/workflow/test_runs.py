"""Workflow runs: trigger, execution, reads, lists, keys, retrigger/cancel/delete, retention.

Every test runs on memory and on SQLite storage, with time moved only by the test.
"""

from __future__ import annotations

import asyncio
import logging
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from durable_effect import (
    ConflictError,
    Effect,
    Gen,
    InstanceNotFoundError,
    InvalidStateError,
    JobNotFoundError,
    RunCancelledError,
    RunFailedError,
    TimeoutException,
    ValidationError,
)
from durable_effect.jobs._task import Task
from durable_effect.testing import TestRuntime
from durable_effect.workflow import (
    LogWritten,
    Progress,
    RunCoalesced,
    RunCompleted,
    RunDeleted,
    RunFailed,
    RunLeased,
    RunProgressed,
    RunTriggered,
    Step,
    StepCancelled,
    StepCompleted,
    StepFailed,
    StepStarted,
    TriggerRequest,
    Workflow,
    WorkflowDefinition,
)
from tests.workflow._support import (
    STORAGES,
    T0,
    Boom,
    Calls,
    Order,
    Receipt,
    of_type,
    runtime,
    snapshot,
    storage_url,
    types_of,
)

pytestmark = pytest.mark.parametrize("kind", STORAGES)


def three_steps(calls: Calls) -> WorkflowDefinition[Order, Receipt]:
    """fetch → price → charge, returning a Receipt."""

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[Receipt, Exception]:
        fetched = yield from step.run("fetch", calls.effect("fetch", {"id": order.order_id}))
        price = yield from step.run("price", calls.effect("price", 250 * order.qty))
        yield from step.run("charge", calls.effect("charge", True))
        assert isinstance(fetched, dict)
        assert isinstance(price, int)
        return Receipt(order_id=str(fetched["id"]), total=price)

    return Workflow.make(Order, run, output_schema=Receipt)


def sleepy(calls: Calls, nap: str = "1 hour") -> WorkflowDefinition[Order, str]:
    """one step, a durable sleep, another step."""

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[str, Exception]:
        yield from step.run("before", calls.effect("before", 1))
        yield from step.sleep("nap", nap)
        yield from step.run("after", calls.effect("after", 2))
        return order.order_id

    return Workflow.make(Order, run)


# -- the happy path ---------------------------------------------------------------------------


async def test_a_triggered_run_is_pending_then_runs_its_steps_in_order(
    kind: str, tmp_path: Path
) -> None:
    calls = Calls()
    wf = three_steps(calls)
    async with runtime(kind, tmp_path, checkout=wf) as rt:
        h = rt.client.workflow(wf)
        result = await h.trigger(Order(order_id="o-1", qty=2), labels={"org": "acme"})
        assert result.disposition == "created"
        run = await h.get_run(result.run_id)
        assert (run.status, run.input, run.output, run.attempt) == (
            "pending",
            Order(order_id="o-1", qty=2),
            None,
            0,
        )
        assert run.labels == {"org": "acme"}
        assert run.created_at == T0
        snap = await snapshot(rt, f"workflow:checkout:{result.run_id}")
        assert snap.alarm_at == T0  # due now: a worker picks it up
        assert calls.log == []  # nothing ran yet

        await rt.run_until_idle()
        run = await h.get_run(result.run_id)
        assert run.status == "completed"
        assert run.output == Receipt(order_id="o-1", total=500)
        assert (run.started_at, run.completed_at, run.attempt) == (T0, T0, 1)
        assert calls.log == ["fetch", "price", "charge"]
        steps = await h.steps(result.run_id)
        assert [(s.name, s.index, s.status, s.output) for s in steps] == [
            ("fetch", 0, "completed", {"id": "o-1"}),
            ("price", 1, "completed", 500),
            ("charge", 2, "completed", True),
        ]
        assert all(s.started_at == T0 and s.completed_at == T0 for s in steps)
        assert (await snapshot(rt, f"workflow:checkout:{result.run_id}")).alarm_at is None


async def test_events_of_a_run_and_their_payloads(kind: str, tmp_path: Path) -> None:
    calls = Calls()
    wf = three_steps(calls)
    async with runtime(kind, tmp_path, checkout=wf) as rt:
        h = rt.client.workflow(wf)
        result = await h.trigger(Order(order_id="o-1"), labels={"org": "acme"})
        await rt.run_until_idle()
        assert types_of(rt.events, result.run_id) == [
            "run:trigger",
            "run:leased",
            "step:start",
            "step:complete",
            "step:start",
            "step:complete",
            "step:start",
            "step:complete",
            "run:complete",
        ]
        (trigger,) = of_type(rt.events, RunTriggered)
        assert trigger.input == {"order_id": "o-1", "qty": 1}
        assert (trigger.job_name, trigger.labels) == ("checkout", {"org": "acme"})
        assert trigger.instance_id == f"workflow:checkout:{result.run_id}"
        (leased,) = of_type(rt.events, RunLeased)
        assert leased.attempt == 1
        assert leased.lease_owner == rt.jobs.engine.owner
        starts = of_type(rt.events, StepStarted)
        assert [(s.step_name, s.step_index) for s in starts] == [
            ("fetch", 0),
            ("price", 1),
            ("charge", 2),
        ]
        done = of_type(rt.events, StepCompleted)
        assert [d.output for d in done] == [{"id": "o-1"}, 250, True]
        (complete,) = of_type(rt.events, RunCompleted)
        assert complete.output == {"order_id": "o-1", "total": 250}
        wire = complete.to_wire()
        assert wire["type"] == "run:complete"
        assert wire["runId"] == result.run_id
        assert wire["jobName"] == "checkout"
        assert wire["timestamp"] == "2026-01-01T00:00:00.000Z"


async def test_progress_and_logs_are_stored_and_emitted(kind: str, tmp_path: Path) -> None:
    @Effect.gen
    def run(step: Step, order: Order) -> Gen[int, Exception]:
        yield from step.log.info("starting", order=order.order_id)
        for i in range(3):

            @Effect.gen
            def batch(i: int = i) -> Gen[int, Exception]:
                yield from step.log.warn("batch", n=i)
                yield from step.progress(i + 1, 3, f"batch {i}")
                return i

            yield from step.run(f"batch-{i}", batch())
        yield from step.sleep("nap", "1 minute")  # a re-execution replays what is above
        yield from step.log.error("done")
        return 3

    wf = Workflow.make(Order, run)
    async with runtime(kind, tmp_path, imp=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o-9"))).run_id
        await rt.run_until_idle()
        run_ = await h.get_run(rid)
        assert run_.status == "sleeping"
        assert run_.progress == Progress(current=3, total=3, message="batch 2")
        await rt.advance("1 minute")
        assert (await h.get_run(rid)).status == "completed"
        progress = of_type(rt.events, RunProgressed)
        assert [p.progress.current for p in progress] == [1, 2, 3]  # not repeated on replay
        assert progress[0].to_wire()["progress"] == {
            "current": 1,
            "total": 3,
            "message": "batch 0",
        }
        logs = of_type(rt.events, LogWritten)
        assert [(entry.level, entry.message, entry.step_name, entry.data) for entry in logs] == [
            ("info", "starting", None, {"order": "o-9"}),
            ("warn", "batch", "batch-0", {"n": 0}),
            ("warn", "batch", "batch-1", {"n": 1}),
            ("warn", "batch", "batch-2", {"n": 2}),
            ("error", "done", None, {}),
        ]
        snap = await snapshot(rt, f"workflow:imp:{rid}")
        assert sorted(k for k in snap.records if k.startswith("log:")) == [
            f"log:{i:08d}" for i in range(5)
        ]


# -- bad input --------------------------------------------------------------------------------


async def test_invalid_input_fails_with_validation_error_and_writes_nothing(
    kind: str, tmp_path: Path
) -> None:
    wf = three_steps(Calls())
    async with runtime(kind, tmp_path, checkout=wf) as rt:
        h = rt.client.workflow(wf)
        bad: Any = {"order_id": 5}
        with pytest.raises(ValidationError) as info:
            await h.trigger(bad)
        assert info.value.path == "$.order_id"
        for options in (
            {"labels": {"org": 1}},
            {"idempotency_key": ""},
            {"concurrency_key": "x" * 513},
            {"coalesce": "always"},
        ):
            with pytest.raises(ValidationError):
                await h.trigger(Order(order_id="o"), **options)
        with pytest.raises(ValidationError):
            await h.batch_trigger([Order(order_id="ok"), bad])
        assert await rt.jobs.storage.list_instances("") == []
        assert rt.events == []
        assert await rt.jobs.storage.next_alarm_at() is None


async def test_unknown_or_wrong_type_workflow_fails_with_job_not_found(
    kind: str, tmp_path: Path
) -> None:
    task = Task.make(
        int, int, lambda event, ctx: Effect.succeed(None), lambda ctx: Effect.succeed(None)
    )
    wf = three_steps(Calls())
    async with runtime(kind, tmp_path, checkout=wf, aTask=task) as rt:
        for name in ("nope", "aTask"):
            with pytest.raises(JobNotFoundError):
                await rt.client.workflow(name).trigger(Order(order_id="o"))
            with pytest.raises(JobNotFoundError):
                await rt.client.workflow(name).get_run("r")
        unregistered = three_steps(Calls())
        with pytest.raises(JobNotFoundError):
            await rt.client.workflow(unregistered).list_runs()


async def test_unknown_runs_and_bad_run_ids(kind: str, tmp_path: Path) -> None:
    wf = three_steps(Calls())
    async with runtime(kind, tmp_path, checkout=wf) as rt:
        h = rt.client.workflow(wf)
        for op in (h.get_run, h.steps, h.cancel, h.delete_run, h.retrigger, h.wait):
            with pytest.raises(InstanceNotFoundError) as info:
                await op("no-such-run")
            assert info.value.instance_id == "workflow:checkout:no-such-run"
            with pytest.raises(InstanceNotFoundError):
                await op("x" * 510)  # a valid id, too long to name any run
            bad_ids: list[Any] = ["", "x" * 513, "a\x00b", 7]
            for bad in bad_ids:
                with pytest.raises(ValidationError):
                    await op(bad)
        assert await rt.jobs.storage.list_instances("") == []


# -- lists and labels -------------------------------------------------------------------------


async def test_list_runs_newest_first_with_paging_status_and_labels(
    kind: str, tmp_path: Path
) -> None:
    calls = Calls()
    wf = sleepy(calls)
    async with runtime(kind, tmp_path, nap=wf) as rt:
        h = rt.client.workflow(wf)
        ids = []
        for i in range(5):
            labels = {"org": "a" if i % 2 == 0 else "b", "tier": "gold" if i < 2 else "free"}
            ids.append((await h.trigger(Order(order_id=f"o{i}"), labels=labels)).run_id)
            await rt.advance("1 second")
        assert [r.id for r in await h.list_runs()] == ids[::-1]
        assert [r.id for r in await h.list_runs(limit=2)] == [ids[4], ids[3]]
        assert [r.id for r in await h.list_runs(limit=2, offset=2)] == [ids[2], ids[1]]
        assert [r.id for r in await h.list_runs(offset=4)] == [ids[0]]
        assert await h.list_runs(limit=0) == []
        assert [r.id for r in await h.list_runs(labels={"org": "a"})] == [ids[4], ids[2], ids[0]]
        both = await h.list_runs(labels={"org": "a", "tier": "gold"})
        assert [r.id for r in both] == [ids[0]]
        assert await h.list_runs(labels={"org": "zzz"}) == []
        # run i sleeps until 01:00:0i; at 01:00:01.5 (the clock is at 00:00:05) two woke
        await rt.advance(timedelta(seconds=3596.5))
        assert [r.id for r in await h.list_runs(status="sleeping")] == [ids[4], ids[3], ids[2]]
        done = await h.list_runs(status=["completed"])
        assert [r.id for r in done] == [ids[1], ids[0]]
        both_states = await h.list_runs(status=["completed", "sleeping"], labels={"org": "a"})
        assert [r.id for r in both_states] == [ids[4], ids[2], ids[0]]
        bad_options: list[dict[str, Any]] = [
            {"status": "running"},
            {"limit": -1},
            {"offset": -2},
            {"labels": {"a": 1}},
        ]
        for bad in bad_options:
            with pytest.raises(ValidationError):
                await h.list_runs(**bad)


async def test_list_runs_keeps_order_within_one_instant(kind: str, tmp_path: Path) -> None:
    wf = three_steps(Calls())
    async with runtime(kind, tmp_path, checkout=wf) as rt:
        h = rt.client.workflow(wf)
        ids = [(await h.trigger(Order(order_id=f"o{i}"))).run_id for i in range(12)]
        assert [r.id for r in await h.list_runs(limit=100)] == ids[::-1]


# -- idempotency and concurrency keys ----------------------------------------------------------


async def test_idempotency_key_returns_the_same_run(kind: str, tmp_path: Path) -> None:
    calls = Calls()
    wf = three_steps(calls)
    other = three_steps(calls)
    async with runtime(kind, tmp_path, checkout=wf, other=other) as rt:
        h = rt.client.workflow(wf)
        first = await h.trigger(Order(order_id="o-1"), idempotency_key="import-2024-01-01")
        again = await h.trigger(Order(order_id="different"), idempotency_key="import-2024-01-01")
        assert again.run_id == first.run_id
        assert again.disposition == "idempotent"
        elsewhere = await rt.client.workflow(other).trigger(
            Order(order_id="o"), idempotency_key="import-2024-01-01"
        )
        assert elsewhere.disposition == "created"  # keys are per workflow
        await rt.run_until_idle()
        later = await h.trigger(Order(order_id="o-1"), idempotency_key="import-2024-01-01")
        assert later == first.__class__(run_id=first.run_id, disposition="idempotent")
        assert len(await h.list_runs()) == 1
        assert calls.count("fetch") == 2  # one run of each workflow
        # a very long key works too (its instance id is hashed)
        long_key = "k" * 512
        a = await h.trigger(Order(order_id="x"), idempotency_key=long_key)
        b = await h.trigger(Order(order_id="x"), idempotency_key=long_key)
        assert a.run_id == b.run_id
        assert b.disposition == "idempotent"


async def test_concurrency_key_allows_one_pending_run(kind: str, tmp_path: Path) -> None:
    calls = Calls()
    wf = sleepy(calls)
    async with runtime(kind, tmp_path, nap=wf) as rt:
        h = rt.client.workflow(wf)
        first = await h.trigger(Order(order_id="a"), concurrency_key="csv")
        with pytest.raises(ConflictError) as info:
            await h.trigger(Order(order_id="b"), concurrency_key="csv")
        assert info.value.key == "csv"
        assert first.run_id in info.value.message
        assert len(await h.list_runs()) == 1  # the conflicting trigger wrote nothing
        joined = await h.trigger(Order(order_id="c"), concurrency_key="csv", coalesce="skip")
        assert (joined.run_id, joined.disposition) == (first.run_id, "coalesced")
        (coalesced,) = of_type(rt.events, RunCoalesced)
        assert (coalesced.run_id, coalesced.concurrency_key) == (first.run_id, "csv")
        other_key = await h.trigger(Order(order_id="d"), concurrency_key="json")
        assert other_key.disposition == "created"

        await rt.run_until_idle()  # both start; the csv run holds its slot while sleeping
        assert (await h.get_run(first.run_id)).status == "sleeping"
        second = await h.trigger(Order(order_id="e"), concurrency_key="csv")
        assert second.disposition == "created"
        await rt.run_until_idle()
        assert (await h.get_run(second.run_id)).status == "pending"  # the key is full
        assert calls.log.count("before") == 2  # a and d only
        with pytest.raises(ConflictError):
            await h.trigger(Order(order_id="f"), concurrency_key="csv")

        await rt.advance("1 hour")  # the first run ends and wakes the pending one
        assert (await h.get_run(first.run_id)).status == "completed"
        assert (await h.get_run(second.run_id)).status == "sleeping"
        await rt.advance("1 hour")
        assert (await h.get_run(second.run_id)).status == "completed"
        assert (await h.get_run(second.run_id)).concurrency_key == "csv"


async def test_concurrency_limit_counts_leased_runs_per_key(kind: str, tmp_path: Path) -> None:
    calls = Calls()

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[None, Exception]:
        yield from step.run("work", calls.effect(order.order_id, 1))
        yield from step.sleep("wait", "10 minutes")

    wf = Workflow.make(Order, run, concurrency_limit=2)
    async with runtime(kind, tmp_path, two=wf) as rt:
        h = rt.client.workflow(wf)
        ids = []
        for name in "abc":
            ids.append((await h.trigger(Order(order_id=name), concurrency_key="k")).run_id)
            await rt.run_until_idle()
        assert [(await h.get_run(i)).status for i in ids] == ["sleeping", "sleeping", "pending"]
        assert calls.log == ["a", "b"]
        with pytest.raises(ConflictError):  # c is still pending
            await h.trigger(Order(order_id="d"), concurrency_key="k")
        unkeyed = await h.trigger(Order(order_id="free"))
        await rt.run_until_idle()
        assert (await h.get_run(unkeyed.run_id)).status == "sleeping"  # no key, no limit
        await rt.advance("10 minutes")  # a and b end; c takes a slot at once
        assert [(await h.get_run(i)).status for i in ids] == ["completed", "completed", "sleeping"]
        assert calls.log == ["a", "b", "free", "c"]
        await rt.advance("10 minutes")
        assert (await h.get_run(ids[2])).status == "completed"


async def test_batch_trigger_is_one_transaction(kind: str, tmp_path: Path) -> None:
    wf = three_steps(Calls())
    async with runtime(kind, tmp_path, checkout=wf) as rt:
        h = rt.client.workflow(wf)
        results = await h.batch_trigger(
            [
                Order(order_id="plain"),
                TriggerRequest(input=Order(order_id="k1"), idempotency_key="same"),
                TriggerRequest(input=Order(order_id="k2"), idempotency_key="same"),
                TriggerRequest(input=Order(order_id="c1"), concurrency_key="c"),
                TriggerRequest(input=Order(order_id="c2"), concurrency_key="c", coalesce="skip"),
                TriggerRequest(input=Order(order_id="l"), labels={"org": "x"}),
            ]
        )
        assert [r.disposition for r in results] == [
            "created",
            "created",
            "idempotent",
            "created",
            "coalesced",
            "created",
        ]
        assert results[2].run_id == results[1].run_id
        assert results[4].run_id == results[3].run_id
        assert len(await h.list_runs()) == 4
        assert (await h.get_run(results[5].run_id)).labels == {"org": "x"}
        # one conflicting item: nothing of the batch is written
        with pytest.raises(ConflictError):
            await h.batch_trigger(
                [
                    Order(order_id="new"),
                    TriggerRequest(input=Order(order_id="x"), concurrency_key="z"),
                    TriggerRequest(input=Order(order_id="y"), concurrency_key="z"),
                ]
            )
        assert len(await h.list_runs()) == 4
        assert await h.batch_trigger([]) == []
        await rt.run_until_idle()
        assert {r.status for r in await h.list_runs()} == {"completed"}


# -- retrigger / cancel / delete -------------------------------------------------------------


async def test_retrigger_needs_a_finished_run(kind: str, tmp_path: Path) -> None:
    calls = Calls()
    wf = sleepy(calls)
    async with runtime(kind, tmp_path, nap=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"), labels={"a": "b"}, concurrency_key="k")).run_id
        with pytest.raises(InvalidStateError) as info:
            await h.retrigger(rid)  # pending
        assert (info.value.actual, info.value.operation) == ("pending", "retrigger")
        await rt.run_until_idle()
        with pytest.raises(InvalidStateError):
            await h.retrigger(rid)  # sleeping
        await rt.advance("1 hour")
        again = await h.retrigger(rid)
        assert again.disposition == "created"
        assert again.run_id != rid
        new = await h.get_run(again.run_id)
        assert (new.status, new.input, new.labels, new.concurrency_key) == (
            "pending",
            Order(order_id="o"),
            {"a": "b"},
            "k",
        )
        with pytest.raises(ConflictError):
            await h.retrigger(rid)  # the new run is pending on the same key


async def test_cancel_a_pending_run(kind: str, tmp_path: Path) -> None:
    calls = Calls()
    wf = three_steps(calls)
    async with runtime(kind, tmp_path, checkout=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await h.cancel(rid)
        run = await h.get_run(rid)
        assert (run.status, run.completed_at) == ("cancelled", T0)
        await rt.advance("1 hour")
        assert calls.log == []
        assert (await h.get_run(rid)).status == "cancelled"
        assert types_of(rt.events, rid) == ["run:trigger", "run:cancel"]
        with pytest.raises(InvalidStateError) as info:
            await h.cancel(rid)
        assert (info.value.actual, info.value.operation) == ("cancelled", "cancel")


async def test_cancel_a_sleeping_run(kind: str, tmp_path: Path) -> None:
    calls = Calls()
    wf = sleepy(calls)
    async with runtime(kind, tmp_path, nap=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await rt.run_until_idle()
        await h.cancel(rid)
        assert (await h.get_run(rid)).status == "cancelled"
        (cancel,) = of_type(rt.events, StepCancelled)
        assert cancel.step_name == "nap"
        await rt.advance("2 hours")
        assert calls.log == ["before"]
        assert (await snapshot(rt, f"workflow:nap:{rid}")).alarm_at is None


async def test_cancel_delete_and_retrigger_of_finished_runs(kind: str, tmp_path: Path) -> None:
    wf = three_steps(Calls())
    async with runtime(kind, tmp_path, checkout=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"), idempotency_key="key")).run_id
        with pytest.raises(InvalidStateError) as info:
            await h.delete_run(rid)
        assert (info.value.actual, info.value.operation) == ("pending", "delete_run")
        await rt.run_until_idle()
        with pytest.raises(InvalidStateError):
            await h.cancel(rid)
        await h.delete_run(rid)
        with pytest.raises(InstanceNotFoundError):
            await h.get_run(rid)
        (deleted,) = of_type(rt.events, RunDeleted)
        assert deleted.run_id == rid
        assert await rt.jobs.storage.list_instances("") == []  # the idempotency mark too
        fresh = await h.trigger(Order(order_id="o"), idempotency_key="key")
        assert fresh.disposition == "created"
        assert fresh.run_id != rid
        with pytest.raises(InstanceNotFoundError):
            await h.delete_run(rid)


# -- waiting ----------------------------------------------------------------------------------


async def test_wait_times_out_on_the_runtime_clock(kind: str, tmp_path: Path) -> None:
    wf = sleepy(Calls())
    async with runtime(kind, tmp_path, nap=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await rt.run_until_idle()
        waiting = asyncio.ensure_future(h.wait(rid, timeout="5 minutes"))
        await asyncio.sleep(0)
        await rt.advance("4 minutes")
        assert not waiting.done()
        await rt.advance("1 minute")
        with pytest.raises(TimeoutException) as info:
            await waiting
        assert info.value.timeout_ms == 300_000
        # the run goes on; a later wait sees it finish while time moves
        waiting = asyncio.ensure_future(h.wait(rid))
        await rt.advance("1 hour")
        run = await waiting
        assert run.status == "completed"
        assert run.output == "o"


async def test_trigger_and_wait_reports_the_outcome(kind: str, tmp_path: Path) -> None:
    @Effect.gen
    def run(step: Step, order: Order) -> Gen[int, Boom]:
        if order.order_id == "fail":
            yield from step.run("boom", Effect.fail(Boom(code=7)))
        if order.order_id == "cancel":
            yield from step.sleep("long", "1 day")
        return order.qty

    wf = Workflow.make(Order, run)
    async with TestRuntime({"w": wf}, storage=storage_url(kind, tmp_path)) as rt:
        h = rt.client.workflow(wf)
        worker = rt.jobs.worker()
        task = asyncio.ensure_future(worker.run())
        try:
            assert await h.trigger_and_wait(Order(order_id="ok", qty=4)) == 4
            # Boom is not declared (no error_schema): the run's error text only
            with pytest.raises(RunFailedError) as info:
                await h.trigger_and_wait(Order(order_id="fail"))
            assert info.value.error == "Boom: code=7"
            waiting = asyncio.ensure_future(h.trigger_and_wait(Order(order_id="cancel")))
            while not (runs := await h.list_runs(status="sleeping")):
                await rt.jobs.storage.wait_for_change(0.05)
            await h.cancel(runs[0].id)
            with pytest.raises(RunCancelledError):
                await waiting
        finally:
            await worker.stop()
            await task


# -- failures ---------------------------------------------------------------------------------


async def test_a_failing_step_fails_the_run_with_its_error(kind: str, tmp_path: Path) -> None:
    calls = Calls()

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[None, Boom]:
        yield from step.run("ok", calls.effect("ok", 1))
        yield from step.run("bad", Effect.fail(Boom(code=3)))
        yield from step.run("never", calls.effect("never", 1))

    wf = Workflow.make(Order, run)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await rt.run_until_idle()
        run_ = await h.get_run(rid)
        assert (run_.status, run_.error, run_.output) == ("failed", "Boom: code=3", None)
        steps = await h.steps(rid)
        assert [(s.name, s.status, s.error) for s in steps] == [
            ("ok", "completed", None),
            ("bad", "failed", "Boom: code=3"),
        ]
        (failed,) = of_type(rt.events, StepFailed)
        assert (failed.step_name, failed.error, failed.will_retry) == ("bad", "Boom: code=3", False)
        (run_fail,) = of_type(rt.events, RunFailed)
        assert (run_fail.error, run_fail.failed_step_name) == ("Boom: code=3", "bad")
        assert calls.log == ["ok"]
        assert (await snapshot(rt, f"workflow:w:{rid}")).alarm_at is None


async def test_a_defect_fails_the_run(kind: str, tmp_path: Path) -> None:
    @Effect.gen
    def run(step: Step, order: Order) -> Gen[None, Exception]:
        yield from step.run("divide", Effect.sync(lambda: 1 // (order.qty - 1)))

    wf = Workflow.make(Order, run)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o", qty=1))).run_id
        await rt.run_until_idle()
        run_ = await h.get_run(rid)
        assert (run_.status, run_.error) == (
            "failed",
            "ZeroDivisionError: integer division or modulo by zero",
        )


async def test_an_output_that_does_not_fit_its_schema_fails_the_run(
    kind: str, tmp_path: Path
) -> None:
    def run(step: Step, order: Order) -> Effect[Receipt, Exception]:
        bad: Any = {"order_id": order.order_id}
        return Effect.succeed(bad)

    wf = Workflow.make(Order, run, output_schema=Receipt)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await rt.run_until_idle()
        run_ = await h.get_run(rid)
        assert run_.status == "failed"
        assert run_.error is not None
        assert run_.error.startswith("ValidationError: Receipt")


# -- retention --------------------------------------------------------------------------------


async def test_finished_runs_are_purged_after_retain(kind: str, tmp_path: Path) -> None:
    wf = Workflow.make(Order, three_steps(Calls()).run, output_schema=Receipt, retain="1 hour")
    async with runtime(kind, tmp_path, r=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"), idempotency_key="once")).run_id
        await rt.run_until_idle()
        # No alarm per finished run: the workflow's one retention sweep is due at its purge.
        assert (await snapshot(rt, f"workflow:r:{rid}")).alarm_at is None
        assert (await snapshot(rt, "jobmeta:r:workflow")).alarm_at == T0.replace(hour=1)
        await rt.advance("59 minutes")
        assert (await h.get_run(rid)).status == "completed"
        again = await h.trigger(Order(order_id="o"), idempotency_key="once")
        assert again == again.__class__(run_id=rid, disposition="idempotent")
        await rt.advance("1 minute")
        with pytest.raises(InstanceNotFoundError):
            await h.get_run(rid)
        # Only the sweep is left (the run, its idempotency mark and its entries are gone).
        assert await rt.jobs.storage.list_instances("") == ["jobmeta:r:workflow"]
        assert (await snapshot(rt, "jobmeta:r:workflow")).alarm_at == T0.replace(hour=2)
        fresh = await h.trigger(Order(order_id="o"), idempotency_key="once")
        assert fresh.disposition == "created"


# -- live events and logging ------------------------------------------------------------------


async def test_events_are_delivered_at_each_checkpoint_not_at_the_end(
    kind: str, tmp_path: Path
) -> None:
    progressed = asyncio.Event()
    completed_a = asyncio.Event()

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[str, Exception]:
        yield from step.run("a", Effect.succeed(1))
        yield from step.progress(1, 2, "half way")
        # this step can only end if the events above were already delivered
        yield from step.run(
            "wait",
            Effect.promise(progressed.wait).flat_map(lambda _: Effect.promise(completed_a.wait)),
        )
        return "done"

    wf = Workflow.make(Order, run)
    async with runtime(kind, tmp_path, w=wf) as rt:
        rt.jobs.on("run:progress", lambda _e: progressed.set())
        rt.jobs.on(
            "step:complete",
            lambda e: completed_a.set() if getattr(e, "step_name", None) == "a" else None,
        )
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await asyncio.wait_for(rt.run_until_idle(), timeout=30)
        assert (await h.get_run(rid)).output == "done"
        assert types_of(rt.events, rid).count("run:progress") == 1


async def test_log_records_carry_the_run_and_step(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    @Effect.gen
    def work() -> Gen[int, Exception]:
        yield from Effect.log_info("inside the step", n=1)
        return 1

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[None, Exception]:
        yield from step.run("work", work())
        yield from step.log.warn("after the step", k="v")

    wf = Workflow.make(Order, run, logging=True)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        with caplog.at_level(logging.DEBUG, logger="durable_effect"):
            rid = (await h.trigger(Order(order_id="o"))).run_id
            await rt.run_until_idle()
        inside = next(r for r in caplog.records if r.getMessage() == "inside the step")
        assert (inside.__dict__["run_id"], inside.__dict__["step"]) == (rid, "work")
        assert inside.__dict__["job_type"] == "workflow"
        assert inside.__dict__["instance_id"] == f"workflow:w:{rid}"
        after = next(r for r in caplog.records if r.getMessage() == "after the step")
        assert after.levelno == logging.WARNING
        assert after.__dict__["run_id"] == rid
        assert "step" not in after.__dict__
        assert after.__dict__["fields"] == {"k": "v"}
