"""Benchmark the queries over many retained runs, what the indexes cost, and the retention sweep.

Usage: ``python benchmarks/bench_queries.py [--quick] [--before PYTHON] [--no-postgres]
[--no-retention]``. Prints tables and writes ``benchmarks/results/bench_queries.json``.

1. **Queries** over N retained runs of one workflow (SQLite: 1,000 / 100,000 / 1,000,000;
   PostgreSQL: 1,000 / 100,000; ``--quick``: 1,000 / 20,000 and 1,000) — 90 % completed, 8 %
   failed, 2 % pending, labelled ``tenant`` (100 values) and ``tier`` (gold 10 %):

   * ``first page`` — ``list_runs(limit=50)``;
   * ``nothing`` — a status filter matching nothing, ``list_runs(status="cancelled")``;
   * ``label`` — ``list_runs(labels={"tier": "gold"}, limit=50)`` (10 % of the runs);
   * ``two labels`` — ``{"tier": "gold", "tenant": "t10"}`` (1 %: the rarest pair is read;
     informational, no bar: it costs the runs carrying the rarest pair until the page is
     full, so it grows from 1k, where there are 10 such runs, until there are 50);
   * ``deep page`` — 50 runs at 90 % depth: by cursor (``after=``), or by ``offset`` with
     the code from before cursors existed;
   * ``count`` — ``count_runs()`` (before: the runs listed and counted, which is what one had).

   Each is the median of repeated calls (one call for the slow ones from before). The bar
   is per query: time at 100k / time at 1k ≤ 1.5, at 1M / at 1k ≤ 2. ``COUNT(*)`` over the
   status index at the largest N is measured too (why counts are kept in the commits).

   Datasets are bulk-loaded through the storage port: the records a trigger and an
   execution would write, for 5,000 runs per ``acquire``/``commit``, with their index
   entries (computed by the same indexer the runtime uses). On PostgreSQL the tables are
   then analyzed (`analyze`), for both codes.

2. **Trigger + complete throughput** with indexes against the code before them (``--before
   PYTHON``: a Python whose ``durable_effect`` is the previous release, e.g. a second
   worktree at the base commit with its own venv), in the same run, alternated: runs of
   three trivial steps, ``trigger_and_wait`` with a worker in the process, 1 caller and 16,
   on SQLite (FULL) and PostgreSQL. 5 rounds each, alternated: best and median rate, and
   the median CPU milliseconds per run (less sensitive to other processes' fsyncs than the
   rate). Bar: ours ≥ 0.90 of before.

3. **Retention**: 100,000 runs past their retention (``--quick``: 10,000) purged by the
   sweep while a worker fires a Continuous job every 20 ms: the alarm lateness (execute
   start - scheduled tick) p50/p99 while idle (10 s) and while purging. Bar: p99 during the purge
   <= 2x idle p99.

Each measurement runs in a subprocess of its own (``--role``), so old and new code never
meet in one interpreter. Sizes and the machine's load matter: compare ratios, not absolutes.
"""

from __future__ import annotations

import argparse
import asyncio
import importlib
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
import uuid
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import msgspec

from durable_effect import (
    Continuous,
    ContinuousContext,
    ContinuousDefinition,
    Effect,
    Gen,
    create_durable_jobs,
)
from durable_effect._jobs import DurableJobs
from durable_effect.storage import InstanceWrite, SqliteStorage, Storage
from durable_effect.workflow import RunStatus, Step, Workflow, WorkflowDefinition

ROOT = Path(__file__).resolve().parent.parent
RESULTS = ROOT / "benchmarks" / "results" / "bench_queries.json"
LOAD_BATCH = 5000
NAME = "bench"
TENANTS = 100


# -- the workflow and its data ------------------------------------------------------------------


@Effect.gen
def three_steps(step: Step, x: int) -> Gen[int, Exception]:
    a = yield from step.run("add", Effect.succeed(x + 1))
    b = yield from step.run("double", Effect.succeed(a * 2))
    return (yield from step.run("dec", Effect.succeed(b - 1)))


WORKFLOW: WorkflowDefinition[int, int] = Workflow.make(int, three_steps)
RETAINED: WorkflowDefinition[int, int] = Workflow.make(int, three_steps, retain="1 hour")
NEW_CODE = hasattr(WORKFLOW, "indexer")  # the code under test has indexes (or is from before)


def _stored() -> Any:
    """The module of the stored run records: ``_records`` now, ``_runs`` in the release
    measured as "before" (the names used here are the same in both)."""
    try:
        return importlib.import_module("durable_effect.workflow._records")
    except ImportError:
        return importlib.import_module("durable_effect.workflow._runs")


