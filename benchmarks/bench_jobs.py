"""Benchmark the job types on SQLite against raw stdlib ``sqlite3`` measured in the same run.

Usage: ``python benchmarks/bench_jobs.py [--quick] [--profile]``. Prints a table and writes
``benchmarks/results/bench_jobs.json``. Every measurement uses a fresh file in one temp
directory; every raw baseline uses the same pragmas (WAL, the same ``synchronous``), so the
ratios compare like with like on this machine. Both ``synchronous=full`` and ``normal``.

1. ``debounce-add-seq``: one ``await Effect.run_promise(handle.add(...))`` at a time (a
   trivial summing reducer, ``flush_after`` an hour so nothing flushes), on distinct ids and
   on one hot id, against a loop of single-row upserts, one row per transaction. Bar: 0.70.
2. ``debounce-add-64``: 64 callers (``asyncio.gather``), each looping adds on its own id,
   against the same single-row upsert rate. Bar: 3.0 (only group commit gets there).
3. ``task-send-seq`` / ``task-send-64``: the same for ``Task`` ``send`` (``on_event`` sets
   the state, nothing is scheduled). Same baselines and bars.
4. ``continuous-fire``: N Continuous instances (``every("1 hour")``,
   ``start_immediately=False``, a ``TestClock``) all due at once after moving the clock past
   the first tick; a ``Worker`` fires them with ``run_until_idle()`` (each execution
   increments the state), at concurrency 100 and 10. Against a raw loop that selects 100 due
   ids by ``(due_at, id)``, updates their two records and their alarms and commits, until
   none is due (run before and after ours; the mean). No bar.

Disk latency on a shared machine swings several-fold within minutes, so every measurement of
1-3 runs *interleaved* with its own raw baseline: 100 sequential calls, then 100 raw upserts,
and so on (the 64 callers: 5 rounds, then as many raw upserts); the ratio of a repeat is
ours over that raw, and the table gives medians over the repeats. Both sides are measured in
WAL steady state: the raw file first gets 1,200 unsynced upserts and ours 200 untimed calls,
so neither pays for growing the WAL file during the timing.

``--profile`` prints where a sequential add's time goes (raw upsert, the storage's own
``acquire`` + ``commit``, a debounce add on SQLite and on ``memory://``, medians of 3) and a
cProfile of 3,000 adds (NORMAL): the event loop's thread only; SQLite runs on the storage
thread and shows up as the loop waiting in ``epoll``.
"""

from __future__ import annotations

import argparse
import asyncio
import cProfile
import io
import json
import os
import platform
import pstats
import sqlite3
import statistics
import sys
import tempfile
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import attrs

from durable_effect import (
    Continuous,
    ContinuousContext,
    Debounce,
    DebounceContext,
    DebounceEventContext,
    Effect,
    Task,
    TaskContext,
    ValidationError,
    create_durable_jobs,
)
from durable_effect._jobs import DurableJobs
from durable_effect.jobs._task_context import TaskEventContext
from durable_effect.storage import InstanceWrite, SqliteStorage
from durable_effect.testing import TestClock

Sync = Literal["full", "normal"]

T0 = datetime(2030, 1, 1, tzinfo=UTC)
VALUE = b"v" * 100
META = b"m" * 160  # about the size of a Continuous instance's ``meta`` record
WARM_RAW = 1200  # unsynced upserts that take a raw file's WAL past its first checkpoint
WARM_OURS = 200  # untimed calls that do the same for ours (a call writes ~7 WAL frames)
CHUNK = 100  # sequential calls timed between two raw chunks
CALLERS = 64
SEGMENT = 5  # rounds of the 64 callers timed between two raw chunks
RESULTS = Path(__file__).resolve().parent / "results" / "bench_jobs.json"


@attrs.frozen(kw_only=True)
class Row:
    """One line of the table."""

    benchmark: str
    sync: str
    ours: float
    raw: float
    ratio: float
    bar: float
    met: bool
    unit: str
    detail: str = ""


@attrs.frozen(kw_only=True)
class Sizes:
    sequential: int
    rounds_64: int
    instances: int
    repeats: int


# -- the jobs --------------------------------------------------------------------------------


def sum_events(ctx: DebounceEventContext[int, int]) -> Effect[int]:
    """The trivial reducer: the sum of the batch's events."""
    return Effect.succeed((ctx.state or 0) + ctx.event)


def never_flushed(ctx: DebounceContext[int]) -> Effect[None]:
    raise AssertionError("the benchmark never flushes")


