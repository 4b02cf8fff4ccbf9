"""Benchmark workflows (three trivial steps per run) on SQLite, against DBOS and raw sqlite3.

Usage: ``python benchmarks/bench_workflows.py [--quick] [--breakdown]``. Prints a table and
writes ``benchmarks/results/bench_workflows.json``. Measured in the same run, on the same disk:

1. ``sequential``: one caller, one run at a time, end to end — ``trigger_and_wait`` with a
   worker running in the same process (trigger commit, claim, lease, three step checkpoints,
   the end) — on SQLite with ``synchronous=FULL`` and ``NORMAL``;
2. ``concurrent-16``: 16 callers each doing ``trigger_and_wait`` in a loop, worker
   concurrency 16;
3. ``raw sqlite3``: single-row upserts, one row per transaction, WAL, the same
   ``synchronous`` (the disk's commit rate: what one durable checkpoint costs at best);
4. ``durably`` (optional): the same workflow on Durably (Node, ``@coji/durably`` with
   better-sqlite3 in WAL mode and the same ``synchronous``), sequential and 16 concurrent
   callers of ``triggerAndWait``, each measurement in a fresh ``node`` process
   (``benchmarks/durably/bench.mjs``; ``cd benchmarks/durably && npm install`` first). When
   Node or the package is missing, the rows say so and the rest runs;
5. ``dbos``: the same workflow with DBOS (``@DBOS.workflow`` over three ``@DBOS.step``\\ s) on
   its SQLite system database: sequential calls, and 16 concurrent async workflows. DBOS
   is imported lazily; if it is missing or cannot run here, the reason is reported.

``--breakdown`` prints instead what one sequential run costs: the SQL statements executed
(counted at the driver boundary: ``sqlite3``'s trace callback on both connections of the
storage, triggers' statements apart) and the event-loop callbacks run (a counting
``Handle._run`` installed by this script only), per run and by statement.

Each DBOS measurement runs in a fresh subprocess (DBOS is a process-wide singleton). Every
rate is the best of three measurements (``--quick``: one), for ours and DBOS alike. DBOS's
SQLite system database uses SQLite's defaults (rollback journal, ``synchronous=FULL``): the
durability of our FULL rows.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import math
import os
import platform
import re
import shutil
import sqlite3
import subprocess
import sys
import tempfile
import textwrap
import time
from datetime import timedelta
from pathlib import Path
from typing import Any, Literal

import attrs

from durable_effect import Effect, Gen
from durable_effect._jobs import create_durable_jobs
from durable_effect.workflow import Step, Workflow, WorkflowDefinition

Sync = Literal["full", "normal"]
RESULTS = Path(__file__).resolve().parent / "results" / "bench_workflows.json"
TARGET_VS_DBOS = 4.0
TARGET_VS_DURABLY = 2.0
DURABLY_DIR = Path(__file__).resolve().parent / "durably"


@attrs.frozen(kw_only=True)
class Row:
    """One line of the table (rates in runs/s, or commits/s for raw sqlite3)."""

    benchmark: str
    sync: str
    rate: float
    unit: str
    detail: str = ""


# -- the workflow -----------------------------------------------------------------------------


@Effect.gen
def three_steps(step: Step, x: int) -> Gen[int, Exception]:
    a = yield from step.run("add", Effect.succeed(x + 1))
    b = yield from step.run("double", Effect.succeed(a * 2))
    return (yield from step.run("dec", Effect.succeed(b - 1)))


WORKFLOW: WorkflowDefinition[int, int] = Workflow.make(int, three_steps)


async def ours(path: Path, sync: Sync, runs: int, callers: int) -> float:
    """Runs/s of ``callers`` concurrent callers doing ``trigger_and_wait`` in a loop."""
    url = f"sqlite:///{path}?synchronous={sync}"
    async with create_durable_jobs(
        {"bench": WORKFLOW}, storage=url, lease_ttl=timedelta(seconds=30)
    ) as jobs:
        handle = jobs.client.workflow(WORKFLOW)
        worker = jobs.worker(concurrency=max(callers, 1), poll_interval=0.5)
        task = asyncio.ensure_future(worker.run())
        try:
            await handle.trigger_and_wait(0)  # warm up (schema, caches)
            per_caller = runs // callers

            async def caller(offset: int) -> None:
                for i in range(per_caller):
                    x = offset * per_caller + i
                    assert await handle.trigger_and_wait(x) == (x + 1) * 2 - 1

            started = time.perf_counter()
            await asyncio.gather(*(caller(c) for c in range(callers)))
            elapsed = time.perf_counter() - started
        finally:
            await worker.stop()
            await task
    return per_caller * callers / elapsed


def raw_commits(path: Path, sync: Sync, count: int) -> float:
    """Commits/s of single-row upserts, one per transaction (WAL, same synchronous)."""
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {sync.upper()}")
    conn.execute("CREATE TABLE IF NOT EXISTS t (k TEXT PRIMARY KEY, v BLOB)")
    value = b"v" * 100
    started = time.perf_counter()
    for i in range(count):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute("INSERT OR REPLACE INTO t VALUES (?, ?)", (f"k{i % 64}", value))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - started
    conn.close()
    return count / elapsed


# -- --breakdown: statements and callbacks per run ------------------------------------------


@attrs.frozen(kw_only=True)
class Breakdown:
    """What ``runs`` sequential runs cost, per run."""

    runs: int
    statements: float
    rows: float
    callbacks: float
    transactions: float
    by_statement: dict[str, float]
    last_run: list[str]


_LITERAL = re.compile(r"x'[0-9a-fA-F]*'|'(?:[^']|'')*'|\b\d+\b")


def _normalised(sql: str) -> str:
    """One statement's text on one line, literals as ``?`` (pragma values)."""
    return _LITERAL.sub("?", " ".join(sql.split()))[:100]