RECORDS = _stored()
META_CODEC = RECORDS.META.codec if hasattr(RECORDS, "META") else RECORDS.META_CODEC
META_KEY = "meta"


def status_of(n: int) -> RunStatus:
    if n % 50 == 7:
        return "pending"
    return "failed" if n % 25 == 3 else "completed"


def run_write(n: int, base: datetime, *, finished_at: datetime | None = None) -> InstanceWrite:
    """Run ``n``'s records as a trigger and an execution write them (and its entries)."""
    created = base + timedelta(milliseconds=n)
    run_id = f"{int(created.timestamp() * 1000):013d}-{n % 4096:06x}{uuid.uuid4().hex[:10]}"
    status = status_of(n) if finished_at is None else "completed"
    done = finished_at or created
    meta = RECORDS.RunMeta(
        status=status,
        created_at=created,
        labels={"tenant": f"t{n % TENANTS}", "tier": "gold" if n % 10 == 0 else "free"},
        attempt=0 if status == "pending" else 1,
        started_at=None if status == "pending" else created,
        completed_at=None if status == "pending" else done,
        error="Boom: no" if status == "failed" else None,
        current_step=None if status == "pending" else "dec",
    )
    puts = {META_KEY: META_CODEC.encode(meta), RECORDS.INPUT_KEY: b"%d" % n}
    if status == "completed":
        puts[RECORDS.OUTPUT_KEY] = b"%d" % (2 * n + 1)
    iid = RECORDS.run_ref(NAME, run_id).instance_id
    extra: dict[str, Any] = {}
    if NEW_CODE:
        definition = RETAINED if finished_at is not None else WORKFLOW
        extra["index"] = definition.indexer(NAME).of_meta(meta)
    return InstanceWrite(instance_id=iid, puts=puts, **extra)


async def bulk_load(
    storage: Storage, count: int, *, finished_at: datetime | None = None, batch: int = LOAD_BATCH
) -> float:
    """Write ``count`` runs through the port, ``batch`` per transaction; seconds taken."""
    began = time.perf_counter()
    base = datetime(2026, 1, 1, tzinfo=UTC)
    now = datetime.now(UTC)
    for start in range(0, count, batch):
        writes = [
            run_write(n, base, finished_at=finished_at)
            for n in range(start, min(count, start + batch))
        ]
        got = await storage.acquire(
            [w.instance_id for w in writes], owner="loader", now=now, ttl=timedelta(minutes=5)
        )
        assert got is not None
        await storage.commit(got.leases, writes)
    return time.perf_counter() - began


# -- role: queries ------------------------------------------------------------------------------


async def timed(call: Callable[[], Awaitable[object]], reps: int) -> float:
    """Median milliseconds of ``reps`` calls (after one warm-up call when reps > 1)."""
    if reps > 1:
        await call()
    samples = []
    for _ in range(reps):
        began = time.perf_counter()
        await call()
        samples.append((time.perf_counter() - began) * 1000)
    return statistics.median(samples)


async def measure_queries(url: str, count: int, reps: int, backend: str) -> dict[str, Any]:
    async with create_durable_jobs({NAME: WORKFLOW}, storage=url) as jobs:
        if NEW_CODE:
            await jobs.engine.indexes.ensure_all()
        load_s = await bulk_load(jobs.storage, count)
        if backend == "postgres":
            await analyze(jobs.storage)
        h = jobs.client.workflow(WORKFLOW)
        slow = 1 if (not NEW_CODE and count > 10_000) else reps
        out: dict[str, Any] = {"runs": count, "load_s": round(load_s, 1), "new": NEW_CODE}
        out["first page"] = await timed(lambda: h.list_runs(limit=50), reps)
        out["nothing"] = await timed(lambda: h.list_runs(status="cancelled", limit=50), slow)
        out["label"] = await timed(lambda: h.list_runs(labels={"tier": "gold"}, limit=50), slow)
        two = {"tier": "gold", "tenant": "t10"}
        out["two labels"] = await timed(lambda: h.list_runs(labels=two, limit=50), slow)
        depth = int(count * 0.9)
        if NEW_CODE:
            from durable_effect.jobs._pager import encode_cursor

            ids = await jobs.storage.list_instances(f"workflow:{NAME}:", limit=count - depth)
            cursor = encode_cursor("r", ("", ids[-1]))
            out["deep page"] = await timed(lambda: h.list_runs(limit=50, after=cursor), reps)
            out["count"] = await timed(h.count_runs, reps)
            out["COUNT(*)"] = await raw_count(jobs, backend)
        else:
            out["deep page"] = await timed(lambda: h.list_runs(limit=50, offset=depth), slow)
            if count <= 100_000:
                out["count"] = await timed(lambda: h.list_runs(limit=count + 1), 1)
        return out