def set_state(event: int, ctx: TaskEventContext[int]) -> Effect[None, ValidationError]:
    """``on_event``: the event becomes the state; nothing is scheduled."""
    return ctx.set_state(event)


def task_execute(ctx: TaskContext[int]) -> Effect[None]:
    return Effect.succeed(None)


def increment(ctx: ContinuousContext[int]) -> Effect[None, ValidationError]:
    return ctx.update_state(lambda n: n + 1)


DEBOUNCE = Debounce.make(int, never_flushed, "1 hour", on_event=sum_events)
TASK = Task.make(int, int, set_state, task_execute)
CONTINUOUS = Continuous.make(int, Continuous.every("1 hour"), increment, start_immediately=False)


def open_jobs(path: Path, sync: Sync, clock: TestClock | None = None) -> DurableJobs:
    return create_durable_jobs(
        {"hooks": DEBOUNCE, "orders": TASK, "ticks": CONTINUOUS},
        storage=SqliteStorage(path, synchronous=sync),
        clock=clock,
    )


def storage_of(jobs: DurableJobs) -> SqliteStorage:
    storage = jobs.storage
    assert isinstance(storage, SqliteStorage)
    return storage


# -- raw baselines ---------------------------------------------------------------------------


def raw_connection(path: Path, sync: Sync) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {sync.upper()}")
    return conn


class RawUpserts:
    """Single-row upserts, one per transaction, on their own file; timed a chunk at a time.

    Opening grows the WAL past its first checkpoint with ``synchronous=OFF`` so the timed
    commits run in steady state (overwriting WAL frames, not growing the file), like ours
    after their warm-up.
    """

    SQL = "INSERT INTO t VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET value = excluded.value"

    def __init__(self, path: Path, sync: Sync) -> None:
        self.conn = raw_connection(path, sync)
        self.conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
        self.conn.execute("PRAGMA synchronous = OFF")
        self.run("warm-", 0, WARM_RAW)
        self.conn.execute(f"PRAGMA synchronous = {sync.upper()}")

    def run(self, prefix: str, first: int, count: int) -> float:
        """Upsert rows ``first .. first + count - 1``; the seconds it took."""
        conn, sql = self.conn, self.SQL
        start = time.perf_counter()
        for i in range(first, first + count):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(sql, (f"{prefix}{i}", VALUE))
            conn.execute("COMMIT")
        return time.perf_counter() - start

    def close(self) -> None:
        self.conn.close()


def raw_upserts(path: Path, sync: Sync, n: int) -> float:
    """Single-row upserts, one per transaction; rows per second."""
    raw = RawUpserts(path, sync)
    try:
        return n / raw.run("row-", 0, n)
    finally:
        raw.close()


def raw_fire(path: Path, sync: Sync, n: int) -> float:
    """Claim-and-update: 100 due ids by ``(due_at, id)``, their records and alarms, commit."""
    conn = raw_connection(path, sync)
    conn.execute(
        "CREATE TABLE records (instance_id TEXT NOT NULL, key TEXT NOT NULL, value BLOB NOT NULL,"
        " PRIMARY KEY (instance_id, key)) WITHOUT ROWID"
    )
    conn.execute(
        "CREATE TABLE alarms (instance_id TEXT NOT NULL PRIMARY KEY, due_at INTEGER NOT NULL)"
        " WITHOUT ROWID"
    )
    conn.execute("CREATE INDEX alarms_due ON alarms (due_at, instance_id)")
    now = 1_000_000
    ids = [f"continuous:ticks:{i:06d}" for i in range(n)]
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO records VALUES (?, ?, ?)",
        ((i, key, value) for i in ids for key, value in (("meta", META), ("state", b"0"))),
    )
    conn.executemany("INSERT INTO alarms VALUES (?, ?)", ((i, now - 1) for i in ids))
    conn.execute("COMMIT")
    select = (
        "SELECT instance_id FROM alarms WHERE due_at <= ? ORDER BY due_at, instance_id LIMIT 100"
    )
    update = "UPDATE records SET value = ? WHERE instance_id = ? AND key = ?"
    fired = 0
    start = time.perf_counter()
    while True:
        conn.execute("BEGIN IMMEDIATE")
        due = [row[0] for row in conn.execute(select, (now,))]
        for instance_id in due:
            conn.execute(update, (META, instance_id, "meta"))
            conn.execute(update, (b"1", instance_id, "state"))
            conn.execute(
                "UPDATE alarms SET due_at = ? WHERE instance_id = ?", (now + 3600, instance_id)
            )
        conn.execute("COMMIT")
        if not due:
            break
        fired += len(due)
    elapsed = time.perf_counter() - start
    conn.close()
    assert fired == n
    return n / elapsed