class _Counter:
    """What the counting connections saw while ``on``."""

    def __init__(self) -> None:
        self.on = False
        self.statements: dict[str, int] = {}
        self.rows = 0
        self.sequence: list[str] | None = None

    def saw(self, sql: str, rows: int) -> None:
        if not self.on:
            return
        text = _normalised(sql)
        self.statements[text] = self.statements.get(text, 0) + 1
        self.rows += rows
        if self.sequence is not None:
            self.sequence.append(text if rows == 1 else f"{text}  [x{rows}]")


def _counting_factory(counter: _Counter) -> type[sqlite3.Connection]:
    class Counting(sqlite3.Connection):
        """A connection counting each ``execute``/``executemany`` call: the driver boundary."""

        def execute(self, sql: str, parameters: Any = (), /) -> sqlite3.Cursor:
            counter.saw(sql, 1)
            return super().execute(sql, parameters)

        def executemany(self, sql: str, parameters: Any, /) -> sqlite3.Cursor:
            rows = list(parameters)
            counter.saw(sql, len(rows))
            return super().executemany(sql, rows)

    return Counting


def _callback_name(handle: asyncio.events.Handle) -> str:
    """What a loop callback runs: a task's coroutine, or the function's name."""
    callback = getattr(handle, "_callback", None)
    owner = getattr(callback, "__self__", None)
    if isinstance(owner, asyncio.Task):
        return f"task step {owner.get_coro().__qualname__}"  # type: ignore[union-attr]
    return getattr(callback, "__qualname__", repr(callback))


