"""`Engine`: one transaction per handler, leases, fencing, hooks, and alarm firing.

Every test runs on memory and SQLite storage with a ``TestClock`` (nothing sleeps), except
the few marked ``live`` where the engine's own bounded wait passes real time.
"""

from __future__ import annotations

import asyncio
import logging
import time
from collections.abc import AsyncIterator, Awaitable, Callable, Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any, Never, TypeVar

import attrs
import pytest
from returns.result import Failure, Success

from durable_effect import Effect, LeaseLostError, StorageError
from durable_effect._clock import current_clock
from durable_effect._events import Event
from durable_effect._jobs import DurableJobs, create_durable_jobs
from durable_effect._runtime._engine import Engine
from durable_effect._system_clock import SystemClock
from durable_effect.jobs._instance import InstanceRef, InstanceTx
from durable_effect.storage import (
    Acquired,
    InstanceSnapshot,
    InstanceWrite,
    Lease,
    MemoryStorage,
    SqliteStorage,
    Storage,
)
from durable_effect.testing._clock import TestClock
from durable_effect.testing._runtime import RecordingTracker
from tests.runtime._support import (
    T0,
    TTL,
    Boom,
    CounterJob,
    Ping,
    put_int,
    read_int,
    ref,
    schedule,
)

R = TypeVar("R")

A = ref("a")
B = ref("b")


# -- storages that show what the engine was granted -------------------------------------------


class SpyMemory(MemoryStorage):
    """``MemoryStorage`` remembering every grant and announcing every refusal."""

    def __init__(self) -> None:
        super().__init__()
        self.granted: list[Acquired] = []
        self.refused = asyncio.Event()

    async def acquire(
        self, instance_ids: Sequence[str], *, owner: str, now: datetime, ttl: timedelta
    ) -> Acquired | None:
        got = await super().acquire(instance_ids, owner=owner, now=now, ttl=ttl)
        if got is None:
            self.refused.set()
        else:
            self.granted.append(got)
        return got


class SpySqlite(SqliteStorage):
    """``SqliteStorage`` remembering every grant and announcing every refusal."""

    def __init__(self, path: Path) -> None:
        super().__init__(path)
        self.granted: list[Acquired] = []
        self.refused = asyncio.Event()

    async def acquire(
        self, instance_ids: Sequence[str], *, owner: str, now: datetime, ttl: timedelta
    ) -> Acquired | None:
        got = await super().acquire(instance_ids, owner=owner, now=now, ttl=ttl)
        if got is None:
            self.refused.set()
        else:
            self.granted.append(got)
        return got


Spy = SpyMemory | SpySqlite


@attrs.define
class Env:
    jobs: DurableJobs
    storage: Spy
    clock: TestClock
    tracker: RecordingTracker
    job: CounterJob

    @property
    def engine(self) -> Engine:
        return self.jobs.engine

    def lease_of(self, instance_id: str) -> Lease:
        """The engine's latest lease on ``instance_id``."""
        for got in reversed(self.storage.granted):
            for lease in got.leases:
                if lease.instance_id == instance_id and lease.owner == self.engine.owner:
                    return lease
        raise AssertionError(f"no lease on {instance_id} was granted to the engine")


def make_storage(kind: str, tmp_path: Path) -> Spy:
    return SpyMemory() if kind == "memory" else SpySqlite(tmp_path / "engine.db")


@pytest.fixture(params=["memory", "sqlite"])
async def env(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Env]:
    storage = make_storage(str(request.param), tmp_path)
    clock = TestClock(T0)
    tracker = RecordingTracker()
    job = CounterJob()
    jobs = create_durable_jobs(
        {"tick": job}, storage=storage, clock=clock, tracker=tracker, lease_ttl=TTL
    )
    async with jobs:
        yield Env(jobs=jobs, storage=storage, clock=clock, tracker=tracker, job=job)


def run(
    fn: Callable[[Sequence[InstanceTx]], Awaitable[R]],
) -> Callable[[Sequence[InstanceTx]], Effect[R, Never]]:
    """A handler whose body is an async function of the call's transactions."""
    return lambda txs: Effect.promise(lambda: fn(txs))


async def snapshot(storage: Storage, r: InstanceRef) -> InstanceSnapshot:
    return (await storage.load([r.instance_id]))[r.instance_id]


