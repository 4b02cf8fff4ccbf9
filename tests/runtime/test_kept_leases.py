"""Kept leases: with ``Storage.lease_linger`` > 0 the engine keeps a client call's lease.

Runs on ``MemoryStorage`` with the linger turned on (PostgreSQL turns it on by default; its
own cross-process signal is tested in ``tests/storage/test_postgres.py`` and
``tests/jobs/test_kept_leases_pg.py``). What a user must never see: a stale read, an alarm
held back, a call of another owner kept waiting once the keeper is idle, a lease left held
after ``aclose``. The linger sweep is driven by the event loop's timer; tests that need it
to run wait for the release it makes (an event), never for time.
"""

from __future__ import annotations

import asyncio
from collections.abc import AsyncIterator, Callable, Sequence
from datetime import datetime, timedelta
from typing import TypeVar

import attrs
import pytest
from returns.result import Failure, Success

from durable_effect import Effect
from durable_effect._jobs import DurableJobs, create_durable_jobs
from durable_effect.jobs._instance import InstanceRef, InstanceTx
from durable_effect.storage import Acquired, InstanceWrite, Lease, MemoryStorage
from durable_effect.storage._postgres import PostgresStorage
from durable_effect.testing._clock import TestClock
from tests.conftest_pg import PgStore, pg_server, pg_store  # noqa: F401
from tests.runtime._support import T0, TTL, Boom, CounterJob, put_int, read_int, ref

R = TypeVar("R")

A = ref("a")
B = ref("b")


class KeepingMemory(MemoryStorage):
    """``MemoryStorage`` with a linger, counting grants and announcing releases."""

    def __init__(self, linger: float) -> None:
        super().__init__()
        self.lease_linger = linger
        self.granted: list[Acquired] = []
        self.released: list[Lease] = []
        self.release_seen = asyncio.Event()

    async def acquire(
        self, instance_ids: Sequence[str], *, owner: str, now: datetime, ttl: timedelta
    ) -> Acquired | None:
        got = await super().acquire(instance_ids, owner=owner, now=now, ttl=ttl)
        if got is not None:
            self.granted.append(got)
        return got

    async def release(self, leases: Sequence[Lease]) -> None:
        await super().release(leases)
        self.released.extend(leases)
        self.release_seen.set()


@attrs.define
class Env:
    jobs: DurableJobs
    storage: KeepingMemory
    clock: TestClock

    async def call(self, refs: Sequence[InstanceRef], fn: Callable[[Sequence[InstanceTx]], R]) -> R:
        """Run ``fn`` as a client call's handler; its result (the call must succeed)."""
        outcome = await self.jobs.engine.call(refs, lambda txs: Effect.sync(lambda: fn(txs)))
        result = Effect.run_sync(outcome)
        assert isinstance(result, Success), result
        value: R = result.unwrap()
        return value

    async def bump(self, r: InstanceRef = A) -> int:
        def body(txs: Sequence[InstanceTx]) -> int:
            value = read_int(txs[0]) + 1
            put_int(txs[0], value)
            return value

        return await self.call([r], body)

    async def is_free(self, r: InstanceRef = A) -> bool:
        """Whether another owner could lease ``r`` now (the probe lease is released)."""
        got = await MemoryStorage.acquire(
            self.storage, [r.instance_id], owner="probe", now=self.clock.now(), ttl=TTL
        )
        if got is None:
            return False
        await MemoryStorage.release(self.storage, got.leases)
        return True


async def _env(linger: float) -> AsyncIterator[Env]:
    storage = KeepingMemory(linger)
    clock = TestClock(T0)
    jobs = create_durable_jobs(
        {"tick": CounterJob(every=timedelta(minutes=1))},
        storage=storage,
        clock=clock,
        lease_ttl=TTL,
    )
    async with jobs:
        yield Env(jobs=jobs, storage=storage, clock=clock)


@pytest.fixture
async def env() -> AsyncIterator[Env]:
    """A linger far longer than any test: only what the test does releases a kept lease."""
    async for e in _env(600.0):
        yield e


