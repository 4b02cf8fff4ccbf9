"""Benchmark events into runs: ``send`` → the waiting run resumes → its next step is recorded.

Usage: ``python benchmarks/bench_events.py [--quick] [--no-postgres]``. Prints a table and
writes ``benchmarks/results/bench_events.json``. On SQLite (a file, the default
``synchronous``) and PostgreSQL (the test harness's throwaway server, ``fsync=on``, or the
one ``DURABLE_EFFECT_PG_URL`` names), with a worker in the same process:

1. ``sequential``: one run waits for an event; send it, and measure until the run resumed:
   the wait's step is committed with the event (its ``step:complete``). Latency p50 and
   p99, and the rate (events per second of those latencies). Then, untimed, the next run
   is triggered and parks at its wait.
2. ``100 waiting``: the same with 100 runs waiting at once (a resumed one is replaced): the
   99 others cost nothing.
3. ``burst of 100``: one event to each of 100 waiting runs, all sent at once; the time until
   all 100 resumed (events/s) and each event's latency.
4. ``raw commit``: the baseline, measured in the same run, interleaved with the rounds above:
   one single-row upsert per transaction (sqlite3 WAL with the same ``synchronous``, or one
   psycopg connection). Our latency is also given in raw commits.

A resume costs the send's commit (the event and the run's wake-up, together), the worker's
claim of the run, the read of its inbox and the commit of the wait's step (with the run's
start). Rounds are interleaved and repeated
(``--quick``: once); every figure is the median over rounds.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import platform
import sqlite3
import statistics
import sys
import tempfile
import time
import uuid
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

import attrs

from durable_effect import Effect, Gen
from durable_effect._events import Event
from durable_effect._jobs import DurableJobs, create_durable_jobs
from durable_effect.storage import Storage
from durable_effect.workflow import Step, StepCompleted, StepStarted, Workflow, WorkflowDefinition

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_events.json"
TARGET_P99_MS = {"sqlite": 5.0, "postgres": 10.0}


@attrs.frozen(kw_only=True)
class Row:
    """One line of the table."""

    storage: str
    benchmark: str
    p50_ms: float
    p99_ms: float
    rate: float
    unit: str
    raw_commits: float  # our p50 latency in raw commits


# -- the workflow ------------------------------------------------------------------------------


def waiting_workflow() -> WorkflowDefinition[int, int]:
    """A run that waits for one event; after it, a step records it."""

    @Effect.gen
    def run(step: Step, n: int) -> Gen[int, Exception]:
        event = yield from step.wait_for_event("w")
        assert isinstance(event, int)
        return (yield from step.run("s", Effect.succeed(event)))

    return Workflow.make(int, run)


class Watch:
    """When each run parked at its wait (its ``step:start``, published with the commit that
    suspends it) and resumed (the wait's ``step:complete``: the event taken, committed)."""

    def __init__(self) -> None:
        self.parked: dict[str, asyncio.Future[float]] = {}
        self.resumed: dict[str, asyncio.Future[float]] = {}

    def _future(
        self, table: dict[str, asyncio.Future[float]], run_id: str
    ) -> asyncio.Future[float]:
        if run_id not in table:
            table[run_id] = asyncio.get_running_loop().create_future()
        return table[run_id]

    def on_event(self, event: Event) -> None:
        if isinstance(event, StepStarted) and event.step_name == "w":
            table = self.parked
        elif isinstance(event, StepCompleted) and event.step_name == "w":
            table = self.resumed
        else:
            return
        future = self._future(table, event.run_id)
        if not future.done():
            future.set_result(time.perf_counter())

    async def park(self, run_id: str) -> None:
        await self._future(self.parked, run_id)

    def resume(self, run_id: str) -> asyncio.Future[float]:
        return self._future(self.resumed, run_id)


@contextlib.asynccontextmanager
async def running(storage: str | Storage) -> Any:
    """Jobs with a worker running (in this process, as one deployment would run it)."""
    wf = waiting_workflow()
    jobs: DurableJobs = create_durable_jobs({"bench": wf}, storage=storage)
    async with jobs:
        watch = Watch()
        jobs.on("step:start", watch.on_event)
        jobs.on("step:complete", watch.on_event)
        handle = jobs.client.workflow(wf)
        worker = jobs.worker(concurrency=128, poll_interval=5.0)
        task = asyncio.ensure_future(worker.run())
        try:
            yield handle, watch
        finally:
            await worker.stop()
            await task


async def _parked(handle: Any, watch: Watch, count: int) -> list[str]:
    rids = [t.run_id for t in await handle.batch_trigger(list(range(count)))]
    await asyncio.gather(*(watch.park(rid) for rid in rids))
    return rids


async def one_at_a_time(
    storage: str | Storage, waiting: int, events: int
) -> tuple[list[float], float]:
    """Latencies (s) of ``events`` sends, one at a time, each to one of ``waiting`` waiting
    runs (a resumed run is replaced by a new waiting one, untimed)."""
    async with running(storage) as (handle, watch):
        pool = await _parked(handle, watch, waiting)
        latencies: list[float] = []
        busy = 0.0
        for k in range(events):
            rid = pool.pop(0)
            done = watch.resume(rid)
            sent = time.perf_counter()
            await handle.send(rid, k)
            latencies.append(await done - sent)
            busy += latencies[-1]
            pool.extend(await _parked(handle, watch, 1))
        return latencies, events / busy


async def burst(storage: str | Storage, runs: int) -> tuple[list[float], float]:
    """One event to each of ``runs`` waiting runs, all at once: latencies and events/s."""
    async with running(storage) as (handle, watch):
        rids = await _parked(handle, watch, runs)
        futures = [watch.resume(rid) for rid in rids]
        started = time.perf_counter()
        await asyncio.gather(*(handle.send(rid, i) for i, rid in enumerate(rids)))
        ends = await asyncio.gather(*futures)
        return [end - started for end in ends], runs / (max(ends) - started)


# -- the raw baselines -------------------------------------------------------------------------


def raw_sqlite(path: Path, count: int) -> list[float]:
    """Seconds per single-row upsert transaction (WAL, the storage's default synchronous)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute("PRAGMA synchronous = FULL")
    conn.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v BLOB)")
    value = b"v" * 100
    out = []
    for i in range(count):
        t0 = time.perf_counter()
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT OR REPLACE INTO t VALUES (?, ?)", (f"k{i % 64}", value))
        conn.execute("COMMIT")
        out.append(time.perf_counter() - t0)
    conn.close()
    return out


async def raw_postgres(url: str, count: int) -> list[float]:
    """Seconds per single-row upsert on one psycopg connection (autocommit)."""
    import psycopg

    out = []
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE IF NOT EXISTS raw_kv (k text PRIMARY KEY, v bytea)")
        for i in range(count):
            t0 = time.perf_counter()
            await conn.execute(
                "INSERT INTO raw_kv (k, v) VALUES (%s, %s) "
                "ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v",
                (f"k{i % 64}", b"v" * 100),
            )
            out.append(time.perf_counter() - t0)
    return out


# -- the backends --------------------------------------------------------------------------------


class Backend:
    """Where a round runs: fresh stores of one backend, and its raw baseline."""

    name = ""

    def fresh(self) -> str | Storage:
        raise NotImplementedError

    async def raw(self, count: int) -> list[float]:
        raise NotImplementedError

    def close(self) -> None:
        """Remove what was made."""


class SqliteBackend(Backend):
    name = "sqlite"

    def __init__(self) -> None:
        self.tmp = tempfile.TemporaryDirectory()
        self.root = Path(self.tmp.name)

    def fresh(self) -> str:
        return f"sqlite:///{self.root / uuid.uuid4().hex}.db"

    async def raw(self, count: int) -> list[float]:
        return raw_sqlite(self.root / f"raw-{uuid.uuid4().hex}.db", count)

    def close(self) -> None:
        self.tmp.cleanup()


class PostgresBackend(Backend):
    name = "postgres"

    def __init__(self) -> None:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from tests.pg_harness import server_from_env, start_server

        self.server = server_from_env() or start_server()
        self.url = self.server.create_database(f"bench_events_{uuid.uuid4().hex[:8]}")

    def fresh(self) -> Storage:
        from durable_effect.storage._postgres import PostgresStorage

        schema = f"ev_{uuid.uuid4().hex[:10]}"
        return PostgresStorage(self.url, schema=schema, notify_channel=schema)

    async def raw(self, count: int) -> list[float]:
        return await raw_postgres(self.url, count)

    def close(self) -> None:
        self.server.cleanup()


# -- main ----------------------------------------------------------------------------------------


def _pct(values: list[float], q: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(q * (len(ordered) - 1)))]


def _rounds(repeats: int) -> Iterator[int]:
    yield from range(repeats)


async def measure(backend: Backend, sizes: dict[str, int], repeats: int) -> list[Row]:
    raw_ms: list[float] = []
    results: dict[str, list[tuple[list[float], float]]] = {"seq": [], "w100": [], "burst": []}
    cases: dict[str, Callable[[], Any]] = {
        "seq": lambda: one_at_a_time(backend.fresh(), 1, sizes["events"]),
        "w100": lambda: one_at_a_time(backend.fresh(), 100, sizes["events"]),
        "burst": lambda: burst(backend.fresh(), 100),
    }
    for _ in _rounds(repeats):
        for name, case in cases.items():  # interleaved: raw, then each case, every round
            raw_ms.append(statistics.median(await backend.raw(sizes["raw"])) * 1000)
            results[name].append(await case())
    raw = statistics.median(raw_ms)
    labels = {
        "seq": "sequential (1 waiting)",
        "w100": "one at a time, 100 waiting",
        "burst": "burst of 100",
    }
    rows = []
    for name, runs in results.items():
        p50 = statistics.median(_pct(lat, 0.50) for lat, _ in runs) * 1000
        p99 = statistics.median(_pct(lat, 0.99) for lat, _ in runs) * 1000
        rate = statistics.median(r for _, r in runs)
        rows.append(
            Row(
                storage=backend.name,
                benchmark=labels[name],
                p50_ms=p50,
                p99_ms=p99,
                rate=rate,
                unit="event/s",
                raw_commits=p50 / raw,
            )
        )
    rows.append(
        Row(
            storage=backend.name,
            benchmark="raw commit (baseline)",
            p50_ms=raw,
            p99_ms=float("nan"),
            rate=1000 / raw,
            unit="commit/s",
            raw_commits=1.0,
        )
    )
    return rows


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--no-postgres", action="store_true", help="SQLite only")
    args = parser.parse_args()
    sizes = {"events": 40, "raw": 50} if args.quick else {"events": 300, "raw": 300}
    repeats = 1 if args.quick else 3
    load = os.getloadavg()
    rows: list[Row] = []
    backends: list[Callable[[], Backend]] = [SqliteBackend]
    if not args.no_postgres:
        backends.append(PostgresBackend)
    for make in backends:
        backend = make()
        try:
            rows.extend(asyncio.run(measure(backend, sizes, repeats)))
        finally:
            backend.close()
    print(
        f"load average before: {load[0]:.2f} {load[1]:.2f} {load[2]:.2f}; after: "
        f"{' '.join(f'{x:.2f}' for x in os.getloadavg())}"
    )
    print(
        f"{'storage':9} {'benchmark':30} {'p50 ms':>8} {'p99 ms':>8} {'rate':>9}  "
        "unit      raw commits (p50)"
    )
    for r in rows:
        print(
            f"{r.storage:9} {r.benchmark:30} {r.p50_ms:8.2f} {r.p99_ms:8.2f} {r.rate:9.0f}  "
            f"{r.unit:9} {r.raw_commits:.1f}"
        )
    for storage, target in TARGET_P99_MS.items():
        seq = [r for r in rows if r.storage == storage and r.benchmark.startswith("sequential")]
        if seq:
            met = "met" if seq[0].p99_ms <= target else "NOT met"
            print(
                f"{storage}: sequential p99 {seq[0].p99_ms:.2f} ms (target <= {target} ms: {met})"
            )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                    "load_before": load,
                    "load_after": os.getloadavg(),
                },
                "sizes": sizes,
                "repeats": repeats,
                "rows": [attrs.asdict(r) for r in rows],
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