async def is_free(env: Env, *refs: InstanceRef) -> bool:
    """Whether another owner could lease ``refs`` right now (the probe lease is released)."""
    got = await env.storage.acquire(
        [r.instance_id for r in refs], owner="probe", now=env.clock.now(), ttl=TTL
    )
    if got is None:
        return False
    await env.storage.release(got.leases)
    return True


async def take_over(env: Env, r: InstanceRef) -> Acquired:
    """Let the engine's leases expire and lease ``r`` as another worker."""
    env.clock.advance(TTL + timedelta(seconds=1))
    got = await env.storage.acquire([r.instance_id], owner="intruder", now=env.clock.now(), ttl=TTL)
    assert got is not None
    return got


async def preset(env: Env, r: InstanceRef, value: int) -> None:
    async def body(txs: Sequence[InstanceTx]) -> None:
        put_int(txs[0], value)

    assert Effect.run_sync(await env.engine.call([r], run(body))) == Success(None)


def failure_of(outcome: Effect[Any, Any]) -> object:
    result = Effect.run_sync(outcome)
    assert isinstance(result, Failure), result
    return result.failure()


# -- commit only on success -------------------------------------------------------------------


async def test_success_commits_every_write_and_releases_the_lease(env: Env) -> None:
    async def body(txs: Sequence[InstanceTx]) -> str:
        put_int(txs[0], 41)
        txs[0].set_alarm(T0 + timedelta(minutes=5))
        return "done"

    outcome = await env.engine.call([A], run(body))

    assert Effect.run_sync(outcome) == Success("done")
    snap = await snapshot(env.storage, A)
    assert snap.records == {"n": b"41"}
    assert snap.alarm_at == T0 + timedelta(minutes=5)
    assert await is_free(env, A)
    assert not env.engine.locks.busy(A.instance_id)


async def test_typed_failure_writes_nothing_and_releases_the_lease(env: Env) -> None:
    await preset(env, A, 5)

    def handler(txs: Sequence[InstanceTx]) -> Effect[None, Boom]:
        def write() -> None:
            put_int(txs[0], 6)
            txs[0].put("extra", b"x")
            txs[0].set_alarm(T0)

        return Effect.sync(write).flat_map(lambda _: Effect.fail(Boom(code=1)))

    outcome = await env.engine.call([A], handler)

    assert failure_of(outcome) == Boom(code=1)
    snap = await snapshot(env.storage, A)
    assert snap.records == {"n": b"5"}
    assert snap.alarm_at is None
    assert await is_free(env, A)
    assert not env.engine.locks.busy(A.instance_id)


@pytest.mark.parametrize("where", ["in the effect", "building the effect"])
async def test_defect_writes_nothing_reraises_and_releases_the_lease(env: Env, where: str) -> None:
    def handler(txs: Sequence[InstanceTx]) -> Effect[None, Never]:
        put_int(txs[0], 1)
        if where == "building the effect":
            raise RuntimeError("kaput")

        def explode() -> None:
            put_int(txs[0], 2)
            raise RuntimeError("kaput")

        return Effect.sync(explode)

    with pytest.raises(RuntimeError, match="kaput"):
        _ = await env.engine.call([A], handler)

    assert not (await snapshot(env.storage, A)).exists
    assert await is_free(env, A)
    assert not env.engine.locks.busy(A.instance_id)


# -- several instances in one call ------------------------------------------------------------


async def test_multi_instance_call_commits_all_instances_at_once(env: Env) -> None:
    async def body(txs: Sequence[InstanceTx]) -> None:
        for n, tx in enumerate(txs, 1):
            put_int(tx, n)
            tx.set_alarm(T0 + timedelta(minutes=n))

    assert Effect.run_sync(await env.engine.call([A, B], run(body))) == Success(None)

    assert (await snapshot(env.storage, A)).records == {"n": b"1"}
    assert (await snapshot(env.storage, B)).alarm_at == T0 + timedelta(minutes=2)
    assert await is_free(env, A, B)


async def test_multi_instance_call_that_fails_writes_no_instance(env: Env) -> None:
    def handler(txs: Sequence[InstanceTx]) -> Effect[None, Boom]:
        def write() -> None:
            for tx in txs:
                put_int(tx, 9)

        return Effect.sync(write).flat_map(lambda _: Effect.fail(Boom(code=2)))

    assert failure_of(await env.engine.call([A, B], handler)) == Boom(code=2)
    assert not (await snapshot(env.storage, A)).exists
    assert not (await snapshot(env.storage, B)).exists
    assert await is_free(env, A, B)


