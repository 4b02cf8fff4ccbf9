"""Four worker processes on one PostgreSQL database: exactly once per tick, never two at once.

Setup: 4 worker subprocesses (``tests/multiprocess/_mp_worker.py``, real clock, lease TTL
`LEASE_MS`) on one database; the test process creates `TICKERS` Continuous instances (every
4 s, ``misfire="run_all"``) and `CHAINS` Task instances whose alarms all come due at the same
instant, `CHAIN_RUNS` times, 4 s apart. Each execution appends a ``Tick`` (number, instant
it was due, pid, instant it ran) to the state it commits; while it runs, it holds its
instance's fence (see the worker's docstring) and reports any overlap.

Then, while the workers run:

1. one worker is killed with SIGKILL while it holds leases (mid-flight); its orphaned leases
   are taken over by the others once they expire, and not before;
2. the PostgreSQL server is restarted (``pg_ctl stop -m fast`` + start); the workers recover
   on their own.

Checked at the end, from the committed state (and the workers' output):

* no fence violation was reported: no instance ever ran in two processes at once;
* every ticker's ticks are its schedule's ticks from the first one, each exactly once (``n``
  is 1, 2, 3…, ``scheduled_at`` advances by exactly one interval), none early, and its
  pending alarm is the very next tick — so with the workers caught up, every due alarm was
  executed exactly once;
* every chain ran exactly `CHAIN_RUNS` times at its planned instants, and has no alarm left;
* the killed worker ran nothing after its death; each instance it held was next run by
  another worker, after the lease expired;
* every tick a worker acknowledged (its commit returned) is in the final state, by that
  worker; the state read just before the restart is a prefix of the final state.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import sys
import time
from collections.abc import Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any, TypeVar

import attrs
import msgspec
import psycopg
import pytest
from psycopg import sql

from durable_effect import create_durable_jobs
from durable_effect.storage._postgres import PostgresStorage
from tests.conftest_pg import pg_server, pg_url  # noqa: F401
from tests.multiprocess._mp_worker import (
    CHAIN_EVERY,
    TICK_EVERY,
    Begin,
    Fence,
    TickerState,
    definitions,
)
from tests.pg_harness import PgServer

pytestmark = pytest.mark.live

T = TypeVar("T")

ROOT = Path(__file__).resolve().parents[2]
WORKERS = 4
TICKERS = 2000
CHAINS = 2000
CHAIN_RUNS = 3
LEASE_MS = 3000
SCHEMA = "mp"
#: How far behind its due instant an alarm may be once the workers have caught up.
CAUGHT_UP = timedelta(seconds=2)
#: Seconds allowed for each phase (a failure names the phase that took too long).
PHASE_TIMEOUT = 30.0


# -- the worker processes ------------------------------------------------------------------------


@attrs.define
class Child:
    """One worker subprocess; its stdout is read line by line from the start."""

    proc: asyncio.subprocess.Process
    lines: list[tuple[float, str]] = attrs.field(factory=list)
    owner: str = ""
    ready: asyncio.Event = attrs.field(factory=asyncio.Event)
    reader: asyncio.Task[None] | None = None
    err: asyncio.Task[bytes] | None = None

    @classmethod
    async def start(cls, url: str, fence: Path) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.multiprocess._mp_worker",
            url,
            SCHEMA,
            str(LEASE_MS),
            str(fence),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        child = cls(proc)
        assert proc.stdout is not None
        assert proc.stderr is not None
        child.reader = asyncio.create_task(child._read(proc.stdout))
        child.err = asyncio.create_task(proc.stderr.read())
        return child

    @property
    def pid(self) -> int:
        return self.proc.pid

    async def _read(self, stream: asyncio.StreamReader) -> None:
        while line := await stream.readline():
            text = line.decode().rstrip("\n")
            self.lines.append((time.time(), text))
            if text.startswith("ready "):
                self.owner = text.split(" ", 1)[1]
                self.ready.set()

    def acks(self, since: float = 0.0) -> list[tuple[str, int, int]]:
        """``(instance_id, n, pid)`` of every acknowledged tick (read after ``since``)."""
        found = []
        for at, line in self.lines:
            if at >= since and line.startswith("ack "):
                _, instance_id, n, pid = line.split()
                found.append((instance_id, int(n), int(pid)))
        return found

    def fence_violations(self) -> list[str]:
        return [line for _, line in self.lines if line.startswith("FENCE ")]

    async def stderr(self) -> str:
        if self.err is None:
            return ""
        if self.proc.returncode is None:
            return "(still running)"
        return (await self.err).decode(errors="replace")

    async def wait_ready(self) -> None:
        try:
            await asyncio.wait_for(self.ready.wait(), timeout=PHASE_TIMEOUT)
        except TimeoutError:
            self.proc.kill()
            await self.proc.wait()
            message = f"worker {self.pid} did not start:\n{await self.stderr()}"
            raise AssertionError(message) from None

    async def finish(self, sig: signal.Signals) -> int:
        """Send ``sig`` (if still running) and wait for the exit and the end of the output."""
        if self.proc.returncode is None:
            self.proc.send_signal(sig)
        try:
            code = await asyncio.wait_for(self.proc.wait(), timeout=PHASE_TIMEOUT)
        except TimeoutError:
            self.proc.kill()
            code = await self.proc.wait()
        if self.reader is not None:
            await self.reader
        return code


# -- reading the database directly -------------------------------------------------------------


def _ident(name: str) -> sql.Identifier:
    return sql.Identifier(SCHEMA, name)


async def query(url: str, statement: sql.Composed, params: tuple[Any, ...] = ()) -> list[Any]:
    """Rows of one statement on a fresh connection (retried while the server restarts)."""

    async def run() -> list[Any]:
        async with await psycopg.AsyncConnection.connect(
            url, autocommit=True, connect_timeout=5
        ) as conn:
            cur = await conn.execute(statement, params)
            rows: list[Any] = await cur.fetchall()
            return rows

    return await eventually(run, what="a query")


async def eventually(action: Callable[[], Awaitable[T]], *, what: str) -> T:
    """``action()`` once it stops raising ``psycopg.Error`` (bounded by `PHASE_TIMEOUT`)."""
    deadline = time.monotonic() + PHASE_TIMEOUT
    while True:
        try:
            return await action()
        except psycopg.Error:
            if time.monotonic() > deadline:
                raise AssertionError(f"{what} kept failing for {PHASE_TIMEOUT} s") from None
            await asyncio.sleep(0.1)


async def wait_until(
    condition: Callable[[], Awaitable[bool]], *, what: str, interval: float = 0.1
) -> None:
    deadline = time.monotonic() + PHASE_TIMEOUT
    while not await condition():
        if time.monotonic() > deadline:
            raise AssertionError(f"timed out after {PHASE_TIMEOUT} s waiting for {what}")
        await asyncio.sleep(interval)


async def states(url: str) -> dict[str, dict[str, Any]]:
    """Every instance's committed state record, decoded as plain JSON."""
    rows = await query(
        url,
        sql.SQL("SELECT instance_id, value FROM {} WHERE key = 'state'").format(_ident("records")),
    )
    return {iid: msgspec.json.decode(bytes(value)) for iid, value in rows}