async def breakdown(path: Path, sync: Sync, runs: int) -> Breakdown:
    """Statements and loop callbacks of ``runs`` sequential ``trigger_and_wait`` calls.

    Statements are counted at the driver boundary — every ``execute``/``executemany`` call
    on the storage's connections (an ``executemany`` counts once; ``rows`` counts its rows),
    through a connection factory this benchmark installs — and callbacks by a counting
    ``Handle._run``; neither costs the library anything outside this benchmark.
    """
    from durable_effect.storage._sqlite import SqliteStorage

    counter = _Counter()
    factory = _counting_factory(counter)
    connect = sqlite3.connect

    def counted_connect(*args: Any, **kwargs: Any) -> sqlite3.Connection:
        return connect(*args, **kwargs, factory=factory)

    callbacks = 0
    original_run = asyncio.events.Handle._run

    def counted_run(handle: asyncio.events.Handle) -> None:
        nonlocal callbacks
        if counter.on:
            callbacks += 1
            if counter.sequence is not None:
                counter.sequence.append(f"callback {_callback_name(handle)}")
        original_run(handle)

    url = f"sqlite:///{path}?synchronous={sync}"
    sqlite3.connect = counted_connect  # type: ignore[assignment]
    try:
        async with create_durable_jobs(
            {"bench": WORKFLOW}, storage=url, lease_ttl=timedelta(seconds=30)
        ) as jobs:
            handle = jobs.client.workflow(WORKFLOW)
            worker = jobs.worker(concurrency=1, poll_interval=0.5)
            task = asyncio.ensure_future(worker.run())
            storage = jobs.storage
            assert isinstance(storage, SqliteStorage)
            asyncio.events.Handle._run = counted_run  # type: ignore[method-assign,assignment]
            try:
                await handle.trigger_and_wait(0)  # warm up: the schema, caches, connections
                before = storage.transactions_committed
                counter.on = True
                for i in range(runs):
                    if i == runs - 1:
                        counter.sequence = []
                    assert await handle.trigger_and_wait(i) == (i + 1) * 2 - 1
                counter.on = False
                transactions = storage.transactions_committed - before
            finally:
                counter.on = False
                asyncio.events.Handle._run = original_run  # type: ignore[method-assign]
                await worker.stop()
                await task
    finally:
        sqlite3.connect = connect
    return Breakdown(
        runs=runs,
        statements=sum(counter.statements.values()) / runs,
        rows=counter.rows / runs,
        callbacks=callbacks / runs,
        transactions=transactions / runs,
        by_statement={
            k: v / runs
            for k, v in sorted(counter.statements.items(), key=lambda kv: (-kv[1], kv[0]))
        },
        last_run=counter.sequence or [],
    )


def print_breakdown(sync: Sync, found: Breakdown, *, verbose: bool) -> None:
    print(
        f"synchronous={sync}: per 3-step run (mean of {found.runs}): "
        f"{found.statements:.1f} SQL statements ({found.rows:.1f} rows), "
        f"{found.transactions:.1f} write transactions, {found.callbacks:.1f} loop callbacks"
    )
    for sql, count in found.by_statement.items():
        print(f"  {count:5.2f}  {sql}")
    if verbose:
        print("  the last run, in order:")
        for sql in found.last_run:
            print(f"    {sql}")


# -- DBOS (in a subprocess) -------------------------------------------------------------------

_DBOS_SCRIPT = textwrap.dedent(
    """
    import asyncio, json, logging, sys, time
    logging.disable(logging.INFO)
    from dbos import DBOS

    db, runs, callers = sys.argv[1], int(sys.argv[2]), int(sys.argv[3])
    DBOS(config={"name": "bench", "system_database_url": f"sqlite:///{db}",
                 "run_admin_server": False})

    @DBOS.step()
    def add(x): return x + 1
    @DBOS.step()
    def double(x): return x * 2
    @DBOS.step()
    def dec(x): return x - 1
    @DBOS.workflow()
    def wf(x): return dec(double(add(x)))

    @DBOS.step()
    async def a_add(x): return x + 1
    @DBOS.step()
    async def a_double(x): return x * 2
    @DBOS.step()
    async def a_dec(x): return x - 1
    @DBOS.workflow()
    async def awf(x): return await a_dec(await a_double(await a_add(x)))

    DBOS.launch()
    wf(0)
    if callers == 1:
        started = time.perf_counter()
        for i in range(runs):
            assert wf(i) == (i + 1) * 2 - 1
        rate = runs / (time.perf_counter() - started)
    else:
        async def main():
            per = runs // callers
            async def caller(c):
                for i in range(per):
                    x = c * per + i
                    h = await DBOS.start_workflow_async(awf, x)
                    assert await h.get_result() == (x + 1) * 2 - 1
            started = time.perf_counter()
            await asyncio.gather(*(caller(c) for c in range(callers)))
            return per * callers / (time.perf_counter() - started)
        rate = asyncio.run(main())
    DBOS.destroy()
    print(json.dumps({"rate": rate}))
    """
)