async def test_multi_instance_call_with_one_lease_lost_writes_no_instance(env: Env) -> None:
    """B is taken over while A's lease is still good: nothing is written, A is released."""
    entered, gate = asyncio.Event(), asyncio.Event()

    async def body(txs: Sequence[InstanceTx]) -> None:
        for tx in txs:
            put_int(tx, 1)
        entered.set()
        await gate.wait()

    task = asyncio.create_task(env.engine.call([A, B], run(body)))
    await entered.wait()
    lease_a = env.lease_of(A.instance_id)
    intruder = await take_over(env, B)
    # A's lease was renewed (as the engine's renewal would have): only B is lost.
    await env.storage.extend(lease_a, now=env.clock.now(), ttl=TTL)
    gate.set()
    error = failure_of(await task)

    assert isinstance(error, StorageError)
    assert isinstance(error.cause, LeaseLostError)
    assert error.cause.instance_id == B.instance_id
    assert not (await snapshot(env.storage, A)).exists
    assert not (await snapshot(env.storage, B)).exists
    # A's lease is given back at once rather than blocking A until it expires.
    assert await is_free(env, A)
    await env.storage.commit(
        intruder.leases, [InstanceWrite(instance_id=B.instance_id, puts={"n": b"7"})]
    )
    assert (await snapshot(env.storage, B)).records == {"n": b"7"}


# -- events -----------------------------------------------------------------------------------


def ping(env: Env, tx: InstanceTx) -> Event:
    return Ping(event_id=f"e-{len(env.tracker.events)}", timestamp=tx.now(), instance_id="x")


async def test_events_are_published_after_a_successful_call(env: Env) -> None:
    heard: list[Event] = []
    env.jobs.on("test.ping", heard.append)

    async def body(txs: Sequence[InstanceTx]) -> None:
        txs[0].emit(ping(env, txs[0]))
        assert heard == []  # delivered after the handler, not during it

    assert Effect.run_sync(await env.engine.call([A], run(body))) == Success(None)

    assert [e.type for e in heard] == ["test.ping"]
    assert env.tracker.of_type("test.ping") == heard
    assert heard[0].timestamp == T0


async def test_events_are_published_for_failed_calls_too(env: Env) -> None:
    heard: list[Event] = []
    env.jobs.on("*", heard.append)

    def failing(txs: Sequence[InstanceTx]) -> Effect[None, Boom]:
        return Effect.sync(lambda: txs[0].emit(ping(env, txs[0]))).flat_map(
            lambda _: Effect.fail(Boom(code=3))
        )

    def defect(txs: Sequence[InstanceTx]) -> Effect[None, Never]:
        def body() -> None:
            txs[0].emit(ping(env, txs[0]))
            raise RuntimeError("defect")

        return Effect.sync(body)

    assert failure_of(await env.engine.call([A], failing)) == Boom(code=3)
    with pytest.raises(RuntimeError):
        _ = await env.engine.call([A], defect)

    assert len(heard) == 2
    assert len(env.tracker.of_type("test.ping")) == 2


async def test_events_are_published_when_the_commit_is_fenced(env: Env) -> None:
    entered, gate = asyncio.Event(), asyncio.Event()

    async def body(txs: Sequence[InstanceTx]) -> None:
        txs[0].emit(ping(env, txs[0]))
        entered.set()
        await gate.wait()

    task = asyncio.create_task(env.engine.call([A], run(body)))
    await entered.wait()
    await take_over(env, A)
    gate.set()
    assert isinstance(failure_of(await task), StorageError)
    assert len(env.tracker.of_type("test.ping")) == 1


# -- clock and logging ------------------------------------------------------------------------