async def alarms(url: str) -> dict[str, datetime]:
    rows = await query(url, sql.SQL("SELECT instance_id, due_at FROM {}").format(_ident("alarms")))
    return dict(rows)


def ticks_of(state: dict[str, Any]) -> list[tuple[int, datetime, int, datetime]]:
    """``(n, scheduled_at, pid, ran_at)`` of every execution recorded in a state."""
    raw = state.get("ticks", state.get("runs", []))
    return [
        (n, datetime.fromisoformat(due), pid, datetime.fromisoformat(ran))
        for n, due, pid, ran in raw
    ]


# -- the test ----------------------------------------------------------------------------------


async def create_instances(url: str, chain_first_at: datetime) -> dict[str, datetime]:
    """Start the tickers and the chains; the first tick of each ticker."""
    storage = PostgresStorage(url, max_size=8, schema=SCHEMA, notify_channel=SCHEMA)
    first_tick: dict[str, datetime] = {}
    async with create_durable_jobs(definitions(), storage=storage) as jobs:
        ticker = jobs.client.continuous("ticker")
        chain = jobs.client.task("chain")
        gate = asyncio.Semaphore(16)

        async def start_ticker(i: int) -> None:
            async with gate:
                result = await ticker.start(id=f"c{i}", input=TickerState())
                assert result.created
                status = await ticker.status(f"c{i}")
                assert status.next_run_at is not None
                first_tick[result.instance_id] = status.next_run_at

        async def start_chain(i: int) -> None:
            async with gate:
                begin = Begin(first_at=chain_first_at, count=CHAIN_RUNS)
                assert (await chain.send(id=f"t{i}", event=begin)).created

        await asyncio.gather(
            *(start_ticker(i) for i in range(TICKERS)), *(start_chain(i) for i in range(CHAINS))
        )
    return first_tick


_HOLDER = """
import fcntl, os, sys, time
fd = os.open(sys.argv[1], os.O_RDWR | os.O_CREAT, 0o600)
fcntl.lockf(fd, fcntl.LOCK_EX, 1, 12)
print("held", flush=True)
time.sleep(60)
"""


