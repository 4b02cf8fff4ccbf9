"""Events across processes: sends from this process, the runs in a worker process.

* **SIGKILL**: a worker process on a SQLite file is killed at random moments while this
  process keeps sending events to its runs (sends racing the waits, the takeovers and the
  kills); a last worker finishes. Every event sent is taken exactly once, in the order sent,
  by the right run; each wait's step ran at least once and was committed once.
* **Wake-ups**: a run waiting in a worker process resumes when this process sends it an
  event — on PostgreSQL through ``LISTEN/NOTIFY`` (the worker's polling fallback is set to
  a minute, so a run that resumes within seconds was woken by the notification), on SQLite
  through the worker's polling.
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
from tests.conftest_pg import PgStore
from tests.workflow._events_worker import LEASE_TTL, Job, Ping, inbox_workflow, storage_of

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[2]
RUNS = 12
WAITS = 3
KILLS = 12
BUDGET_S = 90.0


async def _start_worker(
    url: str, schema: str, poll: float, side: Path
) -> asyncio.subprocess.Process:
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "tests.workflow._events_worker",
        url,
        schema,
        str(poll),
        str(side),
        cwd=ROOT,
        stdout=asyncio.subprocess.PIPE,
    )
    assert proc.stdout is not None
    line = await asyncio.wait_for(proc.stdout.readline(), timeout=30)
    assert line.strip() == b"ready", line
    return proc


async def _kill(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGKILL)
    await proc.wait()


async def _stop(proc: asyncio.subprocess.Process) -> None:
    proc.send_signal(signal.SIGTERM)
    await asyncio.wait_for(proc.wait(), timeout=30)


def _side_file(side: Path) -> dict[tuple[str, str], list[int]]:
    """Every execution of a wait's step: (run, wait) -> the pings it saw (torn lines left out)."""
    seen: dict[tuple[str, str], list[int]] = defaultdict(list)
    for line in side.read_text().splitlines():
        parts = line.rsplit(":", 2)
        if len(parts) == 3 and parts[2].isdigit() and parts[1].startswith("w"):
            seen[(parts[0][-30:], parts[1])].append(int(parts[2]))
    return seen


async def test_sigkilled_workers_take_every_event_once_in_order(tmp_path: Path) -> None:
    started = time.monotonic()
    rng = random.Random(20261207)
    url = f"sqlite:///{tmp_path / 'events.db'}"
    side = tmp_path / "side.log"
    side.touch()
    wf = inbox_workflow(str(side))
    async with create_durable_jobs({"inbox": wf}, storage=url, lease_ttl=LEASE_TTL) as jobs:
        h = jobs.client.workflow(wf)
        rids = [t.run_id for t in await h.batch_trigger([Job(waits=WAITS)] * RUNS)]
        # Every run gets WAITS pings, k = 0, 1, 2 in that order, interleaved across runs.
        slots = [rid for rid in rids for _ in range(WAITS)]
        rng.shuffle(slots)
        next_k = dict.fromkeys(rids, 0)
        queue: list[tuple[str, int]] = []
        for rid in slots:
            queue.append((rid, next_k[rid]))
            next_k[rid] += 1

        async def sender() -> None:
            for rid, k in queue:
                result = await h.send(rid, Ping(k=k), event_id=f"{rid}:{k}")
                assert result.accepted
                if rng.random() < 0.2:  # a retried send: a duplicate, never queued twice
                    again = await h.send(rid, Ping(k=k), event_id=f"{rid}:{k}")
                    assert again.duplicate
                await asyncio.sleep(rng.uniform(0, 0.15))  # spread over the kills

        sending = asyncio.ensure_future(sender())
        for _ in range(KILLS):
            proc = await _start_worker(url, "-", 0.05, side)
            await asyncio.sleep(rng.uniform(0.02, 0.25))
            await _kill(proc)
        await sending
        proc = await _start_worker(url, "-", 0.05, side)
        try:
            while len(await h.list_runs(status="completed", limit=RUNS)) < RUNS:
                assert time.monotonic() - started < BUDGET_S, "the runs did not all complete"
                await asyncio.sleep(0.05)
        finally:
            await _stop(proc)
        executed = _side_file(side)
        for rid in rids:
            run = await h.get_run(rid)
            assert (run.status, run.output) == ("completed", list(range(WAITS))), run.error
            steps = await h.steps(rid)
            waits = [(s.name, s.output) for s in steps if s.name.startswith("w")]
            assert waits == [(f"w{k}", Ping(k=k)) for k in range(WAITS)]  # each once, in order
            assert (await h.pending_events(rid)).events == []
            for k in range(WAITS):
                ran = executed[(rid[-30:], f"w{k}")]
                assert ran
                assert set(ran) == {k}
    print(f"\n{KILLS} kills, {RUNS} runs x {WAITS} events, {time.monotonic() - started:.1f} s")


async def _wake_test(url: str, schema: str, poll: float, tmp_path: Path, limit_s: float) -> float:
    side = tmp_path / "side.log"
    side.touch()
    wf = inbox_workflow(str(side))
    async with create_durable_jobs(
        {"inbox": wf}, storage=storage_of(url, schema), lease_ttl=LEASE_TTL
    ) as jobs:
        h = jobs.client.workflow(wf)
        proc = await _start_worker(url, schema, poll, side)
        try:
            rid = (await h.trigger(Job(waits=2))).run_id
            await h.send(rid, Ping(k=0))  # taken on its first execution
            deadline = time.monotonic() + 30
            while (await h.pending_events(rid)).waiting is None:
                assert time.monotonic() < deadline, "the run never reached its second wait"
                await asyncio.sleep(0.02)
            sent_at = time.monotonic()
            assert (await h.send(rid, Ping(k=1), event_id="last")).accepted
            while (await h.get_run(rid)).status != "completed":
                assert time.monotonic() - sent_at < limit_s, "the send did not wake the run"
                await asyncio.sleep(0.01)
            elapsed = time.monotonic() - sent_at
            assert (await h.get_run(rid)).output == [0, 1]
            return elapsed
        finally:
            await _stop(proc)


@pytest.mark.postgres
async def test_a_send_wakes_a_run_in_another_process_over_notify(
    pg_store: PgStore, tmp_path: Path
) -> None:
    # Polling once a minute: a run resumed within 5 s was woken by LISTEN/NOTIFY.
    elapsed = await _wake_test(pg_store.url, pg_store.schema, 60.0, tmp_path, 5.0)
    print(f"\nPostgreSQL: resumed {elapsed * 1000:.1f} ms after the send")


async def test_a_send_wakes_a_run_in_another_process_on_sqlite(tmp_path: Path) -> None:
    url = f"sqlite:///{tmp_path / 'wake.db'}"
    elapsed = await _wake_test(url, "-", 0.1, tmp_path, 10.0)
    print(f"\nSQLite: resumed {elapsed * 1000:.1f} ms after the send (polling every 100 ms)")