async def analyze(storage: Storage) -> None:
    """``ANALYZE`` the tables, as autovacuum does soon after a table grows: right after a
    bulk load the planner has no statistics, and ``load`` of 50 ids then takes a plan that
    reads the whole records table (measured: 42 ms at 100,000 runs, 0.9 ms analyzed)."""
    import psycopg

    pg: Any = storage
    async with await psycopg.AsyncConnection.connect(pg.url, autocommit=True) as conn:
        for table in ("records", "index_entries", "index_counts", "alarms"):
            await conn.execute(f"ANALYZE {pg.schema}.{table}")


async def raw_count(jobs: DurableJobs, backend: str) -> float:
    """Milliseconds of ``COUNT(*)`` over the status index (what kept counts save)."""
    name = f"wf:{NAME}:s:completed"
    began = time.perf_counter()
    if backend == "sqlite":
        assert isinstance(jobs.storage, SqliteStorage)
        with sqlite3.connect(jobs.storage.path) as conn:
            conn.execute("SELECT count(*) FROM index_entries WHERE name = ?", (name,)).fetchone()
    else:
        import psycopg

        storage: Any = jobs.storage
        async with await psycopg.AsyncConnection.connect(storage.url, autocommit=True) as conn:
            await conn.execute(
                f"SELECT count(*) FROM {storage.schema}.index_entries WHERE name = %s", (name,)
            )
    return (time.perf_counter() - began) * 1000


# -- role: throughput ---------------------------------------------------------------------------


async def measure_throughput(url: str, runs: int, callers: int) -> dict[str, Any]:
    async with create_durable_jobs({NAME: WORKFLOW}, storage=url) as jobs:
        worker = jobs.worker(concurrency=max(callers, 1))
        task = asyncio.ensure_future(worker.run())
        h = jobs.client.workflow(WORKFLOW)
        await h.trigger_and_wait(0, timeout="30 s")  # warm up (and build the indexes)
        began, cpu = time.perf_counter(), time.process_time()

        async def caller(offset: int) -> None:
            for i in range(offset, runs, callers):
                await h.trigger_and_wait(i, timeout="60 s")

        await asyncio.gather(*(caller(c) for c in range(callers)))
        rate = runs / (time.perf_counter() - began)
        cpu_ms = (time.process_time() - cpu) * 1000 / runs
        await worker.stop()
        await task
        return {"rate": rate, "cpu_ms_per_run": cpu_ms, "new": NEW_CODE}


# -- role: retention ----------------------------------------------------------------------------


class Beats(msgspec.Struct):
    """The ticker's state."""

    n: int


def ticker_job(lateness: list[float]) -> ContinuousDefinition[Beats]:
    """A Continuous job every 20 ms recording how late each execution starts (ms)."""

    def beat(ctx: ContinuousContext[Beats]) -> Effect[None, Any]:
        lateness.append((datetime.now(UTC) - ctx.scheduled_at).total_seconds() * 1000)
        return Effect.succeed(None)

    return Continuous.make(Beats, Continuous.every("20 ms"), beat)


async def measure_retention(url: str, count: int, idle_s: float) -> dict[str, Any]:
    lateness: list[float] = []
    ticker = ticker_job(lateness)
    async with create_durable_jobs({NAME: RETAINED, "tick": ticker}, storage=url) as jobs:
        storage = jobs.storage
        sweep = f"jobmeta:{NAME}:workflow"
        if NEW_CODE:
            await jobs.engine.indexes.ensure_all()
            await set_alarm(storage, sweep, datetime.now(UTC) + timedelta(days=1))
        old = datetime.now(UTC) - timedelta(hours=2)
        load_s = await bulk_load(storage, count, finished_at=old)
        if not NEW_CODE:  # before: one purge alarm per finished run, as old releases set
            ids = await storage.list_instances(f"workflow:{NAME}:")
            for start in range(0, len(ids), LOAD_BATCH):
                chunk = ids[start : start + LOAD_BATCH]
                got = await storage.acquire(
                    chunk, owner="l", now=datetime.now(UTC), ttl=timedelta(minutes=5)
                )
                assert got is not None
                far = datetime.now(UTC) + timedelta(days=1)
                await storage.commit(
                    got.leases, [InstanceWrite(instance_id=i, alarm=far) for i in chunk]
                )
        await jobs.client.continuous(ticker).start(id="t", input=Beats(n=0))
        worker = jobs.worker(concurrency=10)
        task = asyncio.ensure_future(worker.run())
        await asyncio.sleep(idle_s)
        idle = list(lateness)
        lateness.clear()
        began = time.perf_counter()
        if NEW_CODE:
            await set_alarm(storage, sweep, datetime.now(UTC))
        else:
            ids = await storage.list_instances(f"workflow:{NAME}:")
            for start in range(0, len(ids), LOAD_BATCH):
                chunk = ids[start : start + LOAD_BATCH]
                got = await storage.acquire(
                    chunk, owner="l", now=datetime.now(UTC), ttl=timedelta(minutes=5)
                )
                assert got is not None
                due = datetime.now(UTC)
                await storage.commit(
                    got.leases, [InstanceWrite(instance_id=i, alarm=due) for i in chunk]
                )
        while await storage.list_instances(f"workflow:{NAME}:", limit=1):
            await asyncio.sleep(0.05)
            if time.perf_counter() - began > 600:
                break
        purge_s = time.perf_counter() - began
        during = list(lateness)
        await worker.stop()
        await task
    return {
        "runs": count,
        "load_s": round(load_s, 1),
        "purge_s": round(purge_s, 2),
        "idle": summary(idle),
        "purging": summary(during),
        "new": NEW_CODE,
    }


