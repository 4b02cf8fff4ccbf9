"""`TestRuntime` with alarm handlers that wait on the `TestClock`.

A Continuous ``execute``, a Task ``execute`` or a workflow step may ``Effect.sleep`` or use
``.timeout``: ``advance`` drives time like Effect-TS's ``TestClock`` — it fires what is due,
waits until every running handler has finished or is blocked on the clock, then moves the
clock to the next alarm or sleeper, in time order. ``run_until_idle`` never moves the clock
and says so instead of hanging. Every test is bounded by ``asyncio.wait_for`` so a
regression fails instead of hanging. Memory and SQLite storage.
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Awaitable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import TypeVar

import msgspec
import pytest

from durable_effect import (
    Continuous,
    ContinuousContext,
    Effect,
    Gen,
    StepTimeoutError,
    TimeoutException,
    ValidationError,
)
from durable_effect._clock import current_clock
from durable_effect._events import Event
from durable_effect.jobs._continuous import ContinuousDefinition
from durable_effect.jobs._task import Task, TaskDefinition
from durable_effect.jobs._task_context import TaskContext, TaskEventContext
from durable_effect.storage import MemoryStorage, Storage
from durable_effect.testing import TestRuntime
from durable_effect.workflow import Step, Workflow
from tests.runtime._support import CounterJob, ref, schedule

T = TypeVar("T")
T0 = datetime(2026, 1, 1, tzinfo=UTC)
BOUND = 10.0  # real seconds: a hang fails the test instead

pytestmark = pytest.mark.parametrize("kind", ["memory", "sqlite"])


def secs(n: float) -> datetime:
    return T0 + timedelta(seconds=n)


def url(kind: str, tmp_path: Path) -> str:
    return "memory://" if kind == "memory" else f"sqlite:///{tmp_path}/sleepers.db"


def shared(kind: str, tmp_path: Path) -> Storage | str:
    """A store two runtimes can open one after the other."""
    return MemoryStorage() if kind == "memory" else f"sqlite:///{tmp_path}/shared.db"


async def bounded(aw: Awaitable[T]) -> T:
    return await asyncio.wait_for(aw, BOUND)


def clock_now() -> datetime:
    """The runtime clock's instant, as the running handler sees it."""
    clock = current_clock()
    assert clock is not None
    return clock.now()


def stamp(when: datetime) -> str:
    return when.strftime("%H:%M:%S")


class Log(msgspec.Struct):
    """Continuous state: how long each run sleeps, and what the runs wrote."""

    sleep: int = 10
    entries: list[str] = msgspec.field(default_factory=list)


def sleepy_job(
    seen: list[tuple[str, str, datetime, datetime]] | None = None,
) -> ContinuousDefinition[Log]:
    """Every minute (first tick a minute after start): sleep ``state.sleep`` seconds on the
    clock, then append the wake-up instant to the state."""

    @Effect.gen
    def execute(ctx: ContinuousContext[Log]) -> Gen[None, ValidationError]:
        state = yield from ctx.state
        if seen is not None:
            seen.append(("start", ctx.id, ctx.scheduled_at, clock_now()))
        yield from Effect.sleep(timedelta(seconds=state.sleep))
        if seen is not None:
            seen.append(("woke", ctx.id, ctx.scheduled_at, clock_now()))
        yield from ctx.update_state(lambda s: Log(s.sleep, [*s.entries, stamp(clock_now())]))

    return Continuous.make(Log, Continuous.every("1 min"), execute, start_immediately=False)


def commits(rt: TestRuntime, event_type: str = "job.executed") -> list[tuple[str, datetime]]:
    """(instance id, clock) for each ``event_type`` delivered from now on."""
    out: list[tuple[str, datetime]] = []

    def record(event: Event) -> None:
        out.append((str(getattr(event, "instance_id", "")), rt.clock.now()))

    rt.jobs.on(event_type, record)
    return out


# -- advance ---------------------------------------------------------------------------------


async def test_a_continuous_execute_that_sleeps_commits_after_its_sleep(
    kind: str, tmp_path: Path
) -> None:
    seen: list[tuple[str, str, datetime, datetime]] = []
    job = sleepy_job(seen)
    async with TestRuntime({"job": job}, storage=url(kind, tmp_path)) as rt:
        done = commits(rt)
        await rt.client.continuous(job).start(id="a", input=Log())

        fired = await bounded(rt.advance("90 s"))

        assert fired == 1
        assert rt.clock.now() == secs(90)
        assert seen == [("start", "a", secs(60), secs(60)), ("woke", "a", secs(60), secs(70))]
        assert done == [("continuous:job:a", secs(70))]  # committed with the clock at 70 s
        state = (await rt.client.continuous(job).get_state("a")).state
        assert state == Log(10, ["00:01:10"])
        (executed,) = rt.tracker.of_type("job.executed")
        assert executed.timestamp == secs(70)


