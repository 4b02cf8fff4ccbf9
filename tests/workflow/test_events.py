"""Events into a run: ``step.wait_for_event`` and ``handle.send`` (SPEC §10.3, §10.7).

Buffered on the run (events sent before the wait are kept), consumed first in first out in
the wait step's fenced commit (a replay gives the same event, none is taken twice), a
``schema`` wait taking the oldest of its class, ``event_id`` dedupe, validation before
anything is written, the timeout a durable sleep, a send that never waits for a busy worker
and always wakes a waiting run — also when it lands between the worker's look at the inbox
and its suspension. Every test runs on memory, SQLite and PostgreSQL.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from durable_effect import (
    Effect,
    Gen,
    InstanceNotFoundError,
    InvalidStateError,
    NonDeterminismError,
    RunTimeoutError,
    ValidationError,
)
from durable_effect.storage import InstanceSnapshot, InstanceWrite, Lease, open_storage
from durable_effect.testing import TestRuntime
from durable_effect.workflow import (
    EventWait,
    RunEventReceived,
    RunEventSent,
    SendResult,
    Step,
    Workflow,
)
from durable_effect.workflow._records import END_KEY
from tests.workflow._support import (
    STORAGES,
    T0,
    Boom,
    Calls,
    CrashableStorage,
    Order,
    of_type,
    runtime,
    snapshot,
    storage_url,
)
from tests.workflow.test_leases import Gate

pytestmark = pytest.mark.parametrize("kind", STORAGES)


class Approved(msgspec.Struct, tag=True):
    by: str


class Rejected(msgspec.Struct, tag=True):
    reason: str


Decision = Approved | Rejected


def waits(names: Sequence[str], seen: dict[str, object], schema: Any = None) -> Any:
    """A run that waits for one event per name (of class ``schema``), recording what each
    wait gave (a replay gives the same again)."""

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[int, Exception]:
        for name in names:
            got = yield from step.wait_for_event(name, schema)
            assert seen.setdefault(name, got) == got  # the same on every replay
        return len(names)

    return run


async def test_events_sent_before_the_waits_are_kept_and_taken_in_order(
    kind: str, tmp_path: Path
) -> None:
    seen: dict[str, object] = {}
    wf = Workflow.make(Order, waits(["w1", "w2", "w3"], seen), event_schema=Decision)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        # a pending run accepts events; nothing has run yet
        sent = [Approved(by="a"), Rejected(reason="b"), Approved(by="c")]
        for event in sent:
            assert await h.send(rid, event) == SendResult(
                run_id=rid, accepted=True, duplicate=False
            )
        assert [e.event for e in (await h.pending_events(rid)).events] == sent
        await rt.run_until_idle()
        assert list(seen.values()) == sent
        run = await h.get_run(rid)
        assert (run.status, run.output, run.attempt) == ("completed", 3, 1)
        assert [s.output for s in await h.steps(rid)] == sent  # as the event_schema's classes
        assert (await h.pending_events(rid)).events == []
        received = of_type(rt.events, RunEventReceived)
        assert [(e.step_name, e.seq, e.event) for e in received] == [
            ("w1", 0, {"type": "Approved", "by": "a"}),
            ("w2", 1, {"type": "Rejected", "reason": "b"}),
            ("w3", 2, {"type": "Approved", "by": "c"}),
        ]


async def test_a_waiting_run_sleeps_with_no_alarm_and_a_send_wakes_it(
    kind: str, tmp_path: Path
) -> None:
    seen: dict[str, object] = {}
    wf = Workflow.make(Order, waits(["decision"], seen), event_schema=Decision)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await rt.run_until_idle()
        run = await h.get_run(rid)
        assert (run.status, run.current_step) == ("sleeping", "decision")
        assert (await snapshot(rt, f"workflow:w:{rid}")).alarm_at is None  # no worker, no alarm
        assert [r.id for r in await h.list_runs(status="sleeping")] == [rid]
        pending = await h.pending_events(rid)
        assert pending.waiting == EventWait(step="decision", event=None, since=T0, until=None)
        await rt.advance("30 days")
        assert seen == {}  # nothing wakes it but an event
        await h.send(rid, Approved(by="ann"))
        assert (await snapshot(rt, f"workflow:w:{rid}")).alarm_at == T0 + timedelta(days=30)
        await rt.run_until_idle()
        assert seen == {"decision": Approved(by="ann")}
        assert (await h.get_run(rid)).status == "completed"
        assert (await h.pending_events(rid)).waiting is None


async def test_a_schema_wait_takes_the_oldest_of_its_class_and_leaves_the_others(
    kind: str, tmp_path: Path
) -> None:
    seen: dict[str, object] = {}
    wf = Workflow.make(Order, waits(["first", "second"], seen, Approved), event_schema=Decision)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await h.send(rid, Rejected(reason="r1"))
        await h.send(rid, Approved(by="a1"))
        await rt.run_until_idle()
        assert seen == {"first": Approved(by="a1")}
        pending = await h.pending_events(rid)
        assert pending.waiting is not None
        assert pending.waiting.event == "Approved"
        assert [(e.seq, e.event) for e in pending.events] == [(0, Rejected(reason="r1"))]
        await h.send(rid, Rejected(reason="r2"))  # wakes it; not for this wait
        await rt.run_until_idle()
        assert (await h.get_run(rid)).status == "sleeping"
        await h.send(rid, Approved(by="a2"))
        await rt.run_until_idle()
        assert seen == {"first": Approved(by="a1"), "second": Approved(by="a2")}
        run = await h.get_run(rid)
        assert run.status == "completed"
        left = (await h.pending_events(rid)).events  # still readable after the run ended
        assert [e.event for e in left] == [Rejected(reason="r1"), Rejected(reason="r2")]


async def test_a_replay_gives_the_same_event_and_takes_no_other(kind: str, tmp_path: Path) -> None:
    seen: list[object] = []

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[object, Exception]:
        first = yield from step.wait_for_event("first")
        seen.append(first)
        yield from step.sleep("nap", "1 hour")
        second = yield from step.wait_for_event("second")
        seen.append(second)
        return [first, second]

    wf = Workflow.make(Order, run)  # no event_schema: any JSON value
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await h.send(rid, {"n": 1})
        await h.send(rid, [2])
        await rt.run_until_idle()
        await rt.advance("1 hour")  # replays "first": the same event, and "second" takes [2]
        assert seen == [{"n": 1}, {"n": 1}, [2]]
        assert (await h.get_run(rid)).output == [{"n": 1}, [2]]


async def test_a_renamed_wait_fails_the_run_in_flight(kind: str, tmp_path: Path) -> None:
    """A wait takes its position in the replay check like any step: code that now reaches a
    wait of another name where the run recorded one fails it (nothing is consumed)."""
    code = {"wait": "approval"}

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[object, Exception]:
        got = yield from step.wait_for_event(code["wait"])
        yield from step.sleep("nap", "1 hour")
        return got

    wf = Workflow.make(Order, run)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await h.send(rid, 1)
        await rt.run_until_idle()
        assert (await h.get_run(rid)).status == "sleeping"
        code["wait"] = "decision"  # a deploy renamed the wait
        await h.send(rid, 2)
        await rt.advance("1 hour")
        with pytest.raises(NonDeterminismError) as info:
            await h.wait_output(rid)
        assert info.value == NonDeterminismError(
            run_id=rid, step=0, expected="approval", found="decision"
        )
        assert [e.event for e in (await h.pending_events(rid)).events] == [2]


async def test_a_fork_replays_the_events_taken_and_waits_for_its_own(
    kind: str, tmp_path: Path
) -> None:
    """A fork copies the waits that took events (they replay them); the events sent to the
    new run are its own, from seq 0: none is taken for having the number of a copied one.
    The original's events no wait took are not carried over (nor to a retriggered run)."""

    @Effect.gen
    def three(step: Step, order: Order) -> Gen[list[object], Exception]:
        out = []
        for name in ("a", "b", "c"):
            out.append((yield from step.wait_for_event(name)))
        return out

    more = Workflow.make(Order, three, event_schema=Decision, output_schema=list[Decision])
    async with runtime(kind, tmp_path, w=more) as rt:
        h = rt.client.workflow(more)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        for event in (Approved(by="a0"), Approved(by="b1"), Approved(by="c2"), Approved(by="x")):
            await h.send(rid, event)
        await rt.run_until_idle()
        assert await h.wait_output(rid) == [Approved(by="a0"), Approved(by="b1"), Approved(by="c2")]
        assert [e.event for e in (await h.pending_events(rid)).events] == [Approved(by="x")]
        fork = (await h.fork(rid, from_step="c")).run_id
        await rt.run_until_idle()
        assert [s.name for s in await h.steps(fork)] == ["a", "b"]  # copied; c waits
        pending = await h.pending_events(fork)
        assert pending.waiting is not None
        assert pending.waiting.step == "c"
        assert pending.events == []
        await h.send(fork, Rejected(reason="fork's own 0"))  # seq 0 of the fork's inbox
        await rt.run_until_idle()
        assert await h.wait_output(fork) == [
            Approved(by="a0"),
            Approved(by="b1"),
            Rejected(reason="fork's own 0"),
        ]
        assert (await h.pending_events(fork)).events == []
        again = (await h.retrigger(rid)).run_id
        await rt.run_until_idle()
        assert (await h.pending_events(again)).events == []  # a new run: nothing queued
        assert await h.steps(again) == []  # it waits at "a"
        assert [e.event for e in (await h.pending_events(rid)).events] == [Approved(by="x")]


