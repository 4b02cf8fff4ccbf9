"""Crash test: worker processes SIGKILLed at random instants while they run workflows.

A parent triggers many short runs on a SQLite file, then starts a worker process
(``_crash_worker``), kills it with SIGKILL after a random moment, and starts a fresh one —
at least 50 times — before a last worker finishes everything. Then, from the committed run
and step records and from the side file the steps append to:

* every run completed, with every step recorded once (unique names, indexes 0..n-1);
* every committed step's output is one of its effect's executions (its token is in the side
  file) — side effects ran at least once;
* the committed chain is consistent (each step's ``prev`` is the token committed for the
  step before, and the run's output lists exactly the committed tokens): no step output was
  ever committed twice or replaced after a later step used it — transitions are
  exactly-once.
"""

from __future__ import annotations

import asyncio
import random
import signal
import sys
import time
from collections import defaultdict
from pathlib import Path

import pytest

from durable_effect._jobs import create_durable_jobs
from tests.workflow._crash_worker import LEASE_TTL, STEPS, Job, Link, crash_workflow

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[2]
KILLS = 50
PER_WORKER = 16
RUNS = KILLS * PER_WORKER
BUDGET_S = 55.0


async def _start_worker(db: Path, side: Path) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.workflow._crash_worker",
        str(db),
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


def _read_side_file(side: Path, run_ids: set[str]) -> tuple[dict[tuple[str, str], set[str]], int]:
    """The executions the side file records, and how many torn writes it holds.

    A process killed inside ``write()`` can leave a partial line without its newline; that
    execution never returned, so its token cannot have been committed. The next process's
    append then lands on the same line, after the torn prefix: such a line still ends with
    a whole record, which is kept.
    """
    executed: dict[tuple[str, str], set[str]] = defaultdict(set)
    torn = 0
    for line in side.read_text().splitlines():
        parts = line.rsplit(":", 2)
        if len(parts) != 3 or len(parts[2]) != 32:
            torn += 1  # the torn tail of the file, or a torn line followed by another torn one
            continue
        rest, step_name, token = parts
        if rest not in run_ids:
            run_id = next((rid for rid in run_ids if rest.endswith(rid)), None)
            if run_id is None:
                torn += 1
                continue
            torn += 1  # a torn prefix glued to a whole record
            rest = run_id
        executed[(rest, step_name)].add(token)
    return executed, torn


async def test_sigkilled_workers_lose_nothing_and_commit_each_step_once(tmp_path: Path) -> None:
    started = time.monotonic()
    rng = random.Random(20260101)
    db = tmp_path / "crash.db"
    side = tmp_path / "side-effects.log"
    side.touch()
    wf = crash_workflow(str(side))
    async with create_durable_jobs(
        {"crash": wf}, storage=f"sqlite:///{db}", lease_ttl=LEASE_TTL
    ) as jobs:
        h = jobs.client.workflow(wf)
        run_ids: list[str] = []

        kills = 0
        while kills < KILLS:
            # fresh work for every worker, so that every kill lands in the middle of runs
            batch = await h.batch_trigger([Job(n=len(run_ids) + i) for i in range(PER_WORKER)])
            run_ids.extend(t.run_id for t in batch)
            proc = await _start_worker(db, side)
            await asyncio.sleep(rng.uniform(0.0, 0.12))
            await _kill(proc)
            kills += 1
        progress_at_last_kill = len(await h.list_runs(status="completed", limit=RUNS))

        proc = await _start_worker(db, side)
        try:
            while len(await h.list_runs(status="completed", limit=RUNS)) < RUNS:
                assert time.monotonic() - started < BUDGET_S, "the runs did not all complete"
                await asyncio.sleep(0.05)
        finally:
            await _kill(proc)

        executed, torn = _read_side_file(side, set(run_ids))

        for rid in run_ids:
            run = await h.get_run(rid)
            assert run.status == "completed", (rid, run.status, run.error)
            steps = await h.steps(rid)
            assert [(s.name, s.index, s.status) for s in steps] == [
                (f"s{i}", i, "completed") for i in range(STEPS)
            ]
            prev = ""
            tokens = []
            for s in steps:
                # the steps' schema= (Link) is known to the workers, not to this reader:
                # it reads the stored value as JSON builtins (nothing is imported to decode)
                assert isinstance(s.output, dict)
                link = Link(**s.output)
                assert link.token in executed[(rid, s.name)]  # a real execution was committed
                assert link.prev == prev  # built on the step committed before it
                prev = link.token
                tokens.append(link.token)
            assert run.output == tokens
        re_executed = sum(len(v) - 1 for v in executed.values())
        elapsed = time.monotonic() - started
        print(
            f"\n{KILLS} kills, {RUNS} runs x {STEPS} steps, {re_executed} step effects re-run "
            f"after a kill, {torn} torn side-file lines, "
            f"{progress_at_last_kill} runs done before the last worker, "
            f"{elapsed:.1f} s"
        )
        assert len(set(run_ids)) == RUNS
        assert len(executed) == RUNS * STEPS
        assert elapsed < 60


def test_side_file_reader_keeps_a_record_glued_to_a_torn_write(tmp_path: Path) -> None:
    rid, other = "1796121864655-000000d5d56af978", "1796121864656-000000d5d56af979"
    token = "f" * 32
    side = tmp_path / "side.log"
    side.write_text(f"{rid}:s0:{'a' * 32}\n179612186{rid}:s1:{token}\n{other}:s0:{'b' * 5}")
    executed, torn = _read_side_file(side, {rid, other})
    assert executed == {(rid, "s0"): {"a" * 32}, (rid, "s1"): {token}}
    assert torn == 2