@pytest.fixture
async def brief() -> AsyncIterator[Env]:
    """A linger of a millisecond: the sweep releases a kept lease almost at once."""
    async for e in _env(0.001):
        yield e


async def test_calls_on_one_instance_lease_it_once_and_read_what_they_committed(
    env: Env,
) -> None:
    assert [await env.bump() for _ in range(5)] == [1, 2, 3, 4, 5]

    assert len(env.storage.granted) == 1  # one acquire, five commits
    assert (await env.storage.load([A.instance_id]))[A.instance_id].records == {"n": b"5"}
    assert not await env.is_free()  # kept


async def test_the_kept_snapshot_is_the_committed_state_after_puts_and_deletes(
    env: Env,
) -> None:
    def first(txs: Sequence[InstanceTx]) -> None:
        txs[0].put("a", b"1")
        txs[0].put("b", b"2")
        txs[0].set_alarm(T0 + timedelta(hours=1))

    def second(txs: Sequence[InstanceTx]) -> None:
        txs[0].delete("a")
        txs[0].put("c", b"3")

    def look(txs: Sequence[InstanceTx]) -> tuple[dict[str, bytes], datetime | None]:
        return dict(txs[0].records()), txs[0].alarm_at

    await env.call([A], first)
    await env.call([A], second)
    seen = await env.call([A], look)

    stored = (await env.storage.load([A.instance_id]))[A.instance_id]
    assert seen == ({"b": b"2", "c": b"3"}, T0 + timedelta(hours=1))
    assert seen == (dict(stored.records), stored.alarm_at)
    assert len(env.storage.granted) == 1


async def test_aclose_releases_every_kept_lease(env: Env) -> None:
    await env.bump(A)
    await env.bump(B)
    assert not await env.is_free(A)

    await env.jobs.aclose()

    await env.storage.open()  # the memory store outlives the close
    assert await env.is_free(A)
    assert await env.is_free(B)


async def test_the_linger_sweep_releases_an_idle_lease(brief: Env) -> None:
    await brief.bump()

    await asyncio.wait_for(brief.storage.release_seen.wait(), timeout=5)

    assert [lease.instance_id for lease in brief.storage.released] == [A.instance_id]
    assert await brief.is_free()
    assert await brief.bump() == 2  # a fresh lease, the committed value
    assert len(brief.storage.granted) == 2


async def test_a_call_that_sets_an_alarm_due_within_the_linger_releases_its_lease(
    brief: Env,
) -> None:
    def soon(txs: Sequence[InstanceTx]) -> None:
        txs[0].set_alarm(brief.clock.now())

    await brief.call([A], soon)

    assert brief.storage.released == []  # released by the commit itself, not the sweep
    assert await brief.is_free()


async def test_a_kept_lease_whose_alarm_falls_due_is_released_before_the_claim(
    env: Env,
) -> None:
    def later(txs: Sequence[InstanceTx]) -> None:
        put_int(txs[0], 10)
        txs[0].set_alarm(T0 + timedelta(minutes=20))

    await env.call([A], later)
    assert not await env.is_free()
    env.clock.advance(timedelta(minutes=20))

    claimed = await env.jobs.engine.claim_due(limit=10)

    assert [c.lease.instance_id for c in claimed] == [A.instance_id]
    assert claimed[0].snapshot.records == {"n": b"10"}
    assert await env.jobs.engine.fire(claimed[0])
    assert (await env.storage.load([A.instance_id]))[A.instance_id].records == {"n": b"11"}


async def test_a_kept_lease_whose_alarm_fell_due_is_not_reused_by_a_call(env: Env) -> None:
    def later(txs: Sequence[InstanceTx]) -> None:
        txs[0].set_alarm(T0 + timedelta(minutes=20))

    await env.call([A], later)
    env.clock.advance(timedelta(minutes=20))

    assert await env.bump() == 1

    assert len(env.storage.granted) == 2  # released and leased again: the alarm may fire


async def test_a_lease_past_half_its_ttl_is_not_reused(env: Env) -> None:
    await env.bump()
    env.clock.advance(TTL * 0.6)

    assert await env.bump() == 2

    assert len(env.storage.granted) == 2
    assert [lease.generation for lease in env.storage.released] == [
        env.storage.granted[0].leases[0].generation
    ]