async def test_handler_runs_with_the_runtime_clock_installed(env: Env) -> None:
    seen: list[object] = []
    entered = asyncio.Event()

    def handler(txs: Sequence[InstanceTx]) -> Effect[datetime, Never]:
        return (
            Effect.sync(lambda: seen.append(current_clock()))
            .flat_map(lambda _: Effect.sync(entered.set))
            .flat_map(lambda _: Effect.sleep("5 s"))
            .map(lambda _: txs[0].now())
        )

    task = asyncio.create_task(env.engine.call([A], handler))
    await entered.wait()
    # The handler is asleep on the TestClock: it waits for the test, not for real time.
    assert env.clock.next_wakeup() == T0 + timedelta(seconds=5)
    assert not task.done()
    env.clock.advance(timedelta(seconds=4))
    assert env.clock.next_wakeup() == T0 + timedelta(seconds=5)
    env.clock.advance(timedelta(seconds=1))
    outcome = await task

    assert Effect.run_sync(outcome) == Success(T0 + timedelta(seconds=5))
    assert seen == [env.clock]
    assert current_clock() is None  # installed for the handler only


async def test_handler_logs_with_job_annotations_and_level(
    env: Env, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.DEBUG, logger="durable_effect")

    def handler(txs: Sequence[InstanceTx]) -> Effect[None, Never]:
        return Effect.log_info("hello", k=1).flat_map(lambda _: Effect.log_error("bad"))

    assert (
        Effect.run_sync(await env.engine.call([A], handler, log_level=logging.DEBUG)).unwrap()
        is None
    )
    assert (
        Effect.run_sync(await env.engine.call([B], handler, log_level=logging.ERROR)).unwrap()
        is None
    )

    records = [r for r in caplog.records if r.name == "durable_effect"]
    assert [(r.getMessage(), r.__dict__["instance_id"]) for r in records] == [
        ("hello", A.instance_id),
        ("bad", A.instance_id),
        ("bad", B.instance_id),  # B's INFO record is below its threshold
    ]
    first = records[0].__dict__
    assert (first["job_type"], first["job_name"], first["fields"]) == ("counter", "tick", {"k": 1})


# -- waiting for another owner's lease --------------------------------------------------------


@pytest.fixture
async def quick() -> AsyncIterator[Env]:
    """An engine with a 50 ms lease TTL on memory storage (its lease waits are short)."""
    storage = SpyMemory()
    clock = TestClock(T0)
    tracker = RecordingTracker()
    job = CounterJob()
    jobs = create_durable_jobs(
        {"tick": job},
        storage=storage,
        clock=clock,
        tracker=tracker,
        lease_ttl=timedelta(milliseconds=50),
    )
    async with jobs:
        yield Env(jobs=jobs, storage=storage, clock=clock, tracker=tracker, job=job)


@pytest.mark.live
async def test_lease_held_by_another_owner_makes_call_wait_then_fail(quick: Env) -> None:
    """The TestClock cannot move during the call, so the holder's lease never expires; the
    engine's wait is bounded in real time (max(1.5 x ttl, 1 s)) and the call fails with
    ``StorageError`` without running the handler or writing anything."""
    held = await quick.storage.acquire([A.instance_id], owner="other", now=T0, ttl=TTL)
    assert held is not None
    ran: list[int] = []

    async def body(txs: Sequence[InstanceTx]) -> None:
        ran.append(1)
        put_int(txs[0], 1)

    started = time.perf_counter()
    error = failure_of(await quick.engine.call([A], run(body)))
    elapsed = time.perf_counter() - started

    assert isinstance(error, StorageError)
    assert error.operation == "acquire"
    assert "leased by another worker" in str(error)
    assert 0.9 <= elapsed < 2.5
    assert ran == []
    assert not (await snapshot(quick.storage, A)).exists
    assert not quick.engine.locks.busy(A.instance_id)
    # The holder's lease is untouched: it can still commit.
    await quick.storage.commit(
        held.leases, [InstanceWrite(instance_id=A.instance_id, puts={"n": b"3"})]
    )


@pytest.mark.live
async def test_wait_bound_is_real_time_even_when_the_store_is_busy(quick: Env) -> None:
    """Changes to other instances wake the waiting call; they must not use up its bound."""
    held = await quick.storage.acquire([A.instance_id], owner="other", now=T0, ttl=TTL)
    assert held is not None
    stop = asyncio.Event()

    async def churn() -> None:  # another instance committed over and over (wakes waiters)
        n = 0
        while not stop.is_set():
            got = await quick.storage.acquire([B.instance_id], owner="busy", now=T0, ttl=TTL)
            assert got is not None
            n += 1
            alarm = T0 + timedelta(days=1, seconds=n)
            await quick.storage.commit(
                got.leases, [InstanceWrite(instance_id=B.instance_id, alarm=alarm)]
            )
            await asyncio.sleep(0.001)

    churner = asyncio.create_task(churn())
    try:
        started = time.perf_counter()
        error = failure_of(await quick.engine.call([A], run(lambda txs: asyncio.sleep(0))))
        elapsed = time.perf_counter() - started
    finally:
        stop.set()
        await churner
    assert isinstance(error, StorageError)
    assert elapsed >= 0.9


