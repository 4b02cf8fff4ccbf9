"""``Engine.call(new=True)``: a call on an instance that should not exist yet, in one write.

A workflow trigger makes a new run id, so its run is written by ``Storage.commit_new`` (on
SQLite: one transaction, no lease) instead of ``acquire`` + ``commit``. These tests pin that
it costs one transaction, that it keeps the exclusion of a leased call against another
process on the same file, and that a call whose instance turns out to exist runs as usual.
"""

from __future__ import annotations

import asyncio
from collections.abc import Sequence
from datetime import timedelta
from pathlib import Path

from durable_effect import Effect, Gen
from durable_effect._jobs import create_durable_jobs
from durable_effect.errors import StorageError
from durable_effect.jobs._instance import InstanceRef, InstanceTx
from durable_effect.storage import InstanceWrite, SqliteStorage
from durable_effect.workflow import Step, Workflow, WorkflowDefinition


@Effect.gen
def _two_steps(step: Step, x: int) -> Gen[int, Exception]:
    a = yield from step.run("add", Effect.succeed(x + 1))
    return (yield from step.run("double", Effect.succeed(a * 2)))


WORKFLOW: WorkflowDefinition[int, int] = Workflow.make(int, _two_steps)
REF = InstanceRef(job_type="task", job_name="probe", id="one")


def _count_and_write(txs: Sequence[InstanceTx]) -> Effect[int, StorageError]:
    """Write ``n`` = one more than what is stored; succeed with the ``n`` written."""
    (tx,) = txs
    stored = tx.get("n")
    n = 1 if stored is None else int(stored) + 1
    tx.put("n", str(n).encode())
    return Effect.succeed(n)


async def test_a_trigger_is_one_write_transaction_and_leaves_the_run_free(
    tmp_path: Path,
) -> None:
    async with create_durable_jobs({"wf": WORKFLOW}, storage=f"sqlite:///{tmp_path}/a.db") as jobs:
        handle = jobs.client.workflow(WORKFLOW)
        storage = jobs.storage
        assert isinstance(storage, SqliteStorage)
        await handle.trigger(0)  # opens the store (and writes its bookkeeping)
        before = storage.transactions_committed
        result = await handle.trigger(20)
        assert storage.transactions_committed - before == 1
        run = await handle.get_run(result.run_id)
        assert (run.status, result.disposition) == ("pending", "created")
        # Not leased: another process's worker claims and completes it.
        async with create_durable_jobs(
            {"wf": WORKFLOW}, storage=f"sqlite:///{tmp_path}/a.db"
        ) as other:
            assert await other.worker().run_until_idle() >= 1
        assert await handle.wait_output(result.run_id, timeout=5) == 42


async def test_a_new_call_on_an_instance_another_process_wrote_runs_leased(
    tmp_path: Path,
) -> None:
    url = f"sqlite:///{tmp_path}/b.db"
    async with (
        create_durable_jobs({}, storage=url) as ours,
        create_durable_jobs({}, storage=url) as theirs,
    ):
        await theirs.open()
        first = await theirs.engine.call([REF], _count_and_write)
        assert await Effect.run_promise(first) == 1  # "another process" made the instance
        again = await ours.engine.call([REF], _count_and_write, new=True)
        assert await Effect.run_promise(again) == 2  # the leased path read what is there
        snapshot = (await ours.storage.load([REF.instance_id]))[REF.instance_id]
        assert snapshot.records == {"n": b"2"}


async def test_a_new_call_never_writes_under_another_processes_lease(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path}/c.db"
    async with (
        create_durable_jobs({}, storage=url) as ours,
        create_durable_jobs({}, storage=url) as theirs,
    ):
        await ours.open()
        await theirs.open()
        held = await theirs.storage.acquire(
            [REF.instance_id], owner="them", now=theirs.clock.now(), ttl=timedelta(seconds=30)
        )
        assert held is not None
        # Held by them: the new call may not write; it waits for their lease as any call.
        call = asyncio.ensure_future(ours.engine.call([REF], _count_and_write, new=True))
        for _ in range(20):
            await asyncio.sleep(0)
        assert not call.done()
        assert not (await ours.storage.load([REF.instance_id]))[REF.instance_id].exists
        # Their lease still commits (nothing of ours got in between), and releases.
        write = InstanceWrite(instance_id=REF.instance_id, puts={"n": b"7"})
        await theirs.storage.commit(held.leases, [write])
        assert await Effect.run_promise(await asyncio.wait_for(call, 10)) == 8
