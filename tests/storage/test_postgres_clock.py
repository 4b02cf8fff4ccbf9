"""Lease expiry on PostgreSQL is judged by the server's clock, not by the workers'.

Two `PostgresStorage` objects (or two runtimes) stand for two worker machines; one of them
has a `Clock` a minute ahead of (or behind) the other. With ``lease_clock="caller"`` (the
port's plain semantics, for tests) the fast one takes the slow one's live lease at once —
the hazard; with the default ``lease_clock="server"`` it never does, and an expired lease
is free for everybody, whatever their clocks say.
"""

from __future__ import annotations

import asyncio
import time
from collections.abc import AsyncIterator, Callable
from contextlib import asynccontextmanager
from datetime import UTC, datetime, timedelta
from typing import Literal

import psycopg
import pytest

from durable_effect._jobs import DurableJobs, create_durable_jobs
from durable_effect._system_clock import SystemClock
from durable_effect.jobs._instance import InstanceTx
from durable_effect.storage import InstanceWrite
from durable_effect.storage._postgres import PostgresStorage
from tests.conftest_pg import PgStore, pg_server, pg_store  # noqa: F401
from tests.runtime._support import CounterJob, ref, schedule

pytestmark = pytest.mark.postgres

TTL = timedelta(seconds=30)
SKEW = timedelta(seconds=60)


class SkewedClock:
    """The system clock, ``skew`` off (a worker machine whose clock is wrong)."""

    def __init__(self, skew: timedelta) -> None:
        self.skew = skew
        self._clock = SystemClock()

    def now(self) -> datetime:
        return self._clock.now() + self.skew

    async def sleep_until(self, when: datetime) -> None:
        await self._clock.sleep_until(when - self.skew)


LeaseClock = Literal["server", "caller"]


@asynccontextmanager
async def two_storages(
    store: PgStore, lease_clock: LeaseClock
) -> AsyncIterator[tuple[PostgresStorage, PostgresStorage]]:
    pair = [
        PostgresStorage(
            store.url,
            max_size=2,
            schema=store.schema,
            notify_channel=store.schema,
            lease_clock=lease_clock,
        )
        for _ in range(2)
    ]
    async with pair[0], pair[1]:
        yield pair[0], pair[1]


def shift_leases_back(store: PgStore, by: timedelta) -> None:
    """As if ``by`` had passed on the server since every lease was granted or renewed."""
    with psycopg.connect(store.url, autocommit=True) as conn:
        conn.execute(
            f"UPDATE {store.schema}.leases SET expires_at = expires_at - %s",
            (by,),
        )


def now() -> datetime:
    return datetime.now(UTC)


async def test_a_fast_clock_takes_a_live_lease_only_when_leases_use_the_callers_clock(
    pg_store: PgStore,  # noqa: F811
) -> None:
    """The hazard, on purpose: with the callers' clocks a minute of skew is a takeover."""
    async with two_storages(pg_store, "caller") as (slow, fast):
        assert await slow.acquire(["i"], owner="slow", now=now(), ttl=TTL) is not None
        stolen = await fast.acquire(["i"], owner="fast", now=now() + SKEW, ttl=TTL)
        assert stolen is not None


@pytest.mark.parametrize("skew", [SKEW, 10 * SKEW, timedelta(days=365)])
async def test_a_fast_clock_never_takes_a_live_lease(
    pg_store: PgStore,  # noqa: F811
    skew: timedelta,
) -> None:
    async with two_storages(pg_store, "server") as (slow, fast):
        got = await slow.acquire(["i", "j"], owner="slow", now=now(), ttl=TTL)
        assert got is not None
        assert await fast.acquire(["i"], owner="fast", now=now() + skew, ttl=TTL) is None
        assert await fast.acquire(["j", "k"], owner="fast", now=now() + skew, ttl=TTL) is None
        # Nor by claiming its alarm (due by any clock).
        (lease_i, _) = got.leases
        write = InstanceWrite(instance_id="i", alarm=now() - timedelta(seconds=1))
        await slow.commit([lease_i], [write], release=False)
        assert await fast.claim_due(now=now() + skew, owner="fast", ttl=TTL, limit=10) == []
        # The holder renews by the server's clock, whatever its own says.
        renewed = await slow.extend(lease_i, now=now() - skew, ttl=TTL)
        assert renewed.expires_at < now()  # handed back in the caller's frame: now + ttl
        assert await fast.acquire(["i"], owner="fast", now=now() + skew, ttl=TTL) is None
        await slow.commit([renewed], [InstanceWrite(instance_id="i", puts={"k": b"v"})])
        assert (await fast.load(["i"]))["i"].records == {"k": b"v"}