async def test_a_kept_lease_that_expired_and_was_taken_over_is_never_read_stale(
    env: Env,
) -> None:
    await env.bump()
    env.clock.advance(TTL)  # the kept lease has expired: another worker may take over
    other = await MemoryStorage.acquire(
        env.storage, [A.instance_id], owner="other", now=env.clock.now(), ttl=TTL
    )
    assert other is not None
    await env.storage.commit(
        other.leases, [InstanceWrite(instance_id=A.instance_id, puts={"n": b"100"})]
    )

    assert await env.bump() == 101


async def test_a_multi_instance_call_takes_a_kept_lease_without_waiting(env: Env) -> None:
    await env.bump(A)

    def both(txs: Sequence[InstanceTx]) -> list[int]:
        for tx in txs:
            put_int(tx, read_int(tx) + 10)
        return [read_int(tx) for tx in txs]

    assert await asyncio.wait_for(env.call([A, B], both), timeout=5) == [11, 10]
    assert await env.bump(A) == 12


async def test_try_call_on_a_kept_instance_runs(env: Env) -> None:
    await env.bump()

    outcome = await env.jobs.engine.try_call(
        [A], lambda txs: Effect.sync(lambda: put_int(txs[0], 50))
    )

    assert outcome is not None
    assert Effect.run_sync(outcome) == Success(None)
    assert await env.bump() == 51


async def test_a_wanted_signal_releases_an_idle_kept_lease(env: Env) -> None:
    await env.bump()

    env.jobs.engine.kept.wanted(A.instance_id)  # what PostgreSQL's NOTIFY delivers

    await asyncio.wait_for(env.storage.release_seen.wait(), timeout=5)
    assert await env.is_free()


async def test_a_failed_call_releases_its_lease(env: Env) -> None:
    await env.bump()

    def fails(txs: Sequence[InstanceTx]) -> Effect[None, Boom]:
        put_int(txs[0], 99)
        return Effect.fail(Boom(code=1))

    result = Effect.run_sync(await env.jobs.engine.call([A], fails))

    assert result == Failure(Boom(code=1))
    assert await env.is_free()
    assert (await env.storage.load([A.instance_id]))[A.instance_id].records == {"n": b"1"}


async def test_without_a_linger_every_call_releases_its_lease() -> None:
    async for e in _env(0.0):
        await e.bump()
        await e.bump()
        assert len(e.storage.granted) == 2
        assert await e.is_free()


# -- on PostgreSQL: two processes --------------------------------------------------------------


def _pg_jobs(store: PgStore, linger: float) -> DurableJobs:
    storage = PostgresStorage(
        store.url, max_size=2, schema=store.schema, notify_channel=store.schema, lease_linger=linger
    )
    return create_durable_jobs({"tick": CounterJob()}, storage=storage, lease_ttl=TTL)


async def _pg_bump(jobs: DurableJobs) -> int:
    def body(txs: Sequence[InstanceTx]) -> int:
        value = read_int(txs[0]) + 1
        put_int(txs[0], value)
        return value

    result = Effect.run_sync(
        await jobs.engine.call([A], lambda txs: Effect.sync(lambda: body(txs)))
    )
    assert isinstance(result, Success), result
    value: int = result.unwrap()
    return value


@pytest.mark.postgres
async def test_another_process_gets_a_kept_lease_at_once_and_nobody_reads_stale(
    pg_store: PgStore,  # noqa: F811
) -> None:
    """Process one keeps A for ten seconds; process two's call on A must not wait for that:
    its ``acquire`` notifies ``want:A``, process one lets the lease go. Each then reads what
    the other committed."""
    async with _pg_jobs(pg_store, 10.0) as one, _pg_jobs(pg_store, 10.0) as two:
        assert await _pg_bump(one) == 1
        assert await _pg_bump(one) == 2  # kept: the second call reused the lease

        assert await asyncio.wait_for(_pg_bump(two), timeout=5) == 3
        assert await asyncio.wait_for(_pg_bump(one), timeout=5) == 4
        assert await asyncio.wait_for(_pg_bump(two), timeout=5) == 5
