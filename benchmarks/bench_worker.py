"""Benchmark a real `Worker` (SystemClock, SQLite file) against baselines measured in the same run.

Usage: ``python benchmarks/bench_worker.py [--quick]``. Prints a table and writes
``benchmarks/results/bench_worker.json``.

1. ``alarm-lateness``: an idle worker is given K alarms (200, 20 ms apart; 100 with
   ``--quick``) on a SQLite file (``synchronous=full``); each firing's lateness is
   ``clock.now()`` in the handler minus the alarm's instant. The baseline is asyncio's own
   ``loop.call_at`` for the same schedule on the same loop at the same time, shifted by half a
   spacing (10 ms) so the two never compete but see the same machine load. Reported: p50 and
   p99 of both; the bar is ours p99 <= 3 x asyncio's p99 (and no alarm early).
2. ``worker-memory``: peak RSS of a fresh process running an idle worker (polling every
   100 ms for a second) over a store of 100,000 idle instances (a small record and an alarm a
   year ahead each), against the same process over an empty store. Bar: within 20 MB.
   (``bench_storage.py`` measures the storage alone; this one has the worker running.)
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import resource
import sqlite3
import subprocess
import sys
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import ClassVar, Never

import attrs

from durable_effect import Effect
from durable_effect._jobs import create_durable_jobs
from durable_effect._system_clock import SystemClock
from durable_effect.jobs._base import JobDefinition
from durable_effect.jobs._instance import InstanceRef, InstanceTx
from durable_effect.storage import InstanceWrite, SqliteStorage

RESULTS = Path(__file__).resolve().parent / "results" / "bench_worker.json"
JOB_TYPE = "bench"
TTL = timedelta(seconds=30)
LEAD = timedelta(milliseconds=500)  # the first alarm is this far after scheduling


@attrs.frozen(kw_only=True)
class Row:
    """One line of the table."""

    benchmark: str
    ours: float
    baseline: float
    ratio: float
    bar: str
    met: bool
    unit: str
    detail: str = ""


class LatenessJob(JobDefinition):
    """Records how late each alarm fired (seconds) and clears it."""

    job_type: ClassVar[str] = JOB_TYPE

    def __init__(self) -> None:
        self.lateness: list[float] = []
        self.done = asyncio.Event()
        self.expected = 0

    @property
    def log_level(self) -> int:
        return 40

    def on_alarm(self, tx: InstanceTx, due_at: datetime) -> Effect[None, Never]:
        def fire() -> None:
            self.lateness.append((tx.now() - due_at).total_seconds())
            tx.set_alarm(None)
            if len(self.lateness) >= self.expected:
                self.done.set()

        return Effect.sync(fire)


class IdleJob(JobDefinition):
    """A job whose alarms are all far in the future (never fires here)."""

    job_type: ClassVar[str] = JOB_TYPE

    @property
    def log_level(self) -> int:
        return 40

    def on_alarm(self, tx: InstanceTx, due_at: datetime) -> Effect[None, Never]:
        return Effect.sync(lambda: tx.set_alarm(None))


def percentile(values: list[float], q: float) -> float:
    """The ``q`` quantile (0..1) by nearest rank."""
    ordered = sorted(values)
    rank = min(len(ordered) - 1, max(0, round(q * len(ordered) + 0.5) - 1))
    return ordered[rank]


# -- alarm lateness --------------------------------------------------------------------------


async def worker_lateness(
    path: Path, k: int, spacing: timedelta, baseline: list[float]
) -> list[float]:
    """Our lateness for ``k`` alarms; asyncio's for the same schedule (offset by half a
    spacing, so both see the same moments of machine load) goes into ``baseline``."""
    job = LatenessJob()
    job.expected = k
    jobs = create_durable_jobs(
        {"late": job}, storage=SqliteStorage(path, synchronous="full"), lease_ttl=TTL
    )
    async with jobs:
        worker = jobs.worker(concurrency=10, poll_interval=1.0)
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(0.2)  # the worker is idle (nothing stored yet)
        start = jobs.clock.now() + LEAD
        refs = [InstanceRef(job_type=JOB_TYPE, job_name="late", id=f"a{i:04d}") for i in range(k)]

        def arm(txs: list[InstanceTx]) -> Effect[None, Never]:
            def body() -> None:
                for i, tx in enumerate(txs):
                    tx.set_alarm(start + i * spacing)

            return Effect.sync(body)

        outcome = await jobs.engine.call(refs, lambda txs: arm(list(txs)))
        await outcome
        timers = call_at_schedule(start + spacing / 2, k, spacing, baseline)
        timeout = (LEAD + k * spacing).total_seconds() + 10
        await asyncio.wait_for(job.done.wait(), timeout=timeout)
        await asyncio.wait_for(timers, timeout=timeout)
        await worker.stop()
        await task
    return job.lateness


def call_at_schedule(
    start: datetime, k: int, spacing: timedelta, lateness: list[float]
) -> asyncio.Future[None]:
    """asyncio's own timer for a schedule: ``loop.call_at`` for each instant; a future set
    once all fired."""
    loop = asyncio.get_running_loop()
    clock = SystemClock()
    done = loop.create_future()

    def fire(due: datetime) -> None:
        lateness.append((clock.now() - due).total_seconds())
        if len(lateness) >= k and not done.done():
            done.set_result(None)

    for i in range(k):
        due = start + i * spacing
        loop.call_at(loop.time() + (due - clock.now()).total_seconds(), fire, due)
    return done


async def lateness_row(tmp: Path, k: int) -> Row:
    spacing = timedelta(milliseconds=20)
    base: list[float] = []
    ours = await worker_lateness(tmp / "lateness.db", k, spacing, base)
    ours_p50, ours_p99 = percentile(ours, 0.5) * 1e3, percentile(ours, 0.99) * 1e3
    base_p50, base_p99 = percentile(base, 0.5) * 1e3, percentile(base, 0.99) * 1e3
    ratio = ours_p99 / base_p99 if base_p99 > 0 else float("inf")
    early = sum(1 for x in ours if x < 0)
    return Row(
        benchmark=f"alarm-lateness-p99 ({k} alarms, 20 ms apart)",
        ours=ours_p99,
        baseline=base_p99,
        ratio=ratio,
        bar="<= 3.00x",
        met=ratio <= 3.0 and early == 0,
        unit="ms late at p99 (baseline: loop.call_at)",
        detail=(
            f"p50 {ours_p50:.2f} ms vs {base_p50:.2f} ms; max {max(ours) * 1e3:.2f} ms vs "
            f"{max(base) * 1e3:.2f} ms; early firings: {early}"
        ),
    )


# -- memory ----------------------------------------------------------------------------------


async def populate(path: Path, n: int) -> None:
    """``n`` idle instances of the ``idle`` job (a record, an alarm a year ahead), 1,000 per
    commit."""
    now = SystemClock().now()
    later = now + timedelta(days=365)
    async with SqliteStorage(path) as storage:
        for base in range(0, n, 1000):
            ids = [f"{JOB_TYPE}:idle:{i:06d}" for i in range(base, min(n, base + 1000))]
            got = await storage.acquire(ids, owner="setup", now=now, ttl=TTL)
            assert got is not None
            writes = [InstanceWrite(instance_id=i, puts={"s": b"idle"}, alarm=later) for i in ids]
            await storage.commit(got.leases, writes)


async def rss_child(path: str) -> dict[str, int]:
    """Run an idle worker for a second over ``path``; this process's RSS (kB)."""
    jobs = create_durable_jobs({"idle": IdleJob()}, storage=SqliteStorage(path), lease_ttl=TTL)
    async with jobs:
        worker = jobs.worker(concurrency=10, poll_interval=0.1)
        task = asyncio.create_task(worker.run())
        await asyncio.sleep(1.0)
        status = Path("/proc/self/status").read_text()
        current = next(int(line.split()[1]) for line in status.splitlines() if "VmRSS" in line)
        await worker.stop()
        await task
        fired = worker.fired
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
    return {"rss_kb": current, "peak_kb": peak, "fired": fired}


