"""What the event feed costs on the hot path: the same workloads with ``event_feed`` on and off.

Usage: ``python benchmarks/bench_feed.py [--quick] [--no-postgres]``. Prints a table and
writes ``benchmarks/results/bench_feed.json``. Every commit of a handler appends its events
to the storage feed in the same transaction (one multi-row insert); this measures that
against the same runtime with ``event_feed=False``, in the same run, interleaved round by
round (on, off, on, off…) so that disk drift hits both alike. Ratios are on/off rates,
medians over the rounds; 1.00 means free.

1. ``workflow-seq``: one caller, ``trigger_and_wait`` of a three-step workflow with a
   worker in the same process (each run: 8 events over 5 commits);
2. ``workflow-16``: 16 such callers, worker concurrency 16;
3. ``continuous-fire``: N Continuous instances due at once, fired by one worker
   (``run_until_idle``, concurrency 100): one ``job.executed`` per execution.

On SQLite (``synchronous=full`` and ``normal``) and on PostgreSQL (a throwaway server from
``tests/pg_harness.py``, ``fsync=on``, or ``DURABLE_EFFECT_PG_URL``).
"""

from __future__ import annotations

import argparse
import asyncio
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path

from _report import write_report

from durable_effect import (
    Continuous,
    ContinuousContext,
    Effect,
    Gen,
    Step,
    ValidationError,
    Workflow,
    create_durable_jobs,
)
from durable_effect._jobs import DurableJobs
from durable_effect.storage import PostgresStorage, Storage
from durable_effect.testing import TestClock
from durable_effect.workflow import WorkflowDefinition

ROOT = Path(__file__).resolve().parent.parent
T0 = datetime(2030, 1, 1, tzinfo=UTC)


@Effect.gen
def three_steps(step: Step, x: int) -> Gen[int, Exception]:
    a = yield from step.run("add", Effect.succeed(x + 1))
    b = yield from step.run("double", Effect.succeed(a * 2))
    return (yield from step.run("dec", Effect.succeed(b - 1)))


WORKFLOW: WorkflowDefinition[int, int] = Workflow.make(int, three_steps)


def increment(ctx: ContinuousContext[int]) -> Effect[None, ValidationError]:
    return ctx.update_state(lambda n: n + 1)


CONTINUOUS = Continuous.make(int, Continuous.every("1 hour"), increment, start_immediately=False)

StorageMaker = Callable[[str], Storage | str]