async def test_instances_sleeping_different_amounts_commit_in_time_order(
    kind: str, tmp_path: Path
) -> None:
    seen: list[tuple[str, str, datetime, datetime]] = []
    job = sleepy_job(seen)
    async with TestRuntime({"job": job}, storage=url(kind, tmp_path)) as rt:
        done = commits(rt)
        handle = rt.client.continuous(job)
        for id_, sleep in (("a", 30), ("b", 5), ("c", 15), ("d", 0)):
            await handle.start(id=id_, input=Log(sleep=sleep))

        assert await bounded(rt.advance("100 s")) == 4

        assert done == [
            ("continuous:job:d", secs(60)),
            ("continuous:job:b", secs(65)),
            ("continuous:job:c", secs(75)),
            ("continuous:job:a", secs(90)),
        ]
        woke = [(id_, now) for phase, id_, _, now in seen if phase == "woke"]
        assert woke == [("d", secs(60)), ("b", secs(65)), ("c", secs(75)), ("a", secs(90))]
        assert all(now == secs(60) for phase, _, _, now in seen if phase == "start")
        assert (await handle.get_state("c")).state == Log(15, ["00:01:15"])


async def test_other_alarms_fire_on_time_while_a_handler_sleeps(kind: str, tmp_path: Path) -> None:
    """The sleeping handler's alarm stays due (and leased) meanwhile: later alarms of other
    instances must still fire at their instant, not when the sleeper wakes."""
    job = sleepy_job()
    counter = CounterJob(every=timedelta(seconds=10), until=4)
    async with TestRuntime({"job": job, "tick": counter}, storage=url(kind, tmp_path)) as rt:
        done = commits(rt)
        await rt.client.continuous(job).start(id="a", input=Log(sleep=35))
        await schedule(rt.jobs.engine, [ref("t")], secs(65))

        await bounded(rt.advance("2 min"))

        assert [f.now for f in counter.fired] == [secs(65), secs(75), secs(85), secs(95)]
        assert done[0] == ("continuous:job:a", secs(95))
        state = (await rt.client.continuous(job).get_state("a")).state
        assert state is not None
        assert state.entries[0] == "00:01:35"


async def test_a_handler_sleeping_longer_than_its_lease_keeps_it(kind: str, tmp_path: Path) -> None:
    """The runtime renews the leases of sleeping handlers in clock time (as the engine's
    renewal would in real time): the handler commits, once, and is not fired twice."""
    seen: list[tuple[str, str, datetime, datetime]] = []
    job = sleepy_job(seen)
    lease_ttl = timedelta(seconds=30)
    counter = CounterJob()
    defs = {"job": job, "tick": counter}
    async with TestRuntime(defs, storage=url(kind, tmp_path), lease_ttl=lease_ttl) as rt:
        await rt.client.continuous(job).start(id="a", input=Log(sleep=200))
        # An alarm at 120 s makes the runtime claim due alarms long after the lease's TTL.
        await schedule(rt.jobs.engine, [ref("t")], secs(120))

        assert await bounded(rt.advance("5 min")) == 2

        assert [f.now for f in counter.fired] == [secs(120)]
        assert [(phase, now) for phase, _, _, now in seen] == [
            ("start", secs(60)),
            ("woke", secs(260)),
            ("start", secs(260)),  # the catch-up run of the ticks it slept through
        ]
        state = (await rt.client.continuous(job).get_state("a")).state
        assert state == Log(200, ["00:04:20"])


async def test_a_workflow_step_that_sleeps_on_the_clock(kind: str, tmp_path: Path) -> None:
    @Effect.gen
    def run(step: Step, n: int) -> Gen[str, Exception]:
        first = yield from step.run("first", Effect.sync(lambda: stamp(clock_now())))
        napped = yield from step.run("nap", Effect.sleep("10 s").map(lambda _: stamp(clock_now())))
        yield from step.sleep("durable", "1 min")  # a durable sleep after it
        last = yield from step.run("last", Effect.sync(lambda: stamp(clock_now())))
        return f"{first} {napped} {last}"

    wf = Workflow.make(int, run)
    async with TestRuntime({"wf": wf}, storage=url(kind, tmp_path)) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(1)).run_id

        await bounded(rt.advance("5 s"))  # the run is leased, its step asleep
        assert (await h.get_run(rid)).status == "leased"
        await bounded(rt.advance("2 min"))

        got = await h.get_run(rid)
        assert (got.status, got.output) == ("completed", "00:00:00 00:00:10 00:01:10")
        nap = (await h.steps(rid))[1]
        assert (nap.name, nap.started_at, nap.completed_at) == ("nap", T0, secs(10))