def measure_rss(path: Path) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    data = json.loads(out.stdout)
    return {key: int(data[key]) for key in ("rss_kb", "peak_kb", "fired")}


async def memory_row(tmp: Path, idle: int) -> Row:
    empty, full = tmp / "empty.db", tmp / "idle.db"
    async with SqliteStorage(empty):
        pass
    await populate(full, idle)
    empty_rss = await asyncio.to_thread(measure_rss, empty)
    full_rss = await asyncio.to_thread(measure_rss, full)
    assert full_rss["fired"] == 0
    assert empty_rss["fired"] == 0
    delta_mb = (full_rss["peak_kb"] - empty_rss["peak_kb"]) / 1024
    return Row(
        benchmark=f"worker-memory ({idle // 1000}k idle instances)",
        ours=full_rss["peak_kb"] / 1024,
        baseline=empty_rss["peak_kb"] / 1024,
        ratio=delta_mb,
        bar="<= +20 MB",
        met=delta_mb <= 20.0,
        unit="MB peak RSS (baseline: empty store; ratio column: difference in MB)",
        detail=(
            f"current RSS {full_rss['rss_kb'] / 1024:.1f} MB vs {empty_rss['rss_kb'] / 1024:.1f} MB"
        ),
    )


# -- driver ----------------------------------------------------------------------------------


def print_table(rows: list[Row]) -> None:
    header = ("benchmark", "ours", "baseline", "ratio", "bar", "met")
    lines = [header]
    for row in rows:
        if row.benchmark.startswith("worker-memory"):
            cells = (f"{row.ours:.1f} MB", f"{row.baseline:.1f} MB", f"+{row.ratio:.1f} MB")
        else:
            cells = (f"{row.ours:.2f} ms", f"{row.baseline:.2f} ms", f"{row.ratio:.2f}x")
        lines.append((row.benchmark, *cells, row.bar, "yes" if row.met else "NO"))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    for row in rows:
        if row.detail:
            print(f"  {row.benchmark}: {row.detail}")


async def main(quick: bool) -> None:
    k = 100 if quick else 200
    idle = 100_000
    with tempfile.TemporaryDirectory(prefix="bench_worker-") as name:
        tmp = Path(name)
        rows = [await lateness_row(tmp, k), await memory_row(tmp, idle)]
    print_table(rows)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "quick": quick,
        "alarms": k,
        "idle_instances": idle,
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "rows": [attrs.asdict(row) for row in rows],
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="100 alarms instead of 200")
    parser.add_argument("--rss-child", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        print(json.dumps(asyncio.run(rss_child(args.rss_child))))
    else:
        asyncio.run(main(bool(args.quick)))