def dbos_rate(path: Path, runs: int, callers: int) -> tuple[float | None, str]:
    """DBOS runs/s, or ``None`` and the reason it could not run."""
    try:
        import dbos  # noqa: F401  (only to know it is installed)
    except ImportError as exc:
        return None, f"dbos is not installed ({exc}); pip install dbos"
    command = [sys.executable, "-c", _DBOS_SCRIPT, str(path), str(runs), str(callers)]
    return _peer_rate("dbos", command, "sqlite system database (DBOS's default settings)")


def _peer_rate(peer: str, command: list[str], detail: str) -> tuple[float | None, str]:
    """Run a peer's measurement in its own process: the ``rate`` its last line prints (and
    ``detail``), or ``None`` and why it failed."""
    done = subprocess.run(command, capture_output=True, text=True, timeout=600, check=False)
    if done.returncode != 0:
        return None, f"{peer} failed: {done.stderr.strip().splitlines()[-1:]}"
    return float(json.loads(done.stdout.strip().splitlines()[-1])["rate"]), detail


# -- Durably (Node, in a subprocess) ----------------------------------------------------------


def durably_rate(path: Path, sync: Sync, runs: int, callers: int) -> tuple[float | None, str]:
    """Durably runs/s, or ``None`` and the reason it could not run."""
    node = shutil.which("node")
    if node is None:
        return None, "Node is not installed (Node 20+, then npm install in benchmarks/durably)"
    if not (DURABLY_DIR / "node_modules" / "@coji" / "durably").is_dir():
        return None, "@coji/durably is not installed: cd benchmarks/durably && npm install"
    command = [node, str(DURABLY_DIR / "bench.mjs"), str(path), str(runs), str(callers), sync]
    return _peer_rate("durably", command, f"better-sqlite3, WAL, synchronous={sync.upper()}")