async def test_a_step_timeout_fires_under_advance(kind: str, tmp_path: Path) -> None:
    @Effect.gen
    def run(step: Step, n: int) -> Gen[str, StepTimeoutError]:
        return (yield from step.run("slow", Effect.sleep("10 s").map(lambda _: "x"), timeout="1 s"))

    wf = Workflow.make(int, run)
    async with TestRuntime({"wf": wf}, storage=url(kind, tmp_path)) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(1)).run_id
        await bounded(rt.advance("1 min"))
        got = await h.get_run(rid)
        assert (got.status, got.error, got.completed_at) == (
            "failed",
            "StepTimeoutError: step 'slow' timed out after 1000 ms",
            secs(1),
        )
        assert rt.clock.next_wakeup() is None


def timeout_task() -> TaskDefinition[list[str], int]:
    """On event ``n``: execute in 10 s, which sleeps ``n`` s under a 5 s timeout and stores
    what happened, and when."""

    @Effect.gen
    def on_event(event: int, ctx: TaskEventContext[list[str]]) -> Gen[None, ValidationError]:
        yield from ctx.set_state([str(event)])
        yield from ctx.schedule(timedelta(seconds=10))

    def timed_out(e: TimeoutException) -> Effect[str]:
        return Effect.succeed(f"timeout {e.timeout_ms}")

    @Effect.gen
    def execute(ctx: TaskContext[list[str]]) -> Gen[None, ValidationError | TimeoutException]:
        state = yield from ctx.state
        assert state is not None
        slept = Effect.sleep(timedelta(seconds=int(state[0]))).map(lambda _: "slept")
        outcome = yield from slept.timeout("5 s").catch_tag(TimeoutException)(timed_out)
        yield from ctx.set_state([*state, outcome, stamp(clock_now())])

    return Task.make(list[str], int, on_event, execute)


async def test_a_timeout_inside_a_task_execute_fires_under_advance(
    kind: str, tmp_path: Path
) -> None:
    job = timeout_task()
    async with TestRuntime({"job": job}, storage=url(kind, tmp_path)) as rt:
        handle = rt.client.task(job)
        await handle.send(id="slow", event=60)
        await handle.send(id="quick", event=2)

        assert await bounded(rt.advance("1 min")) == 2

        assert (await handle.get_state("slow")).state == ["60", "timeout 5000", "00:00:15"]
        assert (await handle.get_state("quick")).state == ["2", "slept", "00:00:12"]
        assert rt.clock.next_wakeup() is None  # the interrupted 60 s sleep is forgotten


async def test_a_timeout_racing_other_work_waits_for_that_work(kind: str, tmp_path: Path) -> None:
    """Only the timeout's timer waits on the clock while the raced effect works (here: on a
    gate the test opens later, as I/O would finish): the handler is not blocked on the
    clock, so ``advance`` must not move time past the timeout meanwhile."""
    gate = asyncio.Event()
    started = asyncio.Event()

    @Effect.gen
    def execute(ctx: ContinuousContext[Log]) -> Gen[None, ValidationError | TimeoutException]:
        started.set()
        outcome = yield from Effect.promise(gate.wait).map(lambda _: "io done").timeout("5 s")
        yield from ctx.update_state(lambda s: Log(s.sleep, [outcome, stamp(clock_now())]))

    job = Continuous.make(Log, Continuous.every("1 min"), execute, start_immediately=False)
    async with TestRuntime({"job": job}, storage=url(kind, tmp_path)) as rt:
        await rt.client.continuous(job).start(id="a", input=Log())
        advancing = asyncio.ensure_future(rt.advance("90 s"))
        await bounded(started.wait())
        for _ in range(200):  # many loop turns: advance must wait for the handler
            await asyncio.sleep(0)
        assert rt.clock.now() == secs(60)
        assert not advancing.done()
        gate.set()
        assert await bounded(advancing) == 1
        assert (await rt.client.continuous(job).get_state("a")).state == Log(
            10, ["io done", "00:01:00"]
        )