async def test_waiting_call_proceeds_as_soon_as_the_holder_releases(env: Env) -> None:
    held = await env.storage.acquire([A.instance_id], owner="other", now=T0, ttl=TTL)
    assert held is not None

    async def body(txs: Sequence[InstanceTx]) -> int:
        put_int(txs[0], 1)
        return 1

    env.storage.refused.clear()
    task = asyncio.create_task(env.engine.call([A], run(body)))
    await env.storage.refused.wait()  # the call found A held and is waiting
    assert not task.done()
    await env.storage.release(held.leases)

    outcome = await asyncio.wait_for(task, timeout=5)
    assert Effect.run_sync(outcome) == Success(1)
    assert (await snapshot(env.storage, A)).records == {"n": b"1"}


async def test_expired_lease_of_another_owner_is_taken_over_at_once(env: Env) -> None:
    held = await env.storage.acquire([A.instance_id], owner="dead", now=T0, ttl=TTL)
    assert held is not None
    env.clock.advance(TTL)  # expires_at <= now: free

    await preset(env, A, 4)

    assert (await snapshot(env.storage, A)).records == {"n": b"4"}
    with pytest.raises(LeaseLostError):  # the dead owner is fenced
        await env.storage.commit(
            held.leases, [InstanceWrite(instance_id=A.instance_id, puts={"n": b"0"})]
        )


# -- fencing ----------------------------------------------------------------------------------


async def test_handler_whose_lease_was_taken_over_commits_nothing(env: Env) -> None:
    await preset(env, A, 1)
    entered, gate = asyncio.Event(), asyncio.Event()

    async def body(txs: Sequence[InstanceTx]) -> None:
        put_int(txs[0], read_int(txs[0]) + 1)
        txs[0].set_alarm(T0)
        entered.set()
        await gate.wait()

    task = asyncio.create_task(env.engine.call([A], run(body)))
    await entered.wait()
    intruder = await take_over(env, A)
    gate.set()
    error = failure_of(await task)

    assert isinstance(error, StorageError)
    assert error.operation == "commit"
    assert isinstance(error.cause, LeaseLostError)
    assert error.cause.owner == env.engine.owner
    snap = await snapshot(env.storage, A)
    assert snap.records == {"n": b"1"}
    assert snap.alarm_at is None
    assert not env.engine.locks.busy(A.instance_id)
    # The new holder is unaffected.
    await env.storage.commit(
        intruder.leases, [InstanceWrite(instance_id=A.instance_id, puts={"n": b"10"})]
    )
    assert (await snapshot(env.storage, A)).records == {"n": b"10"}


# -- hooks: checkpoint, checkpoint_with, peek -------------------------------------------------


def hooks_of(tx: InstanceTx) -> Any:
    assert tx.hooks is not None
    return tx.hooks


async def test_checkpoint_commits_now_and_keeps_the_lease(env: Env) -> None:
    observed: dict[str, object] = {}

    def handler(txs: Sequence[InstanceTx]) -> Effect[None, Boom]:
        async def body() -> None:
            tx = txs[0]
            await hooks_of(tx).checkpoint(tx)  # nothing buffered: no-op
            tx.put("step1", b"done")
            tx.set_alarm(T0 + timedelta(hours=1))
            await hooks_of(tx).checkpoint(tx)
            observed["committed"] = (await snapshot(env.storage, A)).records
            observed["alarm"] = (await snapshot(env.storage, A)).alarm_at
            observed["free"] = await is_free(env, A)
            tx.put("step2", b"lost")

        return Effect.promise(body).flat_map(lambda _: Effect.fail(Boom(code=4)))

    assert failure_of(await env.engine.call([A], handler)) == Boom(code=4)

    assert observed == {
        "committed": {"step1": b"done"},
        "alarm": T0 + timedelta(hours=1),
        "free": False,  # the checkpoint kept the lease
    }
    snap = await snapshot(env.storage, A)
    assert snap.records == {"step1": b"done"}  # the checkpoint stays; the later write does not
    assert await is_free(env, A)