async def workflow_rate(jobs: DurableJobs, runs: int, callers: int) -> float:
    """Runs/s of ``callers`` callers doing ``trigger_and_wait`` (the worker is running)."""
    handle = jobs.client.workflow(WORKFLOW)
    per_caller = max(runs // callers, 1)

    async def caller(offset: int) -> None:
        for i in range(per_caller):
            x = offset * per_caller + i
            result = await Effect.run_async(handle.trigger_and_wait(x))
            assert result.unwrap() == (x + 1) * 2 - 1

    started = time.perf_counter()
    await asyncio.gather(*(caller(c) for c in range(callers)))
    return per_caller * callers / (time.perf_counter() - started)


async def fire_rate(storage: Storage | str, feed: bool, n: int) -> float:
    """Executions/s of one worker firing ``n`` due Continuous instances."""
    clock = TestClock(T0)
    jobs = create_durable_jobs({"ticks": CONTINUOUS}, storage=storage, clock=clock, event_feed=feed)
    async with jobs:
        handle = jobs.client.continuous(CONTINUOUS)
        for base in range(0, n, 500):
            await asyncio.gather(
                *(
                    Effect.run_async(handle.start(id=f"{i:06d}", input=0))
                    for i in range(base, min(n, base + 500))
                )
            )
        clock.set(T0 + timedelta(hours=1, seconds=1))
        started = time.perf_counter()
        fired = await jobs.worker(concurrency=100).run_until_idle()
        elapsed = time.perf_counter() - started
        assert fired == n, (fired, n)
    return n / elapsed


async def paired_workflows(
    make: StorageMaker, runs: int, callers: int, rounds: int
) -> tuple[list[float], list[float]]:
    """Rates with the feed on and off, ``rounds`` interleaved rounds on two open runtimes."""
    on = create_durable_jobs({"w": WORKFLOW}, storage=make("on"), event_feed=True)
    off = create_durable_jobs({"w": WORKFLOW}, storage=make("off"), event_feed=False)
    rates: dict[bool, list[float]] = {True: [], False: []}
    async with on, off:
        workers = [j.worker(concurrency=max(callers, 1), poll_interval=0.5) for j in (on, off)]
        tasks = [asyncio.ensure_future(w.run()) for w in workers]
        try:
            for jobs in (on, off):  # warm both (schema, caches, WAL)
                await workflow_rate(jobs, max(runs // 4, callers), callers)
            for r in range(rounds):
                order = (True, False) if r % 2 == 0 else (False, True)
                for feed in order:
                    rates[feed].append(await workflow_rate(on if feed else off, runs, callers))
        finally:
            for worker in workers:
                await worker.stop()
            await asyncio.gather(*tasks)
        assert await on.storage.feed_head() > 0
        assert await off.storage.feed_head() == 0
    return rates[True], rates[False]


async def paired_fire(make: StorageMaker, n: int, rounds: int) -> tuple[list[float], list[float]]:
    rates: dict[bool, list[float]] = {True: [], False: []}
    for r in range(rounds):
        order = (True, False) if r % 2 == 0 else (False, True)
        for feed in order:
            rates[feed].append(await fire_rate(make(f"fire-{r}-{feed}"), feed, n))
    return rates[True], rates[False]


def row(backend: str, name: str, on: list[float], off: list[float], unit: str) -> dict[str, object]:
    ratios = [a / b for a, b in zip(on, off, strict=True)]
    return {
        "backend": backend,
        "workload": name,
        "on": round(statistics.median(on), 1),
        "off": round(statistics.median(off), 1),
        "unit": unit,
        "ratio": round(statistics.median(ratios), 3),
        "ratios": [round(x, 3) for x in ratios],
    }


async def measure(backend: str, make: StorageMaker, quick: bool) -> list[dict[str, object]]:
    rounds = 2 if quick else 6
    runs_seq = 40 if quick else 200
    runs_16 = 160 if quick else 800
    fire_n = 500 if quick else 3000
    rows = []
    on, off = await paired_workflows(make, runs_seq, 1, rounds)
    rows.append(row(backend, "workflow-seq", on, off, "runs/s"))
    on, off = await paired_workflows(make, runs_16, 16, rounds)
    rows.append(row(backend, "workflow-16", on, off, "runs/s"))
    on, off = await paired_fire(make, fire_n, max(rounds // 2, 1))
    rows.append(row(backend, "continuous-fire", on, off, "executions/s"))
    return rows


def print_table(rows: list[dict[str, object]]) -> None:
    header = f"{'backend':<14} {'workload':<16} {'feed on':>10} {'feed off':>10}  ratio  unit"
    print(header)
    print("-" * len(header))
    for r in rows:
        print(
            f"{r['backend']!s:<14} {r['workload']!s:<16} {r['on']!s:>10} {r['off']!s:>10}"
            f"  {r['ratio']!s:<5}  {r['unit']}"
        )


async def main(quick: bool, postgres: bool) -> None:
    rows: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="bench_feed_") as tmp:
        for sync in ("full", "normal"):

            def sqlite(purpose: str, sync: str = sync) -> str:
                return (
                    f"sqlite:///{tmp}/{sync}-{purpose}-{uuid.uuid4().hex[:6]}.db?synchronous={sync}"
                )

            rows += await measure(f"sqlite-{sync}", sqlite, quick)
    server = None
    if postgres:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from tests.pg_harness import server_from_env, start_server

        server = server_from_env() or start_server()
        url = server.create_database(f"bench_feed_{uuid.uuid4().hex[:8]}")
        try:

            def pg(purpose: str) -> Storage:
                schema = f"f_{purpose.replace('-', '_')}_{uuid.uuid4().hex[:6]}".lower()
                return PostgresStorage(url, schema=schema, notify_channel=schema, max_size=20)

            rows += await measure("postgresql", pg, quick)
        finally:
            server.cleanup()
    print_table(rows)
    write_report("bench_feed", quick=quick, rows=rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller runs, two rounds")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    asyncio.run(main(args.quick, not args.no_postgres))