# -- ours ------------------------------------------------------------------------------------

Call = Callable[[str, int], Awaitable[object]]
#: Makes the client call under test from an opened ``DurableJobs`` (the handle taken once).
Op = Callable[[DurableJobs], Call]


def add(jobs: DurableJobs) -> Call:
    handle = jobs.client.debounce(DEBOUNCE)

    async def call(id: str, n: int) -> object:
        return await Effect.run_promise(handle.add(id=id, event=n))

    return call


def send(jobs: DurableJobs) -> Call:
    handle = jobs.client.task(TASK)

    async def call(id: str, n: int) -> object:
        return await Effect.run_promise(handle.send(id=id, event=n))

    return call


async def warm(call: Call) -> None:
    for i in range(WARM_OURS):
        await call(f"warm-{i}", 0)


async def paired_sequential(
    d: Path, sync: Sync, n: int, op: Op, *, hot: bool
) -> tuple[float, float]:
    """Ours (one call at a time) and raw upserts, alternating chunks of ``CHUNK``; both /s."""
    raw = RawUpserts(d / f"raw-{op.__name__}-{hot}.db", sync)
    spent_ours = spent_raw = 0.0
    async with open_jobs(d / f"{op.__name__}-{hot}.db", sync) as jobs:
        call = op(jobs)
        await warm(call)
        for first in range(0, n, CHUNK):
            spent_raw += raw.run("row-", first, CHUNK)
            start = time.perf_counter()
            for i in range(first, first + CHUNK):
                await call("hot" if hot else f"id-{i}", 1)
            spent_ours += time.perf_counter() - start
    raw.close()
    done = n // CHUNK * CHUNK
    return done / spent_ours, done / spent_raw


async def paired_concurrent(d: Path, sync: Sync, rounds: int, op: Op) -> tuple[float, float, int]:
    """64 callers looping calls on their own ids, in segments of ``SEGMENT`` rounds, each
    followed by as many raw upserts as the segment made calls; both /s, and the transactions
    our calls took."""
    raw = RawUpserts(d / f"raw-{op.__name__}-64.db", sync)
    spent_ours = spent_raw = 0.0
    async with open_jobs(d / f"{op.__name__}-64.db", sync) as jobs:
        call = op(jobs)
        await warm(call)

        async def caller(c: int, count: int) -> None:
            for _ in range(count):
                await call(f"caller-{c}", 1)

        transactions = 0
        for first in range(0, rounds, SEGMENT):
            count = min(SEGMENT, rounds - first)
            before = storage_of(jobs).transactions_committed
            start = time.perf_counter()
            await asyncio.gather(*(caller(c, count) for c in range(CALLERS)))
            spent_ours += time.perf_counter() - start
            transactions += storage_of(jobs).transactions_committed - before
            spent_raw += raw.run("row-", first * CALLERS, count * CALLERS)
        if op is add:
            got = await Effect.run_promise(jobs.client.debounce(DEBOUNCE).get_state("caller-0"))
            assert got.state == rounds, got
    raw.close()
    calls = CALLERS * rounds
    return calls / spent_ours, calls / spent_raw, transactions


async def ours_fire(path: Path, sync: Sync, n: int, concurrency: int) -> tuple[float, int]:
    """Start ``n`` instances, move the clock past their first tick, fire them all."""
    clock = TestClock(T0)
    async with open_jobs(path, sync, clock) as jobs:
        handle = jobs.client.continuous(CONTINUOUS)
        for base in range(0, n, 500):
            await asyncio.gather(
                *(
                    Effect.run_promise(handle.start(id=f"{i:06d}", input=0))
                    for i in range(base, min(n, base + 500))
                )
            )
        clock.set(T0 + timedelta(hours=1, seconds=1))
        worker = jobs.worker(concurrency=concurrency)
        before = storage_of(jobs).transactions_committed
        start = time.perf_counter()
        fired = await worker.run_until_idle()
        elapsed = time.perf_counter() - start
        transactions = storage_of(jobs).transactions_committed - before
        assert fired == n, (fired, n)
        for probe in ("000000", f"{n - 1:06d}"):
            state = await Effect.run_promise(handle.get_state(probe))
            assert state.state == 1, state
    return n / elapsed, transactions


