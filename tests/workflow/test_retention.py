"""The retention sweep: runs past ``retain`` purged in bounded batches, one alarm per workflow,
taking turns with every other due alarm.

Runs on memory, SQLite and PostgreSQL, with time moved only by the test.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import datetime, timedelta
from pathlib import Path
from typing import Any

import msgspec
import pytest

from durable_effect import Continuous, ContinuousContext, Effect, TriggerRequest
from durable_effect.storage import Claimed, InstanceWrite, Lease, Storage, open_storage
from durable_effect.testing import TestRuntime
from durable_effect.workflow import Step, Workflow
from durable_effect.workflow._index import RUN_STATUSES
from durable_effect.workflow._retention import SWEEP_BATCH
from tests.workflow._support import STORAGES, T0, CrashableStorage, Order, storage_url

pytestmark = pytest.mark.parametrize("kind", STORAGES)

RUNS = 3 * SWEEP_BATCH + 10


def done(step: Step, order: Order) -> Effect[str]:
    return Effect.succeed(order.order_id)


KEPT = Workflow.make(Order, done, retain="1 hour")


class Count(msgspec.Struct):
    n: int


def tick(ctx: ContinuousContext[Count]) -> Effect[None, Any]:
    return ctx.update_state(lambda c: Count(n=c.n + 1))


TICKER = Continuous.make(Count, Continuous.every("10 minutes"), tick)


class Watching(CrashableStorage):
    """Records the instances each claim took and the runs each commit purged."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self.claims: list[str] = []
        self.purges: list[int] = []

    async def claim_due(
        self, *, now: datetime, owner: str, ttl: timedelta, limit: int
    ) -> Sequence[Claimed]:
        claimed = await super().claim_due(now=now, owner=owner, ttl=ttl, limit=limit)
        self.claims.extend(c.lease.instance_id for c in claimed)
        return claimed

    async def commit(
        self,
        leases: Sequence[Lease],
        writes: Sequence[InstanceWrite],
        *,
        release: bool = True,
        unless_present: Sequence[tuple[str, str]] = (),
        feed: Sequence[bytes] = (),
    ) -> None:
        await super().commit(
            leases, writes, release=release, unless_present=unless_present, feed=feed
        )
        purged = sum(1 for w in writes if w.purge and w.instance_id.startswith("workflow:"))
        if purged:
            self.purges.append(purged)


async def test_a_backlog_is_purged_in_bounded_batches_taking_turns_with_other_alarms(
    kind: str, tmp_path: Path
) -> None:
    target = storage_url(kind, tmp_path)
    storage = Watching(open_storage(target) if isinstance(target, str) else target)
    async with TestRuntime({"kept": KEPT, "ticker": TICKER}, storage=storage) as rt:
        h = rt.client.workflow(KEPT)
        keyed = [Order(order_id=f"o{n}") for n in range(RUNS)]
        await h.batch_trigger(keyed[:10])
        for n in range(10, RUNS, 50):  # with idempotency marks too
            batch = keyed[n : n + 50]
            await h.batch_trigger(
                [TriggerRequest(input=o, idempotency_key=o.order_id) for o in batch]
            )
        await rt.run_until_idle()
        assert (await h.count_runs())["completed"] == RUNS
        sweep = "jobmeta:kept:workflow"
        assert (await rt.jobs.storage.load([sweep]))[sweep].alarm_at == T0 + timedelta(hours=1)
        # The ticker comes due after the sweep, before the clock jumps past both.
        rt.clock.set(T0 + timedelta(hours=1, minutes=1))
        await rt.client.continuous(TICKER).start(id="t", input=Count(n=0))
        rt.clock.set(T0 + timedelta(hours=2))
        storage.claims.clear()
        worker = rt.jobs.worker(concurrency=1)
        await worker.run_until_idle()
        # One batch of the sweep, then the ticker (due before the sweep's re-armed alarm),
        # then the rest of the sweep, one batch per claim.
        batches = -(-RUNS // SWEEP_BATCH)
        assert storage.claims[:2] == [sweep, "continuous:ticker:t"]
        assert storage.claims[2:] == [sweep] * (batches - 1)
        assert max(storage.purges) <= SWEEP_BATCH
        assert sum(storage.purges) == RUNS
        assert await h.count_runs() == dict.fromkeys(RUN_STATUSES, 0)
        assert await rt.jobs.storage.list_instances("workflow:") == []
        assert await rt.jobs.storage.list_instances("wfidem:") == []
        assert (await rt.client.continuous(TICKER).status("t")).run_count == 2
        # nothing left to purge: the sweep sleeps until a run finishing now could be due
        later = (await rt.jobs.storage.load([sweep]))[sweep].alarm_at
        assert later == T0 + timedelta(hours=3)


async def test_a_held_run_is_left_for_a_later_sweep(kind: str, tmp_path: Path) -> None:
    async with TestRuntime({"kept": KEPT}, storage=storage_url(kind, tmp_path)) as rt:
        h = rt.client.workflow(KEPT)
        ids = [r.run_id for r in await h.batch_trigger([Order(order_id=f"o{n}") for n in range(3)])]
        await rt.run_until_idle()
        storage = rt.jobs.storage
        held = await storage.acquire(
            [f"workflow:kept:{ids[1]}"], owner="someone", now=T0, ttl=timedelta(hours=5)
        )
        assert held is not None
        await rt.advance("1 hour")
        assert [r.id for r in await h.list_runs()] == []  # hidden: past its retention
        assert await storage.list_instances("workflow:") == [f"workflow:kept:{ids[1]}"]
        await storage.release(held.leases)
        await rt.advance("1 second")  # the sweep retries a second later
        assert await storage.list_instances("workflow:") == []


async def test_a_resumed_or_deleted_run_is_not_purged_twice(kind: str, tmp_path: Path) -> None:
    async with TestRuntime({"kept": KEPT}, storage=storage_url(kind, tmp_path)) as rt:
        h = rt.client.workflow(KEPT)
        ids = [r.run_id for r in await h.batch_trigger([Order(order_id=f"o{n}") for n in range(4)])]
        await rt.run_until_idle()
        await h.delete_run(ids[0])  # its entries go with it
        assert (await h.count_runs())["completed"] == 3
        await rt.advance("30 minutes")
        retriggered = await h.retrigger(ids[1])
        await rt.run_until_idle()
        await rt.advance("30 minutes")  # the first three are due, the retriggered one is not
        assert [r.id for r in await h.list_runs()] == [retriggered.run_id]
        assert await rt.jobs.storage.list_instances("workflow:") == [
            f"workflow:kept:{retriggered.run_id}"
        ]