async def test_checkpoint_is_fenced(env: Env) -> None:
    entered, gate = asyncio.Event(), asyncio.Event()

    async def body(txs: Sequence[InstanceTx]) -> None:
        entered.set()
        await gate.wait()
        txs[0].put("step", b"x")
        await hooks_of(txs[0]).checkpoint(txs[0])

    task = asyncio.create_task(env.engine.call([A], run(body)))
    await entered.wait()
    await take_over(env, A)
    gate.set()
    with pytest.raises(LeaseLostError):
        _ = await task
    assert not (await snapshot(env.storage, A)).exists


async def test_checkpoint_with_commits_both_instances_and_releases_the_other(env: Env) -> None:
    observed: dict[str, object] = {}

    def mutate(other: InstanceTx) -> str:
        put_int(other, read_int(other) + 100)
        other.set_alarm(T0 + timedelta(minutes=1))
        other.emit(Ping(event_id="from-b", timestamp=other.now(), instance_id=B.instance_id))
        return "mutated"

    async def body(txs: Sequence[InstanceTx]) -> object:
        tx = txs[0]
        tx.put("sent", b"1")
        result = await hooks_of(tx).checkpoint_with(tx, B, mutate)
        observed["a"] = (await snapshot(env.storage, A)).records
        observed["b"] = (await snapshot(env.storage, B)).records
        observed["b free"] = await is_free(env, B)
        observed["a free"] = await is_free(env, A)
        observed["events"] = [e.event_id for e in env.tracker.events]
        return result

    await preset(env, B, 1)
    outcome = await env.engine.call([A], run(body))

    assert Effect.run_sync(outcome) == Success("mutated")
    assert observed == {
        "a": {"sent": b"1"},
        "b": {"n": b"101"},
        "b free": True,
        "a free": False,
        "events": ["from-b"],
    }
    assert (await snapshot(env.storage, B)).alarm_at == T0 + timedelta(minutes=1)


async def test_checkpoint_with_whose_mutate_raises_commits_nothing(env: Env) -> None:
    observed: dict[str, object] = {}

    def mutate(other: InstanceTx) -> None:
        put_int(other, 5)
        raise ValueError("refused")

    def handler(txs: Sequence[InstanceTx]) -> Effect[None, Boom]:
        async def body() -> None:
            tx = txs[0]
            tx.put("sent", b"1")
            with pytest.raises(ValueError, match="refused"):
                await hooks_of(tx).checkpoint_with(tx, B, mutate)
            observed["a"] = (await snapshot(env.storage, A)).exists
            observed["b"] = (await snapshot(env.storage, B)).exists
            observed["b free"] = await is_free(env, B)

        return Effect.promise(body).flat_map(lambda _: Effect.fail(Boom(code=5)))

    assert failure_of(await env.engine.call([A], handler)) == Boom(code=5)
    assert observed == {"a": False, "b": False, "b free": True}
    assert not (await snapshot(env.storage, A)).exists


async def test_checkpoint_with_after_own_lease_lost_writes_neither_instance(env: Env) -> None:
    entered, gate = asyncio.Event(), asyncio.Event()
    observed: dict[str, object] = {}

    async def body(txs: Sequence[InstanceTx]) -> None:
        tx = txs[0]
        entered.set()
        await gate.wait()
        tx.put("sent", b"1")
        with pytest.raises(LeaseLostError):
            await hooks_of(tx).checkpoint_with(tx, B, lambda other: put_int(other, 1))
        observed["b"] = (await snapshot(env.storage, B)).exists
        observed["b free"] = await is_free(env, B)

    task = asyncio.create_task(env.engine.call([A], run(body)))
    await entered.wait()
    await take_over(env, A)
    gate.set()
    assert isinstance(failure_of(await task), StorageError)
    assert observed == {"b": False, "b free": True}
    assert not (await snapshot(env.storage, A)).exists


