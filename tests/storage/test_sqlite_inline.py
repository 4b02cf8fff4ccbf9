"""SQLite: transactions that run inline on the event loop, and what keeps that safe."""

from __future__ import annotations

import asyncio
import os
import sqlite3
import threading
from collections.abc import AsyncIterator
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Literal

import pytest

from durable_effect.storage import InstanceWrite, SqliteStorage

T0 = datetime(2030, 1, 1, tzinfo=UTC)
TTL = timedelta(seconds=30)


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    async with SqliteStorage(tmp_path / "jobs.db") as backend:
        yield backend


async def _call(storage: SqliteStorage, instance_id: str) -> None:
    got = await storage.acquire([instance_id], owner="w", now=T0, ttl=TTL)
    assert got is not None
    await storage.commit(got.leases, [InstanceWrite(instance_id=instance_id, puts={"v": b"1"})])


def _writer_settings(storage: SqliteStorage) -> tuple[int, int]:
    writer = storage._group._writer
    assert writer is not None
    synchronous = writer.execute("PRAGMA synchronous").fetchone()[0]
    busy = writer.execute("PRAGMA busy_timeout").fetchone()[0]
    return synchronous, busy


async def test_a_write_waits_on_the_thread_while_another_process_holds_the_file(
    storage: SqliteStorage,
) -> None:
    blocker = sqlite3.connect(storage.path, isolation_level=None)
    blocker.execute("BEGIN IMMEDIATE")
    try:
        pending = asyncio.ensure_future(storage.acquire(["i"], owner="w", now=T0, ttl=TTL))
        await asyncio.sleep(0.05)
        assert not pending.done()  # not failed at once: waiting for the busy file
    finally:
        blocker.execute("ROLLBACK")
        blocker.close()
    got = await asyncio.wait_for(pending, 5)
    assert got is not None
    assert [lease.instance_id for lease in got.leases] == ["i"]


async def test_a_loop_of_writes_lets_other_tasks_run(storage: SqliteStorage) -> None:
    turns = 0
    stop = False

    async def other() -> None:
        nonlocal turns
        while not stop:
            turns += 1
            await asyncio.sleep(0)

    task = asyncio.ensure_future(other())
    await asyncio.sleep(0)
    before = turns
    for n in range(50):
        await _call(storage, f"i{n}")
    stop = True
    await task
    assert turns - before >= 50


@pytest.mark.parametrize("synchronous", ["full", "normal"])
async def test_the_writer_is_back_at_rest_after_every_kind_of_batch(
    tmp_path: Path, synchronous: Literal["full", "normal"]
) -> None:
    async with SqliteStorage(tmp_path / "jobs.db", synchronous=synchronous) as backend:
        await _call(backend, "inline")
        assert _writer_settings(backend) == (0, 0)  # OFF, no busy wait
        ids = [f"big-{n:03d}" for n in range(300)]  # too big to run inline
        got = await backend.acquire(ids, owner="w", now=T0, ttl=TTL)
        assert got is not None
        await backend.commit(got.leases, [InstanceWrite(instance_id=i, alarm=T0) for i in ids])
        assert _writer_settings(backend) == (0, 0)
        expected = 2 if synchronous == "full" else 1
        assert await backend.read_pragma("synchronous") == expected  # the reader: base setting
        assert await backend.next_alarm_at() == T0


async def test_the_wal_stays_bounded_under_inline_writes(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    async with SqliteStorage(path, synchronous="normal") as backend:
        for n in range(3000):  # ~12,000 WAL frames (~48 MB) if nothing checkpointed
            await _call(backend, f"i{n:05d}")
        await asyncio.sleep(0.1)  # let a checkpoint in progress finish
        wal = os.path.getsize(f"{path}-wal")
        assert wal < 16 * 2**20
        assert len(await backend.list_instances("i")) == 3000


async def test_a_batch_of_purges_runs_on_the_thread_not_the_loop(tmp_path: Path) -> None:
    """A purge deletes rows its write does not list (every record, index entry, count), so a
    commit of 16 purges is not the small batch that may run inline: it never blocks the loop
    (the retention sweep's batches; an alarm due meanwhile still starts on time)."""
    async with SqliteStorage(tmp_path / "jobs.db", synchronous="normal") as backend:
        ids = [f"run-{n:02d}" for n in range(16)]
        got = await backend.acquire(ids, owner="w", now=T0, ttl=TTL)
        assert got is not None
        puts = {f"k{k}": b"v" for k in range(4)}
        await backend.commit(got.leases, [InstanceWrite(instance_id=i, puts=puts) for i in ids])
        got = await backend.acquire(ids, owner="w", now=T0, ttl=TTL)
        assert got is not None
        writer = backend._group._writer
        assert writer is not None
        threads: set[int] = set()

        def traced(statement: str) -> None:
            if statement.lstrip().upper().startswith("DELETE"):
                threads.add(threading.get_ident())

        writer.set_trace_callback(traced)
        try:
            await backend.commit(
                got.leases, [InstanceWrite(instance_id=i, purge=True) for i in ids]
            )
        finally:
            writer.set_trace_callback(None)
        assert threads, "the purge ran no DELETE"
        assert threading.get_ident() not in threads
        assert (await backend.load(ids[:1]))[ids[0]].records == {}
