"""Benchmark `SqliteStorage` against raw stdlib ``sqlite3`` measured in the same run.

Usage: ``python benchmarks/bench_storage.py [--quick] [--profile] [--file-check]``
(``--file-check``: only benchmark 4). Prints a table and
writes ``benchmarks/results/bench_storage.json``. Every raw baseline uses a file in the same
temp directory with the same pragmas (WAL, the same ``synchronous``), so ratios compare like
with like on this machine:

1. ``sequential``: one handler per call — ``acquire`` then ``commit`` (one 100-byte record,
   lease released) — against a loop of single-row upserts, one row per transaction.
2. ``concurrent-64``: 64 callers each doing acquire → commit on its own instance, against the
   same single-row upsert rate (group commit is what makes this possible).
3. ``fire-alarms``: claim 10,000 due alarms 100 at a time and commit one write per instance
   moving its alarm an hour ahead (the commits of a batch run concurrently), against a raw
   loop that selects 100 due ids by ``(due_at, id)``, leases them and commits, then updates
   every row in one more transaction (run before and after ours; the mean).
4. ``file-check``: what watching the database's path costs (`FileWatch`: a ``stat`` of the
   file and its ``-wal`` after each write transaction, and before one unless the last check
   is under 1 ms old): sequential calls and 64 concurrent callers on a store that checks,
   against the same on a store with the check switched off, interleaved chunk by chunk in
   the same run (the ratio is checked over unchecked).
5. ``memory``: peak RSS (``VmHWM``) of a fresh process holding an opened store of 100,000 idle
   instances (one small record and one future alarm each), after a few reads and an empty
   claim, against the same for an empty store.

Both sides of 1 and 2 are timed in WAL steady state: the raw file first gets 1,200 unsynced
upserts and ours 300 untimed calls, so that neither pays for growing the WAL file while
timed (an fsync that also grows the file costs ~1.3-2x one that overwrites WAL blocks
already there). Disk latency on a shared machine swings within minutes, so 1 and 2 run
*interleaved* with their baseline, 100 calls (or 5 rounds of the 64) at a time, and a
repeat's ratio is ours over that raw; the table gives medians over the repeats.

``--profile`` prints where a sequential call's time goes (raw transaction, our ``acquire``
and ``commit`` as the caller sees them, medians) and how late a 1 ms ticker on the same
event loop runs while ours work (what running transactions inline costs other tasks).
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
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, Literal

import attrs

from durable_effect.storage import Claimed, InstanceWrite, SqliteStorage

Sync = Literal["full", "normal"]

T0 = datetime(2030, 1, 1, tzinfo=UTC)
TTL = timedelta(seconds=30)
VALUE = b"v" * 100
WARM_RAW = 1200  # unsynced upserts that take a raw file's WAL past its first checkpoint
WARM_OURS = 300  # untimed calls that do the same for ours (a call writes ~4 WAL frames)
CHUNK = 100  # sequential calls timed between two raw chunks
ROUNDS_CHUNK = 5  # rounds of the 64 callers timed between two raw chunks
RESULTS = Path(__file__).resolve().parent / "results" / "bench_storage.json"
RESULTS_FILE_CHECK = RESULTS.with_name("bench_storage_file_check.json")


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
        self.next = 0

    def run(self, prefix: str, first: int, count: int) -> float:
        """Upsert rows ``first .. first + count - 1``; the seconds it took."""
        conn, sql = self.conn, self.SQL
        start = time.perf_counter()
        for i in range(first, first + count):
            conn.execute("BEGIN IMMEDIATE")
            conn.execute(sql, (f"{prefix}{i}", VALUE))
            conn.execute("COMMIT")
        return time.perf_counter() - start

    def chunk(self, count: int) -> float:
        """The next ``count`` rows; the seconds it took."""
        first, self.next = self.next, self.next + count
        return self.run("row-", first, count)

    def close(self) -> None:
        self.conn.close()


def raw_upserts(path: Path, sync: Sync, n: int) -> float:
    """Single-row upserts, one per transaction, in steady state; rows per second."""
    raw = RawUpserts(path, sync)
    try:
        return n / raw.chunk(n)
    finally:
        raw.close()


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


async def one_call(storage: SqliteStorage, instance_id: str, *, alarm: bool) -> None:
    """One handler's storage traffic: acquire, then commit one record (and maybe an alarm)."""
    got = await storage.acquire([instance_id], owner="w", now=T0, ttl=TTL)
    assert got is not None
    write = InstanceWrite(
        instance_id=instance_id, puts={"state": VALUE}, alarm=T0 + TTL if alarm else None
    )
    await storage.commit(got.leases, [write])