async def test_a_handler_still_sleeping_at_the_target_goes_on_in_the_next_advance(
    kind: str, tmp_path: Path
) -> None:
    job = sleepy_job()
    async with TestRuntime({"job": job}, storage=url(kind, tmp_path)) as rt:
        handle = rt.client.continuous(job)
        await handle.start(id="a", input=Log(sleep=10))

        assert await bounded(rt.advance("65 s")) == 0
        assert rt.clock.now() == secs(65)
        assert (await handle.get_state("a")).state == Log(10, [])  # reads do not wait

        assert await bounded(rt.advance("3 s")) == 0
        assert await bounded(rt.advance("2 s")) == 1
        assert rt.clock.now() == secs(70)
        assert (await handle.get_state("a")).state == Log(10, ["00:01:10"])


# -- run_until_idle ----------------------------------------------------------------------------


async def test_run_until_idle_raises_instead_of_hanging_on_a_sleeping_handler(
    kind: str, tmp_path: Path
) -> None:
    job = sleepy_job()
    async with TestRuntime({"job": job}, storage=url(kind, tmp_path)) as rt:
        handle = rt.client.continuous(job)
        await handle.start(id="a", input=Log(sleep=10))
        rt.clock.set(secs(60))

        with pytest.raises(RuntimeError, match=r"continuous:job:a.*use `await rt\.advance"):
            await bounded(rt.run_until_idle())
        assert rt.clock.now() == secs(60)  # never moved

        assert await bounded(rt.run_until_idle()) == 0  # the pending handler is not its own
        assert await bounded(rt.advance("10 s")) == 1  # the pending handler goes on
        assert (await handle.get_state("a")).state == Log(10, ["00:01:10"])


async def test_run_until_idle_waits_for_a_clock_moved_by_the_test(
    kind: str, tmp_path: Path
) -> None:
    job = sleepy_job()
    async with TestRuntime({"job": job}, storage=url(kind, tmp_path)) as rt:
        await rt.client.continuous(job).start(id="a", input=Log(sleep=10))
        rt.clock.set(secs(60))
        worker = asyncio.ensure_future(rt.run_until_idle())
        while rt.clock.next_wakeup() is None:
            await asyncio.sleep(0)
        rt.clock.set(secs(70))
        assert await bounded(worker) == 1


async def test_worker_run_until_idle_max_alarms(kind: str, tmp_path: Path) -> None:
    """``Worker.run_until_idle`` (the real worker's) is unbounded by default; ``max_alarms``
    turns a job re-arming itself for the current instant into a ``RuntimeError``."""
    forever = CounterJob(every=timedelta(0))
    three = CounterJob(every=timedelta(0), until=3)
    async with TestRuntime({"tick": forever, "three": three}, storage=url(kind, tmp_path)) as rt:
        await schedule(rt.jobs.engine, [ref("b", "three")], T0)
        assert await bounded(rt.jobs.worker().run_until_idle(max_alarms=3)) == 3  # not more

        await schedule(rt.jobs.engine, [ref("a")], T0)
        worker = rt.jobs.worker()
        with pytest.raises(RuntimeError, match="more than 5 alarms fired"):
            await bounded(worker.run_until_idle(max_alarms=5))
        assert len(forever.fired) == 6
        assert worker.fired == 6  # counted, although it raised
        with pytest.raises(ValueError, match="max_alarms"):
            await worker.run_until_idle(max_alarms=-1)


# -- aclose ------------------------------------------------------------------------------------


async def test_aclose_abandons_a_sleeping_handler_cleanly(
    kind: str, tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    """Closing with a handler still asleep gives it up as a crash would: nothing it would
    still do is committed or recorded, no task is left behind, nothing is logged; the alarm
    is due again for the next runtime on the store."""
    store = shared(kind, tmp_path)
    job = sleepy_job()
    caplog.set_level(logging.DEBUG, logger="durable_effect")
    rt = TestRuntime({"job": job}, storage=store)
    async with rt:
        await rt.client.continuous(job).start(id="a", input=Log(sleep=30))
        await bounded(rt.advance("70 s"))
        events = list(rt.events)
    assert [e.type for e in events] == ["job.started"]
    assert rt.events == events
    assert [r for r in caplog.records if r.levelno >= logging.WARNING] == []
    assert asyncio.all_tasks() == {asyncio.current_task()}

    later = TestRuntime({"job": job}, storage=store, start=secs(70))
    async with later:
        snap = (await later.jobs.storage.load(["continuous:job:a"]))["continuous:job:a"]
        assert snap.alarm_at == secs(60)  # still due: the run did not happen
        assert (await later.client.continuous(job).get_state("a")).state == Log(30, [])
        assert await bounded(later.advance("30 s")) == 1
        state = (await later.client.continuous(job).get_state("a")).state
        assert state == Log(30, ["00:01:40"])