async def test_the_fence_reports_a_handler_running_in_another_process(
    tmp_path: Path, capfd: pytest.CaptureFixture[str]
) -> None:
    """The fencing assertion is not vacuous: a live holder elsewhere is seen, a dead one not."""
    path = tmp_path / "fence"
    fence = Fence(str(path))
    await fence.hold("continuous:ticker:c12")
    assert fence.violations == 0
    holder = await asyncio.create_subprocess_exec(
        sys.executable, "-c", _HOLDER, str(path), stdout=asyncio.subprocess.PIPE
    )
    try:
        assert holder.stdout is not None
        assert await asyncio.wait_for(holder.stdout.readline(), timeout=20) == b"held\n"
        await fence.hold("continuous:ticker:c12")
        await fence.hold("continuous:ticker:c13")  # another byte: free
        assert fence.violations == 1
        assert f"FENCE continuous:ticker:c12 {os.getpid()} {holder.pid}\n" in capfd.readouterr().out
    finally:
        holder.kill()
        await holder.wait()
    await fence.hold("continuous:ticker:c12")  # the kernel dropped the dead holder's lock
    assert fence.violations == 1
    # Two handlers of one instance in one process are reported too.
    await asyncio.gather(*(fence.hold("task:chain:t12") for _ in range(2)))
    assert fence.violations == 2
    assert "FENCE task:chain:t12" in capfd.readouterr().out


