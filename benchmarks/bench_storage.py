"""Benchmark `SqliteStorage` against raw stdlib ``sqlite3`` measured in the same run.

Usage: ``python benchmarks/bench_storage.py [--quick]``. Prints a table and writes
``benchmarks/results/bench_storage.json``. Every raw baseline uses a file in the same temp
directory with the same pragmas (WAL, the same ``synchronous``), so ratios compare like with
like on this machine:

1. ``sequential``: one handler per call — ``acquire`` then ``commit`` (one 100-byte record,
   lease released) — against a loop of single-row upserts, one row per transaction.
2. ``concurrent-64``: 64 callers each doing acquire → commit on its own instance, against the
   same single-row upsert rate (group commit is what makes this possible).
3. ``fire-alarms``: claim 10,000 due alarms 100 at a time and commit one write per instance
   moving its alarm an hour ahead (the commits of a batch run concurrently), against a raw
   loop that selects 100 due ids by ``(due_at, id)``, leases them and commits, then updates
   every row in one more transaction.
4. ``memory``: peak RSS (``VmHWM``) of a fresh process holding an opened store of 100,000 idle
   instances (one small record and one future alarm each), after a few reads and an empty
   claim, against the same for an empty store.
"""

from __future__ import annotations

import argparse
import asyncio
import json
import os
import platform
import sqlite3
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import attrs

from durable_effect.storage import Claimed, InstanceWrite, SqliteStorage

Sync = Literal["full", "normal"]

T0 = datetime(2030, 1, 1, tzinfo=UTC)
TTL = timedelta(seconds=30)
VALUE = b"v" * 100
RESULTS = Path(__file__).resolve().parent / "results" / "bench_storage.json"


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
    alarms: int
    idle: int
    repeats: int


# -- raw baselines ---------------------------------------------------------------------------


def raw_connection(path: Path, sync: Sync) -> sqlite3.Connection:
    conn = sqlite3.connect(path, isolation_level=None)
    conn.execute("PRAGMA journal_mode = WAL")
    conn.execute(f"PRAGMA synchronous = {sync.upper()}")
    return conn


def raw_upserts(path: Path, sync: Sync, n: int) -> float:
    """Single-row upserts, one per transaction; rows per second."""
    conn = raw_connection(path, sync)
    conn.execute("CREATE TABLE t (id TEXT PRIMARY KEY, value BLOB NOT NULL) WITHOUT ROWID")
    sql = "INSERT INTO t VALUES (?, ?) ON CONFLICT (id) DO UPDATE SET value = excluded.value"
    start = time.perf_counter()
    for i in range(n):
        conn.execute("BEGIN IMMEDIATE")
        conn.execute(sql, (f"row-{i}", VALUE))
        conn.execute("COMMIT")
    elapsed = time.perf_counter() - start
    conn.close()
    return n / elapsed


def raw_fire_alarms(path: Path, sync: Sync, n: int) -> float:
    """Claim 100 due rows per transaction, then update each in one more; rows per second."""
    conn = raw_connection(path, sync)
    conn.execute(
        "CREATE TABLE jobs (id TEXT PRIMARY KEY, due_at INTEGER NOT NULL,"
        " lease_until INTEGER NOT NULL, owner TEXT) WITHOUT ROWID"
    )
    conn.execute("CREATE INDEX jobs_due ON jobs (due_at, id)")
    now = 1_000_000
    conn.execute("BEGIN")
    conn.executemany(
        "INSERT INTO jobs VALUES (?, ?, 0, NULL)", ((f"job-{i:06d}", now - i) for i in range(n))
    )
    conn.execute("COMMIT")
    select = (
        "SELECT id FROM jobs WHERE due_at <= ? AND lease_until <= ? ORDER BY due_at, id LIMIT 100"
    )
    fired = 0
    start = time.perf_counter()
    while True:
        conn.execute("BEGIN IMMEDIATE")
        ids = [row[0] for row in conn.execute(select, (now, now))]
        for job_id in ids:
            conn.execute(
                "UPDATE jobs SET lease_until = ?, owner = 'w' WHERE id = ?", (now + 30, job_id)
            )
        conn.execute("COMMIT")
        if not ids:
            break
        conn.execute("BEGIN IMMEDIATE")
        for job_id in ids:
            conn.execute(
                "UPDATE jobs SET due_at = ?, lease_until = 0, owner = NULL WHERE id = ?",
                (now + 3600, job_id),
            )
        conn.execute("COMMIT")
        fired += len(ids)
    elapsed = time.perf_counter() - start
    conn.close()
    assert fired == n
    return n / elapsed


# -- ours ------------------------------------------------------------------------------------


async def ours_sequential(path: Path, sync: Sync, n: int, *, alarm: bool) -> float:
    async with SqliteStorage(path, synchronous=sync) as storage:
        start = time.perf_counter()
        for i in range(n):
            instance_id = f"seq-{i}"
            got = await storage.acquire([instance_id], owner="w", now=T0, ttl=TTL)
            assert got is not None
            write = InstanceWrite(
                instance_id=instance_id, puts={"state": VALUE}, alarm=T0 + TTL if alarm else None
            )
            await storage.commit(got.leases, [write])
        elapsed = time.perf_counter() - start
    return n / elapsed