# -- driver ----------------------------------------------------------------------------------


async def run_sync(tmp: Path, sync: Sync, sizes: Sizes, runs: dict[str, object]) -> list[Row]:
    """Every measurement ``sizes.repeats`` times beside its own raw baseline; medians.

    Each repeat's rates go into ``runs`` (for the JSON report)."""
    ours: dict[str, list[float]] = {}
    raw: dict[str, list[float]] = {}
    notes: dict[str, int] = {}
    n, rounds = sizes.sequential, sizes.rounds_64

    def note(name: str, mine: float, base: float) -> None:
        ours.setdefault(name, []).append(mine)
        raw.setdefault(name, []).append(base)

    for rep in range(sizes.repeats):
        d = tmp / f"{sync}-{rep}"
        d.mkdir()
        for op in (add, send):
            note(f"{op.__name__}", *await paired_sequential(d, sync, n, op, hot=False))
            note(f"{op.__name__}-hot", *await paired_sequential(d, sync, n, op, hot=True))
            mine, base, notes[f"{op.__name__}-64"] = await paired_concurrent(d, sync, rounds, op)
            note(f"{op.__name__}-64", mine, base)
        for concurrency in (100, 10):
            before = raw_fire(d / f"raw-fire-{concurrency}-a.db", sync, sizes.instances)
            mine, notes[f"fire-{concurrency}"] = await ours_fire(
                d / f"fire-{concurrency}.db", sync, sizes.instances, concurrency
            )
            after = raw_fire(d / f"raw-fire-{concurrency}-b.db", sync, sizes.instances)
            note(f"fire-{concurrency}", mine, (before + after) / 2)

    def row(key: str, name: str, bar: float, detail: str) -> Row:
        ratios = [m / b for m, b in zip(ours[key], raw[key], strict=True)]
        return ratio_row(
            name,
            sync,
            statistics.median(ours[key]),
            statistics.median(raw[key]),
            ratio=statistics.median(ratios),
            bar=bar,
            detail=detail,
        )

    runs[sync] = {key: {"ours": ours[key], "raw": raw[key]} for key in ours}
    calls = CALLERS * rounds
    distinct, hot = "one await at a time, distinct ids", "one await at a time, one hot id"
    k = f"{sizes.instances // 1000}k"
    return [
        row("add", "debounce-add-seq", 0.70, distinct),
        row("add-hot", "debounce-add-seq-hot", 0.70, hot),
        row("add-64", "debounce-add-64", 3.0, f"{calls} adds in {notes['add-64']} transactions"),
        row("send", "task-send-seq", 0.70, distinct),
        row("send-hot", "task-send-seq-hot", 0.70, hot),
        row("send-64", "task-send-64", 3.0, f"{calls} sends in {notes['send-64']} transactions"),
        row(
            "fire-100",
            f"continuous-fire-{k} (c=100)",
            0.0,
            f"worker concurrency 100: {notes['fire-100']} transactions",
        ),
        row(
            "fire-10",
            f"continuous-fire-{k} (c=10)",
            0.0,
            f"worker concurrency 10 (the default): {notes['fire-10']} transactions",
        ),
    ]


def ratio_row(
    name: str, sync: str, ours: float, raw: float, *, ratio: float, bar: float, detail: str
) -> Row:
    unit = "executions/s (raw: claim-and-update rows/s)" if "fire" in name else "calls/s"
    return Row(
        benchmark=name,
        sync=sync,
        ours=ours,
        raw=raw,
        ratio=ratio,
        bar=bar,
        met=ratio >= bar,
        unit=unit,
        detail=detail,
    )


def print_table(rows: list[Row]) -> None:
    header = ("benchmark", "sync", "ours", "raw", "ratio", "bar", "met")
    lines = [header]
    for row in rows:
        bar = f">= {row.bar:.2f}" if row.bar else "-"
        met = ("yes" if row.met else "NO") if row.bar else "-"
        cells = (f"{row.ours:,.0f}/s", f"{row.raw:,.0f}/s", f"{row.ratio:.2f}")
        lines.append((row.benchmark, row.sync, *cells, bar, met))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    for row in rows:
        if row.detail:
            print(f"  {row.benchmark} [{row.sync}]: {row.detail}")