@pytest.mark.postgres
async def test_four_workers_one_database_sigkill_and_server_restart(
    pg_server: PgServer,  # noqa: F811
    pg_url: str,  # noqa: F811
    tmp_path: Path,
) -> None:
    began = time.monotonic()
    timings: dict[str, float] = {}

    def mark(phase: str) -> None:
        timings[phase] = round(time.monotonic() - began, 1)

    # Open the schema once before the workers race for it (they would manage, but the
    # migration's lock wait is not what this test is about).
    async with PostgresStorage(pg_url, schema=SCHEMA, notify_channel=SCHEMA):
        pass
    fence = tmp_path / "fence"
    children = [await Child.start(pg_url, fence) for _ in range(WORKERS)]
    try:
        await asyncio.gather(*(c.wait_ready() for c in children))
        mark("workers ready")
        pids = {c.pid for c in children}

        # -- the work: tickers anchored as they start, chains all due at one instant ----------
        chain_first_at = datetime.now(UTC) + timedelta(seconds=5)
        first_tick = await create_instances(pg_url, chain_first_at)
        mark("instances created")

        # -- 1. SIGKILL one worker while it holds leases ----------------------------------------
        victim = children[0]
        count_leases = sql.SQL("SELECT count(*) FROM {} WHERE owner = %s").format(_ident("leases"))
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:

            async def victim_is_busy() -> bool:
                cur = await conn.execute(count_leases, (victim.owner,))
                row = await cur.fetchone()
                return row is not None and row[0] >= 8

            await wait_until(victim_is_busy, what="the victim to hold leases", interval=0.005)
        victim.proc.send_signal(signal.SIGKILL)
        killed_at = datetime.now(UTC)
        assert await victim.finish(signal.SIGKILL) == -signal.SIGKILL
        await asyncio.sleep(0.3)  # a commit the server had received before the death lands
        held = sql.SQL("SELECT instance_id, expires_at FROM {} WHERE owner = %s")
        orphans: dict[str, datetime] = dict(
            await query(pg_url, held.format(_ident("leases")), (victim.owner,))
        )
        assert orphans, "the victim held no lease when it died: it was not killed mid-flight"
        mark("victim killed")
        survivors = children[1:]

        async def taken_over() -> bool:
            [(left,)] = await query(pg_url, count_leases, (victim.owner,))
            return int(left) == 0

        await wait_until(taken_over, what="the victim's leases to be taken over")
        mark("leases taken over")

        # -- 2. restart the server --------------------------------------------------------------
        # Mid-flight: restart while the workers hold leases (a wave of chain alarms is due).
        count_all = sql.SQL("SELECT count(*) FROM {}").format(_ident("leases"))
        async with await psycopg.AsyncConnection.connect(pg_url, autocommit=True) as conn:

            async def workers_are_busy() -> bool:
                cur = await conn.execute(count_all)
                row = await cur.fetchone()
                return row is not None and row[0] >= 8

            await wait_until(workers_are_busy, what="the workers to hold leases", interval=0.005)
        before_restart = await states(pg_url)
        if pg_server.owned:  # (a server of DURABLE_EFFECT_PG_URL is never restarted)
            await asyncio.to_thread(pg_server.restart)
        restarted_at = time.time()
        mark("server restarted")

        async def all_recovered() -> bool:
            return all(c.acks(since=restarted_at) for c in survivors)

        await wait_until(all_recovered, what="every surviving worker to commit again")
        mark("workers recovered")

        # -- the end: chains done, tickers caught up --------------------------------------------
        async def chains_done() -> bool:
            [(left,)] = await query(
                pg_url,
                sql.SQL("SELECT count(*) FROM {} WHERE instance_id LIKE 'task:%%'").format(
                    _ident("alarms")
                ),
            )
            return int(left) == 0

        async def caught_up() -> bool:
            [(late,)] = await query(
                pg_url,
                sql.SQL("SELECT count(*) FROM {} WHERE due_at < %s").format(_ident("alarms")),
                (datetime.now(UTC) - CAUGHT_UP,),
            )
            return int(late) == 0

        await wait_until(chains_done, what="every chain to finish")
        # Every ticker comes due at least once more after the restart.
        await asyncio.sleep(max(0.0, restarted_at + TICK_EVERY.total_seconds() - time.time()))
        await wait_until(caught_up, what="the workers to catch up with the tickers")
        caught_up_at = datetime.now(UTC)
        mark("caught up")
        codes = [await c.finish(signal.SIGTERM) for c in survivors]
        mark("workers stopped")
        assert codes == [0] * len(survivors), [await c.stderr() for c in survivors]
    finally:
        for child in children:
            if child.proc.returncode is None:
                child.proc.kill()
                with contextlib.suppress(ProcessLookupError):
                    await child.proc.wait()

    # -- the checks, from the committed state -------------------------------------------------
    violations = [v for c in children for v in c.fence_violations()]
    assert not violations, f"instances ran in two processes at once: {violations[:20]}"

    final = await states(pg_url)
    pending = await alarms(pg_url)
    tickers = {iid: s for iid, s in final.items() if iid.startswith("continuous:")}
    chains = {iid: s for iid, s in final.items() if iid.startswith("task:")}
    assert (len(tickers), len(chains)) == (TICKERS, CHAINS)

    executed = 0
    by_pid: dict[int, int] = {}
    for iid, state in tickers.items():
        ticks = ticks_of(state)
        first = first_tick[iid]
        expected = [(k + 1, first + k * TICK_EVERY) for k in range(len(ticks))]
        assert [(n, due) for n, due, _, _ in ticks] == expected, f"{iid}: {ticks}"
        assert all(ran >= due for _, due, _, ran in ticks), f"{iid} ran early: {ticks}"
        # The pending alarm is the very next tick, and it is not overdue: every due tick ran.
        assert pending.get(iid) == first + len(ticks) * TICK_EVERY, (iid, pending.get(iid))
        assert pending[iid] >= caught_up_at - CAUGHT_UP - timedelta(seconds=1), iid
        assert ticks[-1][3].timestamp() > restarted_at, f"{iid} did not run after the restart"
        executed += len(ticks)
        for _, _, pid, _ in ticks:
            by_pid[pid] = by_pid.get(pid, 0) + 1
    for iid, state in chains.items():
        runs = ticks_of(state)
        planned = [(k + 1, chain_first_at + k * CHAIN_EVERY) for k in range(CHAIN_RUNS)]
        assert [(n, due) for n, due, _, _ in runs] == planned, f"{iid}: {runs}"
        assert all(ran >= due for _, due, _, ran in runs), f"{iid} ran early: {runs}"
        assert iid not in pending
        executed += len(runs)
        for _, _, pid, _ in runs:
            by_pid[pid] = by_pid.get(pid, 0) + 1
    assert set(by_pid) <= pids, by_pid
    assert len(by_pid) == WORKERS, f"not every worker ran something: {by_pid}"

    # The killed worker: nothing after its death; its instances taken over after expiry.
    for iid, state in final.items():
        for _, _, pid, ran in ticks_of(state):
            assert pid != victim.pid or ran < killed_at, f"{iid} ran in the dead worker"
    for iid, expires in orphans.items():
        after = [t for t in ticks_of(final[iid]) if t[3] > killed_at]
        assert after, f"{iid}: the victim's instance never ran again"
        _, _, pid, ran = after[0]
        assert pid != victim.pid
        assert ran >= expires, f"{iid} was taken over at {ran}, before its lease expired"

    # Nothing committed is lost: acknowledged ticks, and the state before the restart.
    acknowledged = [ack for c in children for ack in c.acks()]
    for iid, n, pid in acknowledged:
        ticks = ticks_of(final[iid])
        assert len(ticks) >= n, f"acked tick {n} of {iid} lost"
        assert ticks[n - 1][2] == pid, f"acked tick {n} of {iid} was by {pid}: {ticks}"
    for iid, state in before_restart.items():
        kept = ticks_of(final[iid])
        earlier = ticks_of(state)
        assert kept[: len(earlier)] == earlier, f"{iid} lost committed ticks in the restart"
    after_restart = sum(len(c.acks(since=restarted_at)) for c in survivors)
    mark("checked")
    print(
        f"{executed} executions by pid {by_pid}; victim {victim.pid} held {len(orphans)} "
        f"leases; {len(acknowledged)} acks, {after_restart} after the restart; "
        f"timings {timings}"
    )
    assert time.monotonic() - began < 90, timings