async def ours_concurrent(path: Path, sync: Sync, rounds: int) -> tuple[float, int]:
    async with SqliteStorage(path, synchronous=sync) as storage:

        async def caller(c: int) -> None:
            for r in range(rounds):
                instance_id = f"c{c}-{r}"
                got = await storage.acquire([instance_id], owner=f"w{c}", now=T0, ttl=TTL)
                assert got is not None
                write = InstanceWrite(instance_id=instance_id, puts={"state": VALUE})
                await storage.commit(got.leases, [write])

        start = time.perf_counter()
        await asyncio.gather(*(caller(c) for c in range(64)))
        elapsed = time.perf_counter() - start
        transactions = storage.transactions_committed
    return 64 * rounds / elapsed, transactions


async def populate(storage: SqliteStorage, n: int, *, alarm_at: datetime, prefix: str) -> None:
    """``n`` instances with one small record and an alarm, 1,000 per commit."""
    for base in range(0, n, 1000):
        ids = [f"{prefix}{i:06d}" for i in range(base, min(n, base + 1000))]
        got = await storage.acquire(ids, owner="setup", now=T0, ttl=TTL)
        assert got is not None
        writes = [InstanceWrite(instance_id=i, puts={"s": b"idle"}, alarm=alarm_at) for i in ids]
        await storage.commit(got.leases, writes)


async def ours_fire_alarms(path: Path, sync: Sync, n: int, *, pipelined: bool) -> float:
    """Claim 100, commit each (concurrently), repeat; alarms fired per second.

    ``pipelined`` asks for the next batch while the commits of the current one are queued, so
    the claim shares their transaction (what a worker with spare concurrency would do).
    """
    async with SqliteStorage(path, synchronous=sync) as storage:
        await populate(storage, n, alarm_at=T0 - timedelta(seconds=1), prefix="job-")
        later = T0 + timedelta(hours=1)

        async def claim() -> Sequence[Claimed]:
            return await storage.claim_due(now=T0, owner="w", ttl=TTL, limit=100)

        async def fire(claimed: Sequence[Claimed]) -> None:
            await asyncio.gather(
                *(
                    storage.commit(
                        [c.lease], [InstanceWrite(instance_id=c.lease.instance_id, alarm=later)]
                    )
                    for c in claimed
                )
            )

        fired = 0
        start = time.perf_counter()
        claimed = await claim()
        while claimed:
            fired += len(claimed)
            if pipelined:
                _, claimed = await asyncio.gather(fire(claimed), claim())
            else:
                await fire(claimed)
                claimed = await claim()
        elapsed = time.perf_counter() - start
    assert fired == n
    return n / elapsed


# -- memory ----------------------------------------------------------------------------------


async def rss_child(path: str) -> dict[str, int]:
    async with SqliteStorage(path) as storage:
        await storage.next_alarm_at()
        await storage.load(["idle-000001"])
        await storage.claim_due(now=T0, owner="w", ttl=TTL, limit=100)
        await storage.list_instances("idle-", limit=10)
        fields = dict(
            line.split(":", 1) for line in Path("/proc/self/status").read_text().splitlines()
        )
    # VmHWM is the peak since exec (ru_maxrss would include the forking parent's peak).
    return {
        "rss_kb": int(fields["VmRSS"].split()[0]),
        "peak_kb": int(fields["VmHWM"].split()[0]),
    }


def measure_rss(path: Path) -> dict[str, int]:
    out = subprocess.run(
        [sys.executable, __file__, "--rss-child", str(path)],
        check=True,
        capture_output=True,
        text=True,
        timeout=300,
    )
    data = json.loads(out.stdout)
    return {"rss_kb": int(data["rss_kb"]), "peak_kb": int(data["peak_kb"])}


async def memory_row(tmp: Path, idle: int) -> Row:
    empty, full = tmp / "empty.db", tmp / "idle.db"
    async with SqliteStorage(empty):
        pass
    async with SqliteStorage(full) as storage:
        await populate(storage, idle, alarm_at=T0 + timedelta(days=365), prefix="idle-")
        assert len(await storage.list_instances("idle-")) == idle
    size_mb = sum(p.stat().st_size for p in tmp.glob("idle.db*")) / 2**20
    empty_rss = await asyncio.to_thread(measure_rss, empty)
    full_rss = await asyncio.to_thread(measure_rss, full)
    delta_mb = (full_rss["peak_kb"] - empty_rss["peak_kb"]) / 1024
    return Row(
        benchmark=f"memory-{idle // 1000}k-idle",
        sync="full",
        ours=full_rss["peak_kb"] / 1024,
        raw=empty_rss["peak_kb"] / 1024,
        ratio=delta_mb,
        bar=20.0,
        met=delta_mb <= 20.0,
        unit="MB peak RSS (ratio column: difference in MB)",
        detail=(
            f"{idle:,} instances in {size_mb:.1f} MB of files; current RSS"
            f" {full_rss['rss_kb'] / 1024:.1f} MB vs {empty_rss['rss_kb'] / 1024:.1f} MB empty"
        ),
    )