async def test_checkpoint_with_waits_for_a_running_handler_of_the_other_instance(
    env: Env,
) -> None:
    entered, gate = asyncio.Event(), asyncio.Event()

    async def hold_b(txs: Sequence[InstanceTx]) -> None:
        put_int(txs[0], 1)
        entered.set()
        await gate.wait()

    async def body(txs: Sequence[InstanceTx]) -> None:
        tx = txs[0]
        await hooks_of(tx).checkpoint_with(tx, B, lambda o: put_int(o, read_int(o) + 10))

    b_task = asyncio.create_task(env.engine.call([B], run(hold_b)))
    await entered.wait()
    env.storage.refused.clear()
    a_task = asyncio.create_task(env.engine.call([A], run(body)))
    await env.storage.refused.wait()  # checkpoint_with found B leased by B's handler
    gate.set()

    assert Effect.run_sync(await b_task) == Success(None)
    assert Effect.run_sync(await asyncio.wait_for(a_task, timeout=5)) == Success(None)
    assert (await snapshot(env.storage, B)).records == {"n": b"11"}


@pytest.mark.live
async def test_handlers_checkpointing_into_each_other_do_not_deadlock(quick: Env) -> None:
    """A's handler checkpoints into B while B's checkpoints into A: each waits (bounded) for
    the other's lease, and neither hangs: the first to give up fails with ``StorageError``
    (writing nothing), which lets the other finish."""
    both = asyncio.Barrier(2)

    def into(other: InstanceRef) -> Callable[[Sequence[InstanceTx]], Effect[None, Never]]:
        async def body(txs: Sequence[InstanceTx]) -> None:
            await both.wait()
            tx = txs[0]
            await hooks_of(tx).checkpoint_with(tx, other, lambda o: put_int(o, 1))

        return run(body)

    a = asyncio.create_task(quick.engine.call([A], into(B)))
    b = asyncio.create_task(quick.engine.call([B], into(A)))
    results = await asyncio.wait_for(asyncio.gather(a, b, return_exceptions=True), timeout=5)

    failed = [r for r in results if isinstance(r, StorageError)]
    succeeded = [r for r in results if isinstance(r, Effect)]
    assert len(failed) + len(succeeded) == 2, results
    assert failed  # the first to time out fails, which frees its instance for the other
    written = [(await snapshot(quick.storage, r)).exists for r in (A, B)]
    assert written.count(True) == len(succeeded)  # the winner's checkpoint wrote its target
    assert await is_free(quick, A, B)


async def test_peek_reads_committed_snapshots_without_a_lease(env: Env) -> None:
    await preset(env, B, 7)
    await schedule(env.engine, [B], T0 + timedelta(minutes=3))
    seen: list[InstanceSnapshot] = []

    async def body(txs: Sequence[InstanceTx]) -> None:
        tx = txs[0]
        put_int(tx, 1)  # buffered: not visible to peek
        seen.append(await hooks_of(tx).peek(B.instance_id))
        seen.append(await hooks_of(tx).peek(A.instance_id))
        seen.append(await hooks_of(tx).peek("counter:tick:nobody"))

    assert Effect.run_sync(await env.engine.call([A], run(body))) == Success(None)

    assert seen[0].records == {"n": b"7"}
    assert seen[0].alarm_at == T0 + timedelta(minutes=3)
    assert not seen[1].exists
    assert not seen[2].exists
    assert await is_free(env, B)  # peeking took no lease


# -- alarms: fire -----------------------------------------------------------------------------


async def test_fire_runs_the_alarm_handler_and_commits(env: Env) -> None:
    await schedule(env.engine, [A], T0)
    (claimed,) = await env.storage.claim_due(
        now=env.clock.now(), owner=env.engine.owner, ttl=TTL, limit=10
    )

    assert await env.engine.fire(claimed)

    snap = await snapshot(env.storage, A)
    assert snap.records == {"n": b"1"}
    assert snap.alarm_at is None
    assert [(f.instance_id, f.due_at) for f in env.job.fired] == [(A.instance_id, T0)]
    assert await is_free(env, A)


async def test_fire_skips_an_instance_whose_local_lock_is_busy(env: Env) -> None:
    await schedule(env.engine, [A], T0)
    (claimed,) = await env.storage.claim_due(
        now=env.clock.now(), owner=env.engine.owner, ttl=TTL, limit=10
    )

    async with env.engine.locks.hold([A.instance_id]):  # e.g. a client call of A is running
        assert not await env.engine.fire(claimed)
        assert await is_free(env, A)  # the claim's lease was given back

    assert env.job.fired == []
    assert (await snapshot(env.storage, A)).alarm_at == T0  # left for a later claim
    (again,) = await env.storage.claim_due(
        now=env.clock.now(), owner=env.engine.owner, ttl=TTL, limit=10
    )
    assert await env.engine.fire(again)
    assert len(env.job.fired) == 1