async def test_a_resumed_run_takes_new_events_not_those_left_at_its_end(
    kind: str, tmp_path: Path
) -> None:
    """Resume continues the same run: a send is accepted again (also while a worker holds
    the run), and its waits take the events sent after the resume — those still queued when
    it failed are never delivered."""
    fails = {"check": 1}
    gate = Gate(Calls(), "slow")

    def check() -> Effect[str, Boom]:
        if fails["check"] > 0:
            fails["check"] -= 1
            return Effect.fail(Boom(code=1))
        return Effect.succeed("ok")

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[list[object], Boom]:
        first = yield from step.wait_for_event("first")
        yield from step.run("check", Effect.suspend(check))
        yield from step.run("slow", gate.effect())
        second = yield from step.wait_for_event("second")
        return [first, second]

    wf = Workflow.make(Order, run)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await h.send(rid, "one")
        await h.send(rid, "left over")
        await rt.run_until_idle()
        assert (await h.get_run(rid)).status == "failed"
        assert [e.event for e in (await h.pending_events(rid)).events] == ["left over"]
        with pytest.raises(InvalidStateError):
            await h.send(rid, "refused")
        assert (await h.resume(rid)).status == "pending"
        assert (await h.pending_events(rid)).events == []  # never to be delivered
        working = asyncio.ensure_future(rt.run_until_idle())
        await gate.reached.wait()  # a worker holds the resumed run: the inbox-only send
        sent = await h.send(rid, "after")  # not refused by the end record of its failure
        assert sent == SendResult(run_id=rid, accepted=True, duplicate=False)
        gate.open()
        await working
        assert await h.wait_output(rid) == ["one", "after"]