async def storage_floor(path: Path, sync: Sync, n: int) -> float:
    """What one handler costs the storage alone: ``acquire`` then ``commit`` (one record)."""
    ttl = timedelta(seconds=30)
    async with SqliteStorage(path, synchronous=sync) as storage:

        async def handler(instance_id: str) -> None:
            got = await storage.acquire([instance_id], owner="w", now=T0, ttl=ttl)
            assert got is not None
            write = InstanceWrite(instance_id=instance_id, puts={"state": VALUE})
            await storage.commit(got.leases, [write])

        for i in range(WARM_OURS):
            await handler(f"warm-{i}")
        start = time.perf_counter()
        for i in range(n):
            await handler(f"id-{i}")
        elapsed = time.perf_counter() - start
    return n / elapsed


async def timed_adds(jobs: DurableJobs, n: int) -> float:
    """``n`` sequential adds on distinct ids after the warm-up; adds per second."""
    async with jobs:
        call = add(jobs)
        await warm(call)
        start = time.perf_counter()
        for i in range(n):
            await call(f"id-{i}", 1)
        elapsed = time.perf_counter() - start
    return n / elapsed


async def profile(n: int, top: int) -> str:
    """Where a sequential add's time goes: a breakdown (each part measured three times,
    interleaved, medians), then cProfile over ``n`` adds on distinct ids (NORMAL)."""
    rates: dict[tuple[str, str], list[float]] = {}
    with tempfile.TemporaryDirectory(prefix="bench_jobs-profile-") as name:
        tmp = Path(name)
        for rep in range(3):
            for sync in ("full", "normal"):
                got = {
                    "raw single-row upsert txn": raw_upserts(tmp / f"raw-{sync}{rep}.db", sync, n),
                    "SqliteStorage acquire+commit": await storage_floor(
                        tmp / f"floor-{sync}{rep}.db", sync, n
                    ),
                    "debounce add": await timed_adds(open_jobs(tmp / f"a-{sync}{rep}.db", sync), n),
                }
                for what, rate in got.items():
                    rates.setdefault((sync, what), []).append(rate)
            memory = create_durable_jobs({"hooks": DEBOUNCE}, storage="memory://")
            rates.setdefault(("-", "debounce add on memory://"), []).append(
                await timed_adds(memory, n)
            )
        lines = ["per sequential call, medians of 3 (us/call; lower is better):"]
        for (sync, what), values in rates.items():
            rate = statistics.median(values)
            lines.append(f"  {sync:6}  {what:30} {1e6 / rate:8.1f} us  ({rate:,.0f}/s)")
        async with open_jobs(tmp / "profile.db", "normal") as jobs:
            call = add(jobs)
            await warm(call)
            profiler = cProfile.Profile()
            start = time.perf_counter()
            profiler.enable()
            for i in range(n):
                await call(f"id-{i}", 1)
            profiler.disable()
            elapsed = time.perf_counter() - start
    out = io.StringIO()
    stats = pstats.Stats(profiler, stream=out)
    print("== top entries by cumulative time", file=out)
    stats.sort_stats("cumulative").print_stats(top)
    print("== the same, durable_effect's own functions only", file=out)
    stats.sort_stats("cumulative").print_stats("durable_effect", top)
    print("== top entries by own time", file=out)
    stats.sort_stats("tottime").print_stats(top)
    lines.append(f"cProfile: {n} adds (NORMAL) in {elapsed:.2f} s ({n / elapsed:,.0f}/s profiled)")
    return "\n".join(lines) + "\n" + out.getvalue()


async def main(quick: bool) -> None:
    sizes = (
        Sizes(sequential=300, rounds_64=8, instances=2_000, repeats=1)
        if quick
        else Sizes(sequential=1500, rounds_64=30, instances=10_000, repeats=3)
    )
    rows: list[Row] = []
    runs: dict[str, object] = {}
    with tempfile.TemporaryDirectory(prefix="bench_jobs-") as name:
        tmp = Path(name)
        for sync in ("full", "normal"):
            rows.extend(await run_sync(tmp, sync, sizes, runs))
    print_table(rows)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "quick": quick,
        "sizes": attrs.asdict(sizes),
        "callers": CALLERS,
        "python": sys.version.split()[0],
        "sqlite": sqlite3.sqlite_version,
        "platform": platform.platform(),
        "cpus": os.cpu_count(),
        "rows": [attrs.asdict(row) for row in rows],
        "runs_per_repeat": runs,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller runs, one repeat")
    parser.add_argument(
        "--profile", action="store_true", help="cProfile sequential adds instead (no JSON)"
    )
    args = parser.parse_args()
    if args.profile:
        print(asyncio.run(profile(3000, 10)))
    else:
        asyncio.run(main(bool(args.quick)))