@pytest.mark.parametrize("instance_id", ["counter:ghost:x", "other:tick:x", "not-an-instance-id"])
async def test_alarm_of_an_unregistered_instance_is_pushed_back_a_minute(
    env: Env, instance_id: str, caplog: pytest.LogCaptureFixture
) -> None:
    got = await env.storage.acquire([instance_id], owner="setup", now=T0, ttl=TTL)
    assert got is not None
    await env.storage.commit(
        got.leases, [InstanceWrite(instance_id=instance_id, puts={"k": b"v"}, alarm=T0)]
    )
    env.clock.advance(timedelta(seconds=10))
    (claimed,) = await env.storage.claim_due(
        now=env.clock.now(), owner=env.engine.owner, ttl=TTL, limit=10
    )

    assert await env.engine.fire(claimed)

    snap = (await env.storage.load([instance_id]))[instance_id]
    assert snap.alarm_at == env.clock.now() + timedelta(minutes=1)
    assert snap.records == {"k": b"v"}
    assert "no registered job owns this instance" in caplog.text
    probe = await env.storage.acquire([instance_id], owner="probe", now=env.clock.now(), ttl=TTL)
    assert probe is not None  # released
    assert env.job.fired == []


async def test_defect_in_an_alarm_handler_pushes_the_alarm_back(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    async def explode(tx: InstanceTx, due_at: datetime) -> None:
        put_int(tx, 99)
        raise RuntimeError("bug in job code")

    clock = TestClock(T0)
    jobs = create_durable_jobs(
        {"tick": CounterJob(hook=explode)}, storage=MemoryStorage(), clock=clock
    )
    async with jobs:
        await schedule(jobs.engine, [A], T0)
        (claimed,) = await jobs.storage.claim_due(
            now=T0, owner=jobs.engine.owner, ttl=TTL, limit=10
        )
        assert await jobs.engine.fire(claimed)
        snap = await snapshot(jobs.storage, A)
    assert snap.records == {}
    assert snap.alarm_at == T0 + timedelta(minutes=1)
    assert "alarm handler of" in caplog.text


@pytest.mark.live
async def test_lease_is_renewed_while_a_long_handler_runs(tmp_path: Path) -> None:
    """With a real clock and a 150 ms TTL, a 500 ms handler keeps its lease and commits."""
    clock = SystemClock()
    storage = SqliteStorage(tmp_path / "renew.db")
    ttl = timedelta(milliseconds=150)
    jobs = create_durable_jobs({"tick": CounterJob()}, storage=storage, clock=clock, lease_ttl=ttl)
    stolen: list[Acquired | None] = []

    async def body(txs: Sequence[InstanceTx]) -> None:
        put_int(txs[0], 1)
        for _ in range(5):
            await asyncio.sleep(0.1)
            got = await storage.acquire([A.instance_id], owner="other", now=clock.now(), ttl=ttl)
            stolen.append(got)

    async with jobs:
        outcome = await jobs.engine.call([A], run(body))
        assert Effect.run_sync(outcome) == Success(None)
        assert (await snapshot(storage, A)).records == {"n": b"1"}
    assert stolen == [None] * 5


async def test_setting_the_alarm_to_its_current_instant_writes_no_alarm_change(
    env: Env, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Re-arming at the same instant (Continuous does on every trigger) changes nothing, so
    the commit carries no alarm change: no alarm row lock, no wake-up of every worker."""
    at = T0 + timedelta(minutes=1)
    await schedule(env.engine, [A], at)
    sent: list[list[InstanceWrite]] = []
    commit = env.storage.commit

    async def spy(leases: Sequence[Lease], writes: Sequence[InstanceWrite], **options: Any) -> None:
        sent.append(list(writes))
        await commit(leases, writes, **options)

    monkeypatch.setattr(env.storage, "commit", spy)

    await schedule(env.engine, [A], at)
    await schedule(env.engine, [A], at + timedelta(seconds=1))

    assert [[w.alarm for w in writes] for writes in sent] == [[], [at + timedelta(seconds=1)]]
    assert (await snapshot(env.storage, A)).alarm_at == at + timedelta(seconds=1)