async def test_a_timeout_is_a_durable_sleep_and_gives_none(kind: str, tmp_path: Path) -> None:
    seen: dict[str, object] = {}

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[object, Exception]:
        seen["approval"] = yield from step.wait_for_event("approval", Approved, timeout="1 hour")
        seen["again"] = yield from step.wait_for_event("again", Approved, timeout="1 hour")
        return None

    wf = Workflow.make(Order, run, event_schema=Decision)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await rt.run_until_idle()
        assert (await snapshot(rt, f"workflow:w:{rid}")).alarm_at == T0 + timedelta(hours=1)
        await rt.advance("1 hour")
        assert seen == {"approval": None}  # none came in time
        await rt.advance("30 minutes")
        await h.send(rid, Approved(by="late"))
        await rt.run_until_idle()
        assert seen == {"approval": None, "again": Approved(by="late")}
        steps = await h.steps(rid)
        assert [(s.name, s.output) for s in steps] == [
            ("approval", None),
            ("again", Approved(by="late")),
        ]


async def test_a_deadline_caps_a_wait(kind: str, tmp_path: Path) -> None:
    wf = Workflow.make(Order, waits(["forever"], {}), run_timeout="2 hours")
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await rt.run_until_idle()
        assert (await snapshot(rt, f"workflow:w:{rid}")).alarm_at == T0 + timedelta(hours=2)
        await rt.advance("2 hours")
        with pytest.raises(RunTimeoutError):
            await h.wait_output(rid)


