"""Crash test of child runs: worker processes SIGKILLed at random instants while parents
and their children run, on a SQLite file and on PostgreSQL.

The test process triggers a few ``parent`` runs (``_crash_tree_worker``: a step, then one
child started without waiting and two waited for), starts a worker process, kills it with
SIGKILL after a random moment, and starts a fresh one — `KILLS` times — before a last
worker finishes everything, within a time bound (a child's end must reach its parent even
when the worker dies between the two). Then, from the committed records:

* every child was started exactly once: three child runs per parent, one per step name,
  each naming its parent;
* every parent completed with its children's outputs (the started child's id, the two
  waited-for children's committed outputs), and every child completed;
* every committed child step's output is one of its effect's executions (in the side file).
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time
from collections import Counter
from pathlib import Path

import pytest

from durable_effect._jobs import create_durable_jobs
from tests.conftest_pg import PgStore
from tests.jobs.conftest import POSTGRES
from tests.workflow._crash_tree_worker import LEASE_TTL, storage_of, tree_workflows
from tests.workflow._crash_worker import Job
from tests.workflow.test_crash import _read_side_file

pytestmark = [pytest.mark.live, pytest.mark.parametrize("kind", ["sqlite", POSTGRES])]

ROOT = Path(__file__).resolve().parents[2]
KILLS = 16
PER_WORKER = 6
PARENTS = KILLS * PER_WORKER
BUDGET_S = 60.0


async def _start_worker(
    kind: str, target: str, schema: str, side: Path
) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.workflow._crash_tree_worker",
        kind,
        target,
        schema,
        str(side),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=20)
    assert line.strip() == b"ready", line
    return proc


async def _kill(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGKILL)
    await proc.wait()


async def test_sigkilled_workers_start_each_child_once_and_parents_get_their_outputs(
    kind: str, tmp_path: Path, request: pytest.FixtureRequest
) -> None:
    started = time.monotonic()
    rng = random.Random(20261207)
    if kind == "sqlite":
        target, schema = str(tmp_path / "tree.db"), ""
    else:
        store: PgStore = request.getfixturevalue("pg_store")
        target, schema = store.url, f"{store.schema}_tree"
    side = tmp_path / "side-effects.log"
    side.touch()
    parent_wf, child_wf = tree_workflows(str(side))
    async with create_durable_jobs(
        {"parent": parent_wf, "child": child_wf},
        storage=storage_of(kind, target, schema),
        lease_ttl=LEASE_TTL,
    ) as jobs:
        h, hc = jobs.client.workflow(parent_wf), jobs.client.workflow(child_wf)
        parents: list[str] = []
        for _ in range(KILLS):
            batch = await h.batch_trigger([Job(n=len(parents) + i) for i in range(PER_WORKER)])
            parents.extend(t.run_id for t in batch)
            proc = await _start_worker(kind, target, schema, side)
            await asyncio.sleep(rng.uniform(0.0, 0.4))
            await _kill(proc)
        done_at_last_kill = (await h.count_runs(status="completed"))["completed"]

        proc = await _start_worker(kind, target, schema, side)
        try:
            while (await h.count_runs(status="completed"))["completed"] < PARENTS:
                assert time.monotonic() - started < BUDGET_S, "the parents did not all complete"
                await asyncio.sleep(0.05)
        finally:
            await _kill(proc)

        children = {r.id: r for r in await hc.list_runs(limit=1000)}
        per_parent = Counter(r.parent_run_id for r in children.values())
        assert per_parent == Counter(dict.fromkeys(parents, 3))  # each child started once
        child_ids = set(children)
        executed, _torn = _read_side_file(side, set(parents) | child_ids)
        for rid in parents:
            run = await h.get_run(rid)
            assert run.status == "completed", (rid, run.status, run.error)
            assert isinstance(run.output, list)
            fired, a, b = run.output
            mine = {c.id: c for c in children.values() if c.parent_run_id == rid}
            assert fired in mine
            outputs = sorted(str(c.output) for c in mine.values() if c.id != fired)
            assert sorted([str(a), str(b)]) == outputs  # the waited-for children's outputs
        for kid in children.values():
            assert kid.status == "completed", (kid.id, kid.status, kid.error)
            assert isinstance(kid.output, list)
            assert len(kid.output) == 2
            for name, token in zip(("c0", "c1"), kid.output, strict=True):
                assert token in executed[(kid.id, name)]  # a real execution was committed
        elapsed = time.monotonic() - started
        print(
            f"\n{kind}: {KILLS} kills, {PARENTS} parents x 3 children, "
            f"{done_at_last_kill} parents done before the last worker, {elapsed:.1f} s"
        )
        assert elapsed < BUDGET_S