async def test_an_expired_lease_is_free_whatever_the_callers_clock_says(
    pg_store: PgStore,  # noqa: F811
) -> None:
    async with two_storages(pg_store, "server") as (first, second):
        got = await first.acquire(["i"], owner="first", now=now(), ttl=TTL)
        assert got is not None
        await first.commit(got.leases, [InstanceWrite(instance_id="i", alarm=now())], release=False)
        # Shortly before expiry on the server's clock it is still held, even for a caller
        # whose clock is far ahead...
        shift_leases_back(pg_store, TTL - timedelta(seconds=5))
        assert await second.claim_due(now=now() + SKEW, owner="second", ttl=TTL, limit=5) == []
        # ... and once the server's clock passed it, it is free even for one far behind.
        shift_leases_back(pg_store, timedelta(seconds=5))
        behind = now() - SKEW
        assert await second.acquire(["i"], owner="second", now=behind, ttl=TTL) is not None
        shift_leases_back(pg_store, TTL)
        (claimed,) = await second.claim_due(now=now(), owner="third", ttl=TTL, limit=5)
        assert claimed.lease.instance_id == "i"
        assert claimed.lease.expires_at - claimed.due_at < TTL + timedelta(seconds=5)


async def test_alarms_stay_on_the_callers_clock(pg_store: PgStore) -> None:  # noqa: F811
    """Only lease expiry moved to the server's clock: an alarm is due when ``now`` says."""
    async with two_storages(pg_store, "server") as (storage, _):
        later = datetime(2040, 1, 1, tzinfo=UTC)
        got = await storage.acquire(["i"], owner="w", now=now(), ttl=TTL)
        assert got is not None
        await storage.commit(got.leases, [InstanceWrite(instance_id="i", alarm=later)])
        assert await storage.claim_due(now=now(), owner="w", ttl=TTL, limit=5) == []
        (claimed,) = await storage.claim_due(now=later, owner="w", ttl=TTL, limit=5)
        assert claimed.due_at == later
        assert claimed.lease.expires_at == later + TTL


# -- two workers, one with a skewed clock -----------------------------------------------------


class Blocking:
    """An alarm hook that holds every handler until released; counts the handlers."""

    def __init__(self) -> None:
        self.release = asyncio.Event()
        self.started: list[str] = []

    async def hook(self, tx: InstanceTx, due_at: datetime) -> None:
        self.started.append(tx.instance_id)
        await self.release.wait()


async def eventually(condition: Callable[[], bool], *, within: float, what: str) -> None:
    deadline = time.monotonic() + within
    while not condition():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        await asyncio.sleep(0.01)


async def handlers_started_by_two_workers(store: PgStore, lease_clock: LeaseClock) -> list[str]:
    """Worker A (true clock) runs a long handler; worker B's clock is `SKEW` ahead and polls
    for 0.5 s meanwhile. The handlers started, by instance."""
    blocking = Blocking()
    job = CounterJob(hook=blocking.hook)

    def jobs(clock: SystemClock | SkewedClock) -> DurableJobs:
        storage = PostgresStorage(
            store.url,
            max_size=2,
            schema=store.schema,
            notify_channel=store.schema,
            lease_clock=lease_clock,
        )
        return create_durable_jobs({"tick": job}, storage=storage, clock=clock, lease_ttl=TTL)

    async with jobs(SystemClock()) as a, jobs(SkewedClock(SKEW)) as b:
        await schedule(a.engine, [ref("x")], a.clock.now())
        worker_a = a.worker(concurrency=2, poll_interval=0.05)
        worker_b = b.worker(concurrency=2, poll_interval=0.05)
        run_a = asyncio.create_task(worker_a.run())
        try:
            await eventually(lambda: len(blocking.started) == 1, within=10, what="worker A")
            run_b = asyncio.create_task(worker_b.run())
            try:
                deadline = time.monotonic() + 0.5
                while time.monotonic() < deadline and len(blocking.started) == 1:
                    await asyncio.sleep(0.02)
                started = list(blocking.started)
            finally:
                blocking.release.set()
                await worker_b.stop()
                await asyncio.wait_for(run_b, 10)
        finally:
            blocking.release.set()
            await worker_a.stop()
            await asyncio.wait_for(run_a, 10)
    return started


@pytest.mark.live
async def test_a_worker_with_a_fast_clock_starts_no_second_handler(
    pg_store: PgStore,  # noqa: F811
) -> None:
    assert await handlers_started_by_two_workers(pg_store, "server") == ["counter:tick:x"]


@pytest.mark.live
async def test_with_the_callers_clock_the_fast_worker_starts_a_second_handler(
    pg_store: PgStore,  # noqa: F811
) -> None:
    """What the server's clock prevents (and so what the test above would catch)."""
    started = await handlers_started_by_two_workers(pg_store, "caller")
    assert started == ["counter:tick:x", "counter:tick:x"]