async def test_a_repeated_event_id_is_a_duplicate_and_delivered_once(
    kind: str, tmp_path: Path
) -> None:
    seen: dict[str, object] = {}
    wf = Workflow.make(Order, waits(["a", "b"], seen), event_schema=Decision)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        first = await h.send(rid, Approved(by="x"), event_id="evt-1")
        again = await h.send(rid, Approved(by="x"), event_id="evt-1")
        assert (first.accepted, first.duplicate) == (True, False)
        assert again == SendResult(run_id=rid, accepted=False, duplicate=True)
        assert [e.sent_event_id for e in of_type(rt.events, RunEventSent)] == ["evt-1"]
        other = await rt.client.workflow(wf).trigger(Order(order_id="p"))
        same_id_elsewhere = await h.send(other.run_id, Rejected(reason="r"), event_id="evt-1")
        assert same_id_elsewhere.accepted  # ids are per run
        await rt.run_until_idle()
        steps = [await h.steps(r) for r in (rid, other.run_id)]
        assert [[s.output for s in st] for st in steps] == [
            [Approved(by="x")],
            [Rejected(reason="r")],
        ]
        pending = await h.pending_events(rid)
        assert pending.waiting is not None
        assert pending.waiting.step == "b"
        assert pending.events == []


async def test_bad_sends_write_nothing(kind: str, tmp_path: Path) -> None:
    wf = Workflow.make(Order, waits(["a"], {}), event_schema=Approved)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        wrong: Any = Rejected(reason="no")
        with pytest.raises(ValidationError) as info:
            await h.send(rid, wrong)
        assert info.value.schema == "Approved"
        with pytest.raises(ValidationError) as info:
            await h.send(rid, {"by": 3})  # builtins are validated too
        assert info.value.path == "$.by"
        for bad_id in ("", "x" * 513, "a\x00b"):
            with pytest.raises(ValidationError) as info:
                await h.send(rid, Approved(by="a"), event_id=bad_id)
            assert info.value.path == "event_id"
        with pytest.raises(ValidationError) as info:
            await h.send(rid, Approved(by="x" * 300_000))
        assert info.value.path == "event"
        assert not (await snapshot(rt, f"wfinbox:w:{rid}")).exists  # nothing was written
        assert of_type(rt.events, RunEventSent) == []
        with pytest.raises(InstanceNotFoundError):
            await h.send("no-such-run", Approved(by="a"))
        assert await h.send(rid, {"type": "Approved", "by": "json"}) == SendResult(
            run_id=rid, accepted=True, duplicate=False
        )
        await rt.run_until_idle()
        with pytest.raises(InvalidStateError) as refused:
            await h.send(rid, Approved(by="late"))
        assert (refused.value.actual, refused.value.operation) == ("completed", "send")