# -- driver ----------------------------------------------------------------------------------


async def run_sync(tmp: Path, sync: Sync, sizes: Sizes) -> list[Row]:
    """Every measurement ``sizes.repeats`` times, ours and raw interleaved; medians."""
    runs: dict[str, list[float]] = {}
    transactions = 0
    for rep in range(sizes.repeats):
        d = tmp / f"{sync}-{rep}"
        d.mkdir()

        def note(name: str, value: float) -> None:
            runs.setdefault(name, []).append(value)

        note("raw", raw_upserts(d / "raw-upsert.db", sync, sizes.sequential))
        note("seq", await ours_sequential(d / "seq.db", sync, sizes.sequential, alarm=False))
        note("seq+alarm", await ours_sequential(d / "alarm.db", sync, sizes.sequential, alarm=True))
        rate, transactions = await ours_concurrent(d / "conc.db", sync, sizes.rounds_64)
        note("conc", rate)
        note("raw-fire", raw_fire_alarms(d / "raw-fire.db", sync, sizes.alarms))
        note("fire", await ours_fire_alarms(d / "fire.db", sync, sizes.alarms, pipelined=False))
        note("piped", await ours_fire_alarms(d / "piped.db", sync, sizes.alarms, pipelined=True))
        note("raw-again", raw_upserts(d / "raw-upsert-2.db", sync, sizes.sequential))
    raw_rate = statistics.median(runs["raw"] + runs["raw-again"])
    seq, seq_alarm, conc = (statistics.median(runs[k]) for k in ("seq", "seq+alarm", "conc"))
    raw_fire, fire, piped = (statistics.median(runs[k]) for k in ("raw-fire", "fire", "piped"))
    commits = 64 * sizes.rounds_64
    return [
        _ratio_row("sequential", sync, seq, raw_rate, bar=0.70, unit="handler commits/s"),
        _ratio_row(
            "sequential+alarm (info)",
            sync,
            seq_alarm,
            raw_rate,
            unit="handler commits/s",
            detail="the commit also sets an alarm: two rows against the raw loop's one",
        ),
        _ratio_row(
            "concurrent-64",
            sync,
            conc,
            raw_rate,
            bar=3.0,
            unit="handler commits/s",
            detail=f"{2 * commits} acquires+commits in {transactions} transactions",
        ),
        _ratio_row("fire-alarms", sync, fire, raw_fire, bar=0.50, unit="alarms fired/s"),
        _ratio_row(
            "fire-alarms-pipelined (info)",
            sync,
            piped,
            raw_fire,
            unit="alarms fired/s",
            detail="the next claim_due is queued with the commits and shares their transaction",
        ),
    ]


def _ratio_row(
    name: str,
    sync: str,
    ours: float,
    raw: float,
    *,
    bar: float = 0.0,
    unit: str,
    detail: str = "",
) -> Row:
    ratio = ours / raw
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
        if row.benchmark.startswith("memory"):
            cells = (f"{row.ours:.1f} MB", f"{row.raw:.1f} MB", f"{row.ratio:+.1f} MB")
            bar = f"<= +{row.bar:.0f} MB"
        else:
            cells = (f"{row.ours:,.0f}/s", f"{row.raw:,.0f}/s", f"{row.ratio:.2f}")
            bar = f">= {row.bar:.2f}" if row.bar else "-"
        met = ("yes" if row.met else "NO") if row.bar else "-"
        lines.append((row.benchmark, row.sync, *cells, bar, met))
    widths = [max(len(line[i]) for line in lines) for i in range(len(header))]
    for n, line in enumerate(lines):
        print("  ".join(cell.ljust(w) for cell, w in zip(line, widths, strict=True)))
        if n == 0:
            print("  ".join("-" * w for w in widths))
    for row in rows:
        if row.detail:
            print(f"  {row.benchmark} [{row.sync}]: {row.detail}")


async def main(quick: bool) -> None:
    sizes = (
        Sizes(sequential=500, rounds_64=10, alarms=10_000, idle=100_000, repeats=1)
        if quick
        else Sizes(sequential=1500, rounds_64=30, alarms=10_000, idle=100_000, repeats=3)
    )
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench_storage-") as name:
        tmp = Path(name)
        for sync in ("full", "normal"):
            rows.extend(await run_sync(tmp, sync, sizes))
        rows.append(await memory_row(tmp, sizes.idle))
    print_table(rows)
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "quick": quick,
        "sizes": attrs.asdict(sizes),
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
    parser.add_argument("--quick", action="store_true", help="smaller sequential runs")
    parser.add_argument("--rss-child", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        print(json.dumps(asyncio.run(rss_child(args.rss_child))))
    else:
        asyncio.run(main(bool(args.quick)))
