"""SQLite: the statements a call costs (the short paths of issue 19), and their fencing.

Each short path is checked twice: that it runs the few statements it is meant to (the
writer's and reader's trace, at the driver), and that it keeps its guarantee against a
second `SqliteStorage` on the same file (another process, as far as the file can tell).
"""

from __future__ import annotations

import asyncio
import sqlite3
from collections.abc import AsyncIterator, Iterator
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from durable_effect.errors import LeaseLostError
from durable_effect.storage import InstanceWrite, SqliteStorage
from durable_effect.storage._port import GuardFailed

T0 = datetime(2030, 1, 1, tzinfo=UTC)
TTL = timedelta(seconds=30)


@pytest.fixture
async def pair(tmp_path: Path) -> AsyncIterator[tuple[SqliteStorage, SqliteStorage]]:
    """Two storage objects on one file: this process and, in effect, another one."""
    async with (
        SqliteStorage(tmp_path / "jobs.db") as ours,
        SqliteStorage(tmp_path / "jobs.db") as theirs,
    ):
        yield ours, theirs


@contextmanager
def traced(storage: SqliteStorage) -> Iterator[list[str]]:
    """The statements the writer runs meanwhile (inline reads and writes run there)."""
    writer = storage._group._writer
    assert writer is not None
    seen: list[str] = []
    writer.set_trace_callback(seen.append)
    try:
        yield seen
    finally:
        writer.set_trace_callback(None)


async def test_a_guarded_commit_reads_its_fence_and_guard_in_one_statement(
    pair: tuple[SqliteStorage, SqliteStorage],
) -> None:
    ours, _ = pair
    got = await ours.acquire(["run"], owner="w1", now=T0, ttl=TTL)
    assert got is not None
    write = InstanceWrite(instance_id="run", puts={"step": b"1"})
    with traced(ours) as seen:
        await ours.commit(got.leases, [write], release=False, unless_present=[("flag", "stop")])
    reads = [s for s in seen if s.lstrip().upper().startswith("SELECT")]
    assert len(reads) == 1, seen
    assert (await ours.load(["run"]))["run"].records == {"step": b"1"}


async def test_the_one_statement_fence_refuses_a_lease_another_process_took_over(
    pair: tuple[SqliteStorage, SqliteStorage],
) -> None:
    ours, theirs = pair
    got = await ours.acquire(["run"], owner="w1", now=T0, ttl=TTL)
    assert got is not None
    taken = await theirs.acquire(["run"], owner="w2", now=T0 + TTL, ttl=TTL)  # expired: theirs
    assert taken is not None
    write = InstanceWrite(instance_id="run", puts={"step": b"1"})
    with pytest.raises(LeaseLostError):
        await ours.commit(got.leases, [write], release=False, unless_present=[("flag", "stop")])
    # The fence comes before the guard: with the guard present too, the lease is what fails.
    await theirs.commit(taken.leases, [InstanceWrite(instance_id="run", puts={"x": b"1"})])
    got_flag = await theirs.acquire(["flag"], owner="w2", now=T0, ttl=TTL)
    assert got_flag is not None
    await theirs.commit(got_flag.leases, [InstanceWrite(instance_id="flag", puts={"stop": b""})])
    with pytest.raises(LeaseLostError):
        await ours.commit(got.leases, [write], unless_present=[("flag", "stop")])
    assert (await ours.load(["run"]))["run"].records == {"x": b"1"}


async def test_the_one_statement_guard_sees_a_record_another_process_wrote(
    pair: tuple[SqliteStorage, SqliteStorage],
) -> None:
    ours, theirs = pair
    got = await ours.acquire(["run"], owner="w1", now=T0, ttl=TTL)
    assert got is not None
    flag = await theirs.acquire(["flag"], owner="w2", now=T0, ttl=TTL)
    assert flag is not None
    await theirs.commit(flag.leases, [InstanceWrite(instance_id="flag", puts={"stop": b""})])
    write = InstanceWrite(instance_id="run", puts={"step": b"1"})
    with pytest.raises(GuardFailed) as caught:
        await ours.commit(got.leases, [write], unless_present=[("flag", "stop")])
    assert (caught.value.instance_id, caught.value.key) == ("flag", "stop")
    assert not (await ours.load(["run"]))["run"].exists
    # Refused, the lease was kept: it still commits once the guard is gone.
    flag = await theirs.acquire(["flag"], owner="w2", now=T0, ttl=TTL)
    assert flag is not None
    gone = InstanceWrite(instance_id="flag", deletes=frozenset({"stop"}))
    await theirs.commit(flag.leases, [gone])
    await ours.commit(got.leases, [write], unless_present=[("flag", "stop")])
    assert (await ours.load(["run"]))["run"].records == {"step": b"1"}


async def test_loading_one_instance_is_one_statement_and_sees_another_processes_commit(
    pair: tuple[SqliteStorage, SqliteStorage],
) -> None:
    ours, theirs = pair
    got = await theirs.acquire(["run"], owner="w2", now=T0, ttl=TTL)
    assert got is not None
    due = T0 + timedelta(seconds=5)
    write = InstanceWrite(instance_id="run", puts={"a": b"1", "b": b"2"}, alarm=due)
    await theirs.commit(got.leases, [write])
    with traced(ours) as seen:
        snapshot = (await ours.load(["run"]))["run"]
    assert (snapshot.records, snapshot.alarm_at) == ({"a": b"1", "b": b"2"}, due)
    assert len(seen) == 1, seen  # no BEGIN/COMMIT around it: one statement is consistent
    many = await ours.load(["run", "other"])
    assert many["run"].records == {"a": b"1", "b": b"2"}
    assert not many["other"].exists


async def test_the_thread_waits_for_a_busy_file_without_switching_the_busy_timeout(
    tmp_path: Path,
) -> None:
    async with SqliteStorage(tmp_path / "jobs.db", busy_timeout_ms=2000) as storage:
        got = await storage.acquire(["run"], owner="w1", now=T0, ttl=TTL)
        assert got is not None
        blocker = sqlite3.connect(storage.path, isolation_level=None)
        blocker.execute("BEGIN IMMEDIATE")
        write = InstanceWrite(instance_id="run", puts={"k": b"v"})
        with traced(storage) as seen:
            try:
                pending = asyncio.ensure_future(storage.commit(got.leases, [write]))
                await asyncio.sleep(0.05)
                assert not pending.done()  # waiting on the thread for the file
            finally:
                blocker.execute("ROLLBACK")
                blocker.close()
            await asyncio.wait_for(pending, 5)
        assert not [s for s in seen if "busy_timeout" in s], seen
        assert (await storage.load(["run"]))["run"].records == {"k": b"v"}
        writer = storage._group._writer
        assert writer is not None
        assert writer.execute("PRAGMA busy_timeout").fetchone()[0] == 0