async def set_alarm(storage: Storage, instance_id: str, at: datetime) -> None:
    got = await storage.acquire(
        [instance_id], owner="bench", now=datetime.now(UTC), ttl=timedelta(seconds=30)
    )
    assert got is not None
    await storage.commit(got.leases, [InstanceWrite(instance_id=instance_id, alarm=at)])


def summary(samples: list[float]) -> dict[str, float]:
    if not samples:
        return {"n": 0, "p50": float("nan"), "p99": float("nan"), "max": float("nan")}
    ordered = sorted(samples)
    return {
        "n": len(ordered),
        "p50": ordered[len(ordered) // 2],
        "p99": ordered[min(len(ordered) - 1, int(len(ordered) * 0.99))],
        "max": ordered[-1],
    }


# -- the driver ---------------------------------------------------------------------------------


@attrs.frozen
class Pg:
    """The harness's throwaway server and fresh databases."""

    server: Any

    @classmethod
    def start(cls) -> Pg:
        sys.path.insert(0, str(ROOT))
        from tests.pg_harness import server_from_env, start_server

        return cls(server=server_from_env() or start_server())

    def database(self, purpose: str) -> str:
        return str(self.server.create_database(f"bq_{purpose}_{uuid.uuid4().hex[:8]}"))

    def close(self) -> None:
        self.server.cleanup()


def child(python: str, role: str, **options: object) -> dict[str, Any]:
    """Run one measurement in a subprocess of ``python``; its JSON result."""
    command = [python, str(Path(__file__).resolve()), "--role", role]
    for key, value in options.items():
        command += [f"--{key.replace('_', '-')}", str(value)]
    done = subprocess.run(
        command, capture_output=True, text=True, check=False, cwd=tempfile.gettempdir()
    )
    if done.returncode != 0:
        raise RuntimeError(f"{role} failed ({python}):\n{done.stderr[-3000:]}")
    result: dict[str, Any] = json.loads(done.stdout.strip().splitlines()[-1])
    return result


def ratio_rows(results: list[dict[str, Any]], queries: list[str]) -> list[str]:
    lines = []
    base = results[0]
    for r in results[1:]:
        bar = 1.5 if r["runs"] <= 100_000 else 2.0
        parts = []
        for q in queries:
            if q in r and q in base:
                ratio = r[q] / base[q] if base[q] else float("nan")
                parts.append(
                    f"{q} {ratio:.2f}x{'' if ratio <= bar else ' (over ' + str(bar) + ')'}"
                )
        lines.append(f"  {r['runs']:>9,}/{base['runs']:,}: " + ", ".join(parts))
    return lines


def main() -> None:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument("--before", metavar="PYTHON", help="a Python with the previous release")
    parser.add_argument("--no-postgres", action="store_true")
    parser.add_argument("--no-retention", action="store_true")
    parser.add_argument("--role", help=argparse.SUPPRESS)
    parser.add_argument("--url", help=argparse.SUPPRESS)
    parser.add_argument("--runs", type=int, help=argparse.SUPPRESS)
    parser.add_argument("--reps", type=int, default=15, help=argparse.SUPPRESS)
    parser.add_argument("--backend", default="sqlite", help=argparse.SUPPRESS)
    parser.add_argument("--callers", type=int, default=1, help=argparse.SUPPRESS)
    parser.add_argument("--idle", type=float, default=5.0, help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.role == "queries":
        print(
            json.dumps(asyncio.run(measure_queries(args.url, args.runs, args.reps, args.backend)))
        )
        return
    if args.role == "throughput":
        print(json.dumps(asyncio.run(measure_throughput(args.url, args.runs, args.callers))))
        return
    if args.role == "retention":
        print(json.dumps(asyncio.run(measure_retention(args.url, args.runs, args.idle))))
        return
    run_all(args)


def run_all(args: argparse.Namespace) -> None:
    quick = args.quick
    me = sys.executable
    codes = [("new", me)] + ([("before", args.before)] if args.before else [])
    sqlite_sizes = [1000, 20_000] if quick else [1000, 100_000, 1_000_000]
    pg_sizes = [1000] if quick else [1000, 100_000]
    reps = 5 if quick else 15
    queries = ["first page", "nothing", "label", "deep page", "count"]
    report: dict[str, Any] = {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
            "load": os.getloadavg(),
        },
        "queries": {},
        "throughput": [],
        "retention": [],
    }
    pg = None if args.no_postgres else Pg.start()
    try:
        with tempfile.TemporaryDirectory() as tmp:
            for backend, sizes in (("sqlite", sqlite_sizes), ("postgres", pg_sizes)):
                if backend == "postgres" and pg is None:
                    continue
                for code, python in codes:
                    results = []
                    for count in sizes:
                        if code == "before" and count > 100_000 and quick:
                            continue
                        if backend == "sqlite":
                            url = f"sqlite:///{tmp}/q-{code}-{count}.db?synchronous=normal"
                        else:
                            assert pg is not None
                            url = pg.database(f"{code}{count}")
                        got = child(
                            python, "queries", url=url, runs=count, reps=reps, backend=backend
                        )
                        results.append(got)
                        print(
                            f"{backend:8} {code:6} {count:>9,} "
                            + "  ".join(
                                f"{q} {got[q]:.2f}"
                                for q in [*queries, "two labels", "COUNT(*)"]
                                if q in got
                            )
                            + f"  (load {got['load_s']} s)",
                            flush=True,
                        )
                    report["queries"][f"{backend}/{code}"] = results
                    for line in ratio_rows(results, queries):
                        print(line, flush=True)
            throughput_runs = 100 if quick else 600
            rounds = 1 if quick else 5
            for backend in ("sqlite", "postgres"):
                if backend == "postgres" and pg is None:
                    continue
                for callers in (1, 16):
                    rates: dict[str, list[float]] = {}
                    cpus: dict[str, list[float]] = {}
                    for round_ in range(rounds):
                        for code, python in codes:  # alternated, round after round
                            if backend == "sqlite":
                                url = f"sqlite:///{tmp}/t-{code}-{callers}-{round_}.db"
                            else:
                                assert pg is not None
                                url = pg.database(f"t{code}{callers}{round_}")
                            got = child(
                                python, "throughput", url=url, runs=throughput_runs, callers=callers
                            )
                            rates.setdefault(code, []).append(got["rate"])
                            cpus.setdefault(code, []).append(got["cpu_ms_per_run"])
                    row: dict[str, Any] = {"backend": backend, "callers": callers}
                    for code, samples in rates.items():
                        row[code] = max(samples)
                        row[f"{code} median"] = statistics.median(samples)
                        row[f"{code} cpu ms/run"] = statistics.median(cpus[code])
                    if "before" in rates:
                        row["ratio"] = row["new"] / row["before"]
                        row["median ratio"] = row["new median"] / row["before median"]
                        row["cpu ratio"] = row["new cpu ms/run"] / row["before cpu ms/run"]
                    report["throughput"].append(row)
                    print(
                        f"throughput {backend:8} callers {callers:2}: "
                        + ", ".join(
                            f"{k} {v:.2f}"
                            for k, v in row.items()
                            if k not in ("backend", "callers")
                        ),
                        flush=True,
                    )
            if not args.no_retention:
                count = 10_000 if quick else 100_000
                for code, python in codes:
                    if code == "before" and not quick:
                        continue  # one alarm per run: too slow to wait for at this size
                    url = f"sqlite:///{tmp}/r-{code}.db"
                    got = child(
                        python, "retention", url=url, runs=count, idle=2.0 if quick else 10.0
                    )
                    got["code"] = code
                    report["retention"].append(got)
                    print(f"retention {code}: {json.dumps(got)}", flush=True)
    finally:
        if pg is not None:
            pg.close()
    report["machine"]["load_end"] = os.getloadavg()
    print(f"load average at start {report['machine']['load']}, at the end {os.getloadavg()}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