def _nested(levels: int) -> object:
    value: object = 1
    for _ in range(levels):
        value = [value]
    return value


async def test_hostile_events_are_refused_before_anything_is_written(
    kind: str, tmp_path: Path
) -> None:
    """Events too deep (for every reader of the events they are emitted in), of no JSON
    shape, or beyond the size bound are a ``ValidationError`` naming where; nothing is
    written, no lease is left behind (a good send right after goes through)."""
    wf = Workflow.make(Order, waits(["a"], {}))  # no event_schema: any JSON value
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        hostile: list[tuple[object, str, str]] = [
            (_nested(65), "event", "is nested 65 levels deep, more than 64"),
            (_nested(500), "event", "is nested 500 levels deep, more than 64"),
            (_nested(100_000), "$", "nested too deeply"),
            (object(), "$", "cannot encode object"),
            ({(1, 2): 3}, "$", "cannot encode dict"),
            ("\ud800", "$", "cannot encode str"),
            ("x" * (256 * 1024), "event", "bytes of JSON, more than 262144"),
        ]
        for event, path, message in hostile:
            with pytest.raises(ValidationError) as info:
                await h.send(rid, event)
            assert (info.value.path, message in info.value.message) == (path, True)
        assert not (await snapshot(rt, f"wfinbox:w:{rid}")).exists
        assert of_type(rt.events, RunEventSent) == []
        assert (await h.send(rid, _nested(64))).accepted  # the bound itself is fine
        await rt.run_until_idle()
        assert (await h.get_run(rid)).status == "completed"


async def test_a_schema_outside_the_event_schema_fails_the_run(kind: str, tmp_path: Path) -> None:
    wf = Workflow.make(Order, waits(["a"], {}, Rejected), event_schema=Approved)
    untyped = Workflow.make(Order, waits(["a"], {}, Approved))
    async with runtime(kind, tmp_path, w=wf, u=untyped) as rt:
        rids = [
            (await rt.client.workflow(d).trigger(Order(order_id="o"))).run_id for d in (wf, untyped)
        ]
        await rt.run_until_idle()
        errors = [
            (await rt.client.workflow(d).get_run(r)).error
            for d, r in zip((wf, untyped), rids, strict=True)
        ]
        assert errors == [
            "TypeError: wait_for_event('a'): Rejected is not one of the workflow's "
            "event_schema classes (Approved)",
            "TypeError: wait_for_event('a'): Approved is not one of the workflow's "
            "event_schema classes (none)",
        ]


async def test_a_send_does_not_wait_for_a_busy_worker(kind: str, tmp_path: Path) -> None:
    calls = Calls()
    gate = Gate(calls, "slow")
    seen: list[object] = []

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[object, Exception]:
        yield from step.run("slow", gate.effect())
        got = yield from step.wait_for_event("then")
        seen.append(got)
        return got

    wf = Workflow.make(Order, run)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        working = asyncio.ensure_future(rt.run_until_idle())
        await gate.reached.wait()  # the worker holds the run, in a step
        result = await asyncio.wait_for(h.send(rid, "go"), timeout=10)
        assert result.accepted
        assert not gate._open.is_set()  # it returned while the step still runs
        gate.open()
        await working
        assert seen == ["go"]  # the worker found it at its wait: no second send
        assert (await h.get_run(rid)).status == "completed"