async def paired_sequential(d: Path, sync: Sync, n: int, *, alarm: bool) -> tuple[float, float]:
    """Ours (one call at a time) and raw upserts, alternating chunks of ``CHUNK``; both /s."""
    name = "alarm" if alarm else "seq"
    raw = RawUpserts(d / f"raw-{name}.db", sync)
    spent_ours = spent_raw = 0.0
    async with SqliteStorage(d / f"{name}.db", synchronous=sync) as storage:
        for i in range(WARM_OURS):
            await one_call(storage, f"warm-{i}", alarm=alarm)
        for first in range(0, n, CHUNK):
            spent_raw += raw.chunk(CHUNK)
            start = time.perf_counter()
            for i in range(first, first + CHUNK):
                await one_call(storage, f"seq-{i}", alarm=alarm)
            spent_ours += time.perf_counter() - start
    raw.close()
    done = n // CHUNK * CHUNK
    return done / spent_ours, done / spent_raw


async def paired_concurrent(d: Path, sync: Sync, rounds: int) -> tuple[float, float, int]:
    """64 callers, ``ROUNDS_CHUNK`` rounds at a time between raw chunks of as many upserts.

    Rates per second (ours, raw) and the write transactions ours took for the timed calls.
    """
    raw = RawUpserts(d / "raw-conc.db", sync)
    spent_ours = spent_raw = 0.0
    async with SqliteStorage(d / "conc.db", synchronous=sync) as storage:

        async def caller(c: int, first: int, count: int) -> None:
            for r in range(first, first + count):
                instance_id = f"c{c}-{r}"
                got = await storage.acquire([instance_id], owner=f"w{c}", now=T0, ttl=TTL)
                assert got is not None
                write = InstanceWrite(instance_id=instance_id, puts={"state": VALUE})
                await storage.commit(got.leases, [write])

        await asyncio.gather(*(caller(c, -ROUNDS_CHUNK, ROUNDS_CHUNK) for c in range(64)))
        before = storage.transactions_committed
        for first in range(0, rounds, ROUNDS_CHUNK):
            spent_raw += raw.chunk(64 * ROUNDS_CHUNK)
            start = time.perf_counter()
            await asyncio.gather(*(caller(c, first, ROUNDS_CHUNK) for c in range(64)))
            spent_ours += time.perf_counter() - start
        transactions = storage.transactions_committed - before
    raw.close()
    done = 64 * (rounds // ROUNDS_CHUNK * ROUNDS_CHUNK)
    return done / spent_ours, done / spent_raw, transactions


def unwatched(storage: SqliteStorage) -> SqliteStorage:
    """``storage`` (opened) with the check of its files switched off: the baseline of 4."""
    storage._group._unwatch()
    return storage


async def paired_file_check(d: Path, sync: Sync, n: int, rounds: int) -> dict[str, float]:
    """Rates (/s) of sequential calls and of 64 concurrent callers, checked and unchecked.

    Chunks alternate between the two stores (and which goes first), so both see the same
    disk and the same load.
    """
    spent = {"seq": 0.0, "seq:off": 0.0, "conc": 0.0, "conc:off": 0.0}
    async with (
        SqliteStorage(d / "checked.db", synchronous=sync) as checked,
        SqliteStorage(d / "unchecked.db", synchronous=sync) as plain,
    ):
        stores = {"": checked, ":off": unwatched(plain)}
        for store in stores.values():
            for i in range(WARM_OURS):
                await one_call(store, f"warm-{i}", alarm=False)

        async def sequential(store: SqliteStorage, first: int) -> float:
            start = time.perf_counter()
            for i in range(first, first + CHUNK):
                await one_call(store, f"seq-{i}", alarm=False)
            return time.perf_counter() - start

        async def concurrent(store: SqliteStorage, first: int) -> float:
            async def caller(c: int) -> None:
                for r in range(first, first + ROUNDS_CHUNK):
                    await one_call(store, f"c{c}-{r}", alarm=False)

            start = time.perf_counter()
            await asyncio.gather(*(caller(c) for c in range(64)))
            return time.perf_counter() - start

        for k, first in enumerate(range(0, n, CHUNK)):
            for suffix in ("", ":off") if k % 2 == 0 else (":off", ""):
                spent[f"seq{suffix}"] += await sequential(stores[suffix], first)
        for k, first in enumerate(range(0, rounds, ROUNDS_CHUNK)):
            for suffix in ("", ":off") if k % 2 == 0 else (":off", ""):
                spent[f"conc{suffix}"] += await concurrent(stores[suffix], first)
    calls = {"seq": n // CHUNK * CHUNK, "conc": 64 * (rounds // ROUNDS_CHUNK * ROUNDS_CHUNK)}
    return {name: calls[name.split(":")[0]] / seconds for name, seconds in spent.items()}


async def file_check_rows(tmp: Path, sync: Sync, sizes: Sizes) -> list[Row]:
    """Benchmark 4 for one ``synchronous`` setting: medians of the repeats' ratios."""
    rates: dict[str, list[float]] = {}
    for rep in range(sizes.repeats):
        d = tmp / f"check-{sync}-{rep}"
        d.mkdir()
        got = await paired_file_check(d, sync, sizes.sequential, sizes.rounds_64)
        for name, rate in got.items():
            rates.setdefault(name, []).append(rate)
    rows = []
    labels = (("seq", "file-check sequential (info)"), ("conc", "file-check concurrent-64 (info)"))
    for name, label in labels:
        ratios = [on / off for on, off in zip(rates[name], rates[f"{name}:off"], strict=True)]
        rows.append(
            _ratio_row(
                label,
                sync,
                statistics.median(rates[name]),
                statistics.median(rates[f"{name}:off"]),
                ratio=statistics.median(ratios),
                unit="handler calls/s",
                detail="raw = the same store with the file check off",
            )
        )
    return rows


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
    ratios: dict[str, list[float]] = {}
    rates: dict[str, list[float]] = {}
    transactions = 0
    for rep in range(sizes.repeats):
        d = tmp / f"{sync}-{rep}"
        d.mkdir()

        def note(name: str, ours: float, raw: float) -> None:
            rates.setdefault(name, []).append(ours)
            rates.setdefault(f"{name}:raw", []).append(raw)
            ratios.setdefault(name, []).append(ours / raw)

        note("seq", *await paired_sequential(d, sync, sizes.sequential, alarm=False))
        note("seq+alarm", *await paired_sequential(d, sync, sizes.sequential, alarm=True))
        conc, conc_raw, transactions = await paired_concurrent(d, sync, sizes.rounds_64)
        note("conc", conc, conc_raw)
        raw_before = raw_fire_alarms(d / "raw-fire.db", sync, sizes.alarms)
        fire = await ours_fire_alarms(d / "fire.db", sync, sizes.alarms, pipelined=False)
        piped = await ours_fire_alarms(d / "piped.db", sync, sizes.alarms, pipelined=True)
        raw_after = raw_fire_alarms(d / "raw-fire-2.db", sync, sizes.alarms)
        note("fire", fire, (raw_before + raw_after) / 2)
        note("piped", piped, (raw_before + raw_after) / 2)
    commits = 64 * (sizes.rounds_64 // ROUNDS_CHUNK * ROUNDS_CHUNK)

    def row(name: str, benchmark: str, **kwargs: Any) -> Row:
        return _ratio_row(
            benchmark,
            sync,
            statistics.median(rates[name]),
            statistics.median(rates[f"{name}:raw"]),
            ratio=statistics.median(ratios[name]),
            **kwargs,
        )

    return [
        row("seq", "sequential", bar=0.70, unit="handler commits/s"),
        row(
            "seq+alarm",
            "sequential+alarm (info)",
            unit="handler commits/s",
            detail="the commit also sets an alarm: two rows against the raw loop's one",
        ),
        row(
            "conc",
            "concurrent-64",
            bar=3.0,
            unit="handler commits/s",
            detail=f"{2 * commits} acquires+commits in {transactions} transactions",
        ),
        row("fire", "fire-alarms", bar=0.50, unit="alarms fired/s"),
        row(
            "piped",
            "fire-alarms-pipelined (info)",
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
    ratio: float | None = None,
    bar: float = 0.0,
    unit: str,
    detail: str = "",
) -> Row:
    """A row; ``ratio`` defaults to ours / raw (pass the median of paired ratios instead)."""
    ratio = ours / raw if ratio is None else ratio
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


# -- profile ---------------------------------------------------------------------------------


def _median_us(values: Sequence[float]) -> float:
    return statistics.median(values) * 1e6


async def call_breakdown(tmp: Path, sync: Sync, n: int) -> list[str]:
    """Medians over ``n`` sequential calls (3 interleaved repeats) of each part's time."""
    raw_txn: list[float] = []
    acquire: list[float] = []
    commit: list[float] = []
    for rep in range(3):
        d = tmp / f"profile-{sync}-{rep}"
        d.mkdir()
        raw = RawUpserts(d / "raw.db", sync)
        async with SqliteStorage(d / "ours.db", synchronous=sync) as storage:
            for i in range(WARM_OURS):
                await one_call(storage, f"warm-{i}", alarm=False)
            for first in range(0, n, CHUNK):
                raw_txn.append(raw.chunk(CHUNK) / CHUNK)
                for i in range(first, first + CHUNK):
                    instance_id = f"seq-{i}"
                    start = time.perf_counter()
                    got = await storage.acquire([instance_id], owner="w", now=T0, ttl=TTL)
                    acquired = time.perf_counter()
                    assert got is not None
                    write = InstanceWrite(instance_id=instance_id, puts={"state": VALUE})
                    await storage.commit(got.leases, [write])
                    committed = time.perf_counter()
                    acquire.append(acquired - start)
                    commit.append(committed - acquired)
        raw.close()
    total = [a + c for a, c in zip(acquire, commit, strict=True)]
    raw_us, total_us = _median_us(raw_txn), _median_us(total)
    return [
        f"  {sync:6}  raw single-row upsert txn     {raw_us:8.1f} us",
        f"  {sync:6}  acquire (as awaited)          {_median_us(acquire):8.1f} us",
        f"  {sync:6}  commit (as awaited)           {_median_us(commit):8.1f} us",
        f"  {sync:6}  sequential call               {total_us:8.1f} us"
        f"  (ratio {raw_us / total_us:.2f})",
    ]


async def ticker_lateness(work: Callable[[], Awaitable[object]]) -> tuple[float, float, float]:
    """p50, p99 and max lateness (ms) of a 1 ms ``asyncio.sleep`` ticker while ``work`` runs."""
    loop = asyncio.get_running_loop()
    late: list[float] = []
    done = False

    async def tick() -> None:
        while not done:
            start = loop.time()
            await asyncio.sleep(0.001)
            late.append(loop.time() - start - 0.001)

    ticker = asyncio.ensure_future(tick())
    await asyncio.sleep(0.01)
    late.clear()
    try:
        await work()
    finally:
        done = True
        await ticker
    late.sort()
    return (
        late[len(late) // 2] * 1e3,
        late[int(len(late) * 0.99)] * 1e3,
        late[-1] * 1e3,
    )


async def loop_lateness(tmp: Path, n: int) -> list[str]:
    """How late other tasks run while ours work (transactions run inline when they can)."""
    lines = []
    async with (
        SqliteStorage(tmp / "late-seq.db") as seq,
        SqliteStorage(tmp / "late-conc.db") as conc,
        SqliteStorage(tmp / "late-fire.db") as fire,
    ):
        await populate(fire, 10_000, alarm_at=T0 - timedelta(seconds=1), prefix="job-")
        later = T0 + timedelta(hours=1)

        async def idle() -> None:
            await asyncio.sleep(0.5)

        async def sequential() -> None:
            for i in range(n):
                await one_call(seq, f"seq-{i}", alarm=False)

        async def concurrent() -> None:
            async def caller(c: int) -> None:
                for r in range(10):
                    await one_call(conc, f"c{c}-{r}", alarm=False)

            await asyncio.gather(*(caller(c) for c in range(64)))

        async def fire_all() -> None:
            while claimed := await fire.claim_due(now=T0, owner="w", ttl=TTL, limit=100):
                await asyncio.gather(
                    *(
                        fire.commit(
                            [c.lease], [InstanceWrite(instance_id=c.lease.instance_id, alarm=later)]
                        )
                        for c in claimed
                    )
                )

        for name, work in (
            ("idle loop", idle),
            ("sequential (full)", sequential),
            ("concurrent-64 (full)", concurrent),
            ("fire-alarms (full)", fire_all),
        ):
            p50, p99, worst = await ticker_lateness(work)
            lines.append(f"  {name:22} p50 {p50:5.2f} ms   p99 {p99:5.2f} ms   max {worst:6.2f} ms")
    return lines


async def profile(n: int) -> str:
    with tempfile.TemporaryDirectory(prefix="bench_storage-profile-") as name:
        tmp = Path(name)
        lines = ["per sequential call, medians (us; lower is better):"]
        for sync in ("full", "normal"):
            lines.extend(await call_breakdown(tmp, sync, n))
        lines.append("lateness of a 1 ms ticker on the same event loop:")
        lines.extend(await loop_lateness(tmp, n))
    return "\n".join(lines)


async def main(quick: bool, *, file_check_only: bool = False) -> None:
    sizes = (
        Sizes(sequential=500, rounds_64=10, alarms=10_000, idle=100_000, repeats=1)
        if quick
        else Sizes(sequential=1500, rounds_64=30, alarms=10_000, idle=100_000, repeats=3)
    )
    rows: list[Row] = []
    with tempfile.TemporaryDirectory(prefix="bench_storage-") as name:
        tmp = Path(name)
        for sync in ("full", "normal"):
            if not file_check_only:
                rows.extend(await run_sync(tmp, sync, sizes))
            rows.extend(await file_check_rows(tmp, sync, sizes))
        if not file_check_only:
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
    results = RESULTS_FILE_CHECK if file_check_only else RESULTS
    results.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {results}")


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="smaller sequential runs")
    parser.add_argument("--profile", action="store_true", help="where a call's time goes")
    parser.add_argument("--file-check", action="store_true", help="only the file-check rows")
    parser.add_argument("--rss-child", metavar="PATH", help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.rss_child:
        print(json.dumps(asyncio.run(rss_child(args.rss_child))))
    elif args.profile:
        print(asyncio.run(profile(1000)))
    else:
        asyncio.run(main(bool(args.quick), file_check_only=bool(args.file_check)))