# -- main -------------------------------------------------------------------------------------


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--breakdown",
        action="store_true",
        help="print the SQL statements and loop callbacks of one sequential run instead",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="with --breakdown: the last run's statements"
    )
    args = parser.parse_args()
    if args.breakdown:
        runs = 20 if args.quick else 200
        found: dict[str, object] = {}
        modes: tuple[Sync, ...] = ("full", "normal")
        with tempfile.TemporaryDirectory() as tmp:
            for mode in modes:
                result = asyncio.run(breakdown(Path(tmp) / f"breakdown-{mode}.db", mode, runs))
                print_breakdown(mode, result, verbose=args.verbose)
                found[mode] = attrs.asdict(result)
        out = RESULTS.with_name("bench_workflows_breakdown.json")
        out.parent.mkdir(parents=True, exist_ok=True)
        out.write_text(json.dumps(found, indent=2) + "\n")
        return
    runs = 64 if args.quick else 400
    raw_count = 300 if args.quick else 2000
    repeats = 1 if args.quick else 3  # the best of ``repeats`` (this machine is shared)
    rows: list[Row] = []
    with tempfile.TemporaryDirectory() as tmp:
        root = Path(tmp)
        for sync in ("full", "normal"):
            raw = max(
                raw_commits(root / f"raw-{sync}-{i}.db", sync, raw_count) for i in range(repeats)
            )
            rows.append(Row(benchmark="raw sqlite3 commits", sync=sync, rate=raw, unit="commit/s"))
            for callers in (1, 16):
                rate = max(
                    asyncio.run(ours(root / f"ours-{sync}-{callers}-{i}.db", sync, runs, callers))
                    for i in range(repeats)
                )
                name = "sequential" if callers == 1 else f"concurrent-{callers}"
                rows.append(
                    Row(
                        benchmark=f"durable_effect {name}",
                        sync=sync,
                        rate=rate,
                        unit="run/s",
                        detail=f"{rate * 3:.0f} steps/s; {raw / rate:.1f} raw commits per run",
                    )
                )
            for callers in (1, 16):
                name = "sequential" if callers == 1 else f"concurrent-{callers}"
                tried = [
                    durably_rate(root / f"durably-{sync}-{callers}-{i}.db", sync, runs, callers)
                    for i in range(repeats)
                ]
                peer_rates = [r for r, _ in tried if r is not None]
                rows.append(
                    Row(
                        benchmark=f"durably {name}",
                        sync=sync,
                        rate=max(peer_rates) if peer_rates else float("nan"),
                        unit="run/s",
                        detail=tried[-1][1],
                    )
                )
        for callers in (1, 16):
            name = "sequential" if callers == 1 else f"concurrent-{callers}"
            measured = [
                dbos_rate(root / f"dbos-{callers}-{i}.sqlite", runs, callers)
                for i in range(repeats)
            ]
            rates = [r for r, _ in measured if r is not None]
            rate_or_none = max(rates) if rates else None
            why = measured[-1][1]
            rows.append(
                Row(
                    benchmark=f"dbos {name}",
                    sync="default",
                    rate=rate_or_none if rate_or_none is not None else float("nan"),
                    unit="run/s",
                    detail=why,
                )
            )
    by_name = {(r.benchmark, r.sync): r.rate for r in rows}
    comparisons = []
    for name in ("sequential", "concurrent-16"):
        theirs = by_name.get((f"dbos {name}", "default"), float("nan"))
        for sync in ("full", "normal"):
            mine = by_name[(f"durable_effect {name}", sync)]
            ratio = mine / theirs if not math.isnan(theirs) and theirs > 0 else float("nan")
            comparisons.append(
                {
                    "benchmark": name,
                    "sync": sync,
                    "peer": "dbos",
                    "ours": mine,
                    "theirs": theirs,
                    "ratio": ratio,
                    "target": TARGET_VS_DBOS,
                    "met": ratio >= TARGET_VS_DBOS,
                }
            )
    for name in ("sequential", "concurrent-16"):
        for sync in ("full", "normal"):
            mine = by_name[(f"durable_effect {name}", sync)]
            theirs = by_name.get((f"durably {name}", sync), float("nan"))
            ratio = mine / theirs if not math.isnan(theirs) and theirs > 0 else float("nan")
            comparisons.append(
                {
                    "benchmark": name,
                    "sync": sync,
                    "peer": "durably",
                    "ours": mine,
                    "theirs": theirs,
                    "ratio": ratio,
                    "target": TARGET_VS_DURABLY,
                    "met": ratio >= TARGET_VS_DURABLY,
                }
            )
    print(f"{'benchmark':34} {'sync':8} {'rate':>10}  unit      detail")
    for r in rows:
        print(f"{r.benchmark:34} {r.sync:8} {r.rate:10.1f}  {r.unit:9} {r.detail}")
    print()
    for c in comparisons:
        status = "met" if c["met"] else "NOT met"
        print(
            f"{c['benchmark']:14} {c['sync']:6}: {c['ratio']:.2f}x {c['peer']} "
            f"(target {c['target']:.0f}x: {status})"
        )
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(
        json.dumps(
            {
                "machine": {
                    "python": platform.python_version(),
                    "platform": platform.platform(),
                    "cpus": os.cpu_count(),
                },
                "runs": runs,
                "repeats": repeats,
                "rows": [attrs.asdict(r) for r in rows],
                "comparisons": comparisons,
            },
            indent=2,
        )
        + "\n"
    )


if __name__ == "__main__":
    main()