class LookHook(CrashableStorage):
    """A storage that runs ``hook`` once, right after a load of ``watched`` returns (as if a
    client's call landed between a worker's look at an instance and its next commit)."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.watched: str | None = None
        self.hook: Callable[[], Awaitable[None]] | None = None

    async def load(self, instance_ids: Sequence[str]) -> Mapping[str, InstanceSnapshot]:
        found = await super().load(instance_ids)
        hook = self.hook
        if hook is not None and self.watched in instance_ids:
            self.hook = None
            await hook()
        return found


class CommitHook(CrashableStorage):
    """A storage that runs ``hook`` once, before a commit guarded by ``guard``."""

    def __init__(self, inner: Any) -> None:
        super().__init__(inner)
        self.guard: tuple[str, str] | None = None
        self.hook: Callable[[], Awaitable[None]] | None = None

    async def commit(
        self,
        leases: Sequence[Lease],
        writes: Sequence[InstanceWrite],
        *,
        release: bool = True,
        unless_present: Sequence[tuple[str, str]] = (),
        feed: Sequence[bytes] = (),
    ) -> None:
        hook = self.hook
        if hook is not None and self.guard in unless_present:
            self.hook = None
            await hook()
        await super().commit(
            leases, writes, release=release, unless_present=unless_present, feed=feed
        )


def _open(kind: str, tmp_path: Path) -> Any:
    target = storage_url(kind, tmp_path)
    return open_storage(target) if isinstance(target, str) else target


async def test_a_send_between_the_look_and_the_suspension_is_not_lost(
    kind: str, tmp_path: Path
) -> None:
    seen: dict[str, object] = {}
    wf = Workflow.make(Order, waits(["a"], seen))
    storage = LookHook(_open(kind, tmp_path))
    async with TestRuntime({"w": wf}, storage=storage) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        results: list[SendResult] = []

        async def send_now() -> None:  # the worker holds the run: the inbox-only path
            results.append(await h.send(rid, "between"))

        storage.watched, storage.hook = f"wfinbox:w:{rid}", send_now
        await rt.run_until_idle()
        assert results == [SendResult(run_id=rid, accepted=True, duplicate=False)]
        # the suspension was refused by the event; the run looked again and took it
        assert seen == {"a": "between"}
        assert (await h.get_run(rid)).status == "completed"


async def test_a_send_racing_the_runs_end_is_refused(kind: str, tmp_path: Path) -> None:
    calls = Calls()
    gate = Gate(calls, "last")

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[object, Exception]:
        return (yield from step.run("last", gate.effect()))

    wf = Workflow.make(Order, run)
    storage = CommitHook(_open(kind, tmp_path))
    async with TestRuntime({"w": wf}, storage=storage) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        working = asyncio.ensure_future(rt.run_until_idle())
        await gate.reached.wait()

        async def end_first() -> None:  # the run ends after the send looked at it
            gate.open()
            await working

        storage.guard, storage.hook = (f"workflow:w:{rid}", END_KEY), end_first
        with pytest.raises(InvalidStateError) as info:
            await h.send(rid, "too late")
        assert info.value.actual == "completed"
        assert (await h.pending_events(rid)).events == []
        assert of_type(rt.events, RunEventSent) == []


async def test_cancel_and_delete_a_waiting_run(kind: str, tmp_path: Path) -> None:
    wf = Workflow.make(Order, waits(["a", "b"], {}))
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await h.send(rid, 1)
        await rt.run_until_idle()  # took 1, waits at b
        await h.send(rid, 2)
        await h.cancel(rid)
        await rt.run_until_idle()
        run = await h.get_run(rid)
        assert run.status == "cancelled"
        # the run was woken by 2 before the cancel; either way, nothing more is taken
        with pytest.raises(InvalidStateError):
            await h.send(rid, 3)
        await h.delete_run(rid)
        assert not (await snapshot(rt, f"wfinbox:w:{rid}")).exists
        with pytest.raises(InstanceNotFoundError):
            await h.pending_events(rid)


async def test_retention_purges_the_inbox(kind: str, tmp_path: Path) -> None:
    wf = Workflow.make(Order, waits(["a"], {}), retain="1 hour")
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await h.send(rid, 1)
        await h.send(rid, 2)  # never taken
        await rt.run_until_idle()
        assert [e.event for e in (await h.pending_events(rid)).events] == [2]
        await rt.advance("1 hour")
        assert not (await snapshot(rt, f"wfinbox:w:{rid}")).exists
        assert not (await snapshot(rt, f"workflow:w:{rid}")).exists
