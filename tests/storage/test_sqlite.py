"""SQLite specifics: pragmas, schema, several processes, group commit, URL parsing."""

from __future__ import annotations

import asyncio
import multiprocessing
import re
import sqlite3
import subprocess
import sys
from collections.abc import AsyncIterator, Sequence
from datetime import UTC, datetime, timedelta
from multiprocessing.synchronize import Barrier
from pathlib import Path

import pytest

from durable_effect.errors import LeaseLostError, StorageError
from durable_effect.storage import (
    InstanceWrite,
    Lease,
    MemoryStorage,
    SqliteStorage,
    Storage,
    open_storage,
)
from durable_effect.storage import _sqlite_schema as schema
from durable_effect.storage._sqlite import SCHEMA_VERSION

T0 = datetime(2030, 1, 1, tzinfo=UTC)
TTL = timedelta(seconds=30)


@pytest.fixture
async def storage(tmp_path: Path) -> AsyncIterator[SqliteStorage]:
    async with SqliteStorage(tmp_path / "jobs.db") as backend:
        yield backend


async def _leases(storage: Storage, ids: list[str], *, now: datetime = T0) -> list[Lease]:
    got = await storage.acquire(ids, owner="w", now=now, ttl=TTL)
    assert got is not None
    return list(got.leases)


def _raw(path: str | Path) -> sqlite3.Connection:
    return sqlite3.connect(path, isolation_level=None)


# -- pragmas -------------------------------------------------------------------------------


async def test_wal_is_on_for_the_file(storage: SqliteStorage) -> None:
    assert await storage.read_pragma("journal_mode") == "wal"
    raw = _raw(storage.path)
    try:
        assert raw.execute("PRAGMA journal_mode").fetchone() == ("wal",)
    finally:
        raw.close()


@pytest.mark.parametrize(
    ("query", "expected"), [("", 2), ("?synchronous=full", 2), ("?synchronous=NORMAL", 1)]
)
async def test_synchronous_follows_the_url(tmp_path: Path, query: str, expected: int) -> None:
    backend = open_storage(f"sqlite:///{tmp_path}/jobs.db{query}")
    assert isinstance(backend, SqliteStorage)
    async with backend:
        assert await backend.read_pragma("synchronous") == expected
        await _leases(backend, ["i"])  # a lease-only transaction runs relaxed ...
        assert await backend.read_pragma("synchronous") == expected  # ... and restores it
        assert await backend.read_pragma("wal_autocheckpoint") == 1000


async def test_busy_timeout_bounds_the_wait_for_another_writer(tmp_path: Path) -> None:
    async with SqliteStorage(tmp_path / "jobs.db", busy_timeout_ms=50) as backend:
        assert await backend.read_pragma("busy_timeout") == 50
        (lease,) = await _leases(backend, ["i"])
        blocker = _raw(tmp_path / "jobs.db")
        blocker.execute("BEGIN IMMEDIATE")
        write = InstanceWrite(instance_id="i", puts={"k": b"v"})
        try:
            with pytest.raises(StorageError) as caught:
                await backend.commit([lease], [write])
            assert caught.value.operation == "commit"
            assert "locked" in str(caught.value)
        finally:
            blocker.execute("ROLLBACK")
            blocker.close()
        assert not (await backend.load(["i"]))["i"].exists
        await backend.commit([lease], [write])
        assert (await backend.load(["i"]))["i"].records == {"k": b"v"}


async def test_read_pragma_refuses_other_names(storage: SqliteStorage) -> None:
    with pytest.raises(ValueError, match="unsupported pragma"):
        await storage.read_pragma("writable_schema = 1")


# -- schema --------------------------------------------------------------------------------


async def test_schema_is_recorded_and_narrow(storage: SqliteStorage) -> None:
    got = await storage.acquire(["i"], owner="w", now=T0, ttl=TTL)
    assert got is not None
    at = T0 + timedelta(microseconds=7)
    await storage.commit(got.leases, [InstanceWrite(instance_id="i", alarm=at)])
    raw = _raw(storage.path)
    try:
        meta = dict(raw.execute("SELECT key, value FROM meta").fetchall())
        assert meta["schema_version"] == SCHEMA_VERSION
        assert meta["generation"] == got.leases[0].generation

        def columns(table: str) -> list[str]:
            return [row[1] for row in raw.execute(f"PRAGMA table_info({table})")]

        assert columns("records") == ["instance_id", "key", "value"]
        assert columns("alarms") == ["instance_id", "due_at"]
        assert columns("leases") == ["instance_id", "owner", "generation", "expires_at"]
        index = [row[2] for row in raw.execute("PRAGMA index_info(alarms_due)")]
        assert index == ["due_at", "instance_id"]
        assert columns("index_entries") == ["instance_id", "name", "key"]
        assert columns("index_counts") == ["name", "n"]
        order = [row[2] for row in raw.execute("PRAGMA index_info(index_order)")]
        assert order == ["name", "key", "instance_id"]
        micros = (at - datetime(1970, 1, 1, tzinfo=UTC)) // timedelta(microseconds=1)
        assert raw.execute("SELECT due_at FROM alarms").fetchall() == [(micros,)]
    finally:
        raw.close()


async def test_reopening_does_not_migrate_again(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    for _ in range(3):
        async with SqliteStorage(path):
            pass
    raw = _raw(path)
    try:
        rows = raw.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        assert rows == [(SCHEMA_VERSION,)]
    finally:
        raw.close()


@pytest.mark.parametrize("version", range(1, SCHEMA_VERSION))
async def test_an_older_schema_is_migrated_with_its_data(tmp_path: Path, version: int) -> None:
    """A file made by an older release opens at the current version, its data intact."""
    path = tmp_path / "old.db"
    raw = _raw(path)
    try:
        raw.execute("PRAGMA journal_mode = WAL")
        raw.execute(schema._CREATE_META)
        for statements in schema._MIGRATIONS[:version]:
            for statement in statements:
                raw.execute(statement)
        raw.execute("INSERT INTO meta VALUES ('schema_version', ?)", (version,))
        raw.execute("INSERT INTO records VALUES ('old', 'k', x'76'), ('old', 'j', x'')")
        raw.execute("INSERT INTO alarms VALUES ('old', 0)")
    finally:
        raw.close()
    epoch = datetime(1970, 1, 1, tzinfo=UTC)
    async with SqliteStorage(path) as storage:
        (snapshot,) = (await storage.load(["old"])).values()
        assert snapshot.records == {"k": b"v", "j": b""}
        assert snapshot.alarm_at == epoch
        # every operation of the current version works on the migrated file
        got = await storage.acquire(["old", "new"], owner="w", now=T0, ttl=TTL)
        assert got is not None
        await storage.commit(
            got.leases,
            [
                InstanceWrite(instance_id="old", puts={"k": b"w"}, index={"i": "2"}),
                InstanceWrite(instance_id="new", puts={"n": b"1"}, index={"i": "1"}),
            ],
        )
        assert [h.instance_id for h in await storage.scan_index(["i"], limit=5)] == ["new", "old"]
        assert await storage.count_index(["i"]) == {"i": 2}
        claimed = await storage.claim_due(now=T0, owner="w", ttl=TTL, limit=10)
        assert [c.lease.instance_id for c in claimed] == ["old"]
        await storage.commit([claimed[0].lease], [], feed=[b"after the migration"])
        assert [e.data for e in await storage.read_feed(after=0, limit=5)] == [
            b"after the migration"
        ]
    raw = _raw(path)
    try:
        rows = raw.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchall()
        assert rows == [(SCHEMA_VERSION,)]
    finally:
        raw.close()


async def test_a_newer_schema_is_refused(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    async with SqliteStorage(path):
        pass
    raw = _raw(path)
    raw.execute("UPDATE meta SET value = 99 WHERE key = 'schema_version'")
    raw.close()
    backend = SqliteStorage(path)
    with pytest.raises(StorageError, match="schema version 99"):
        await backend.open()
    with pytest.raises(StorageError):
        await backend.load(["i"])


async def test_open_reports_an_unusable_path(tmp_path: Path) -> None:
    with pytest.raises(StorageError) as caught:
        await SqliteStorage(tmp_path / "missing" / "jobs.db").open()
    assert caught.value.operation == "open"


async def test_calls_on_a_closed_storage_raise_storage_error(tmp_path: Path) -> None:
    backend = SqliteStorage(tmp_path / "jobs.db")
    with pytest.raises(StorageError, match="not open"):
        await backend.next_alarm_at()
    await backend.open()
    await backend.close()
    with pytest.raises(StorageError, match="not open"):
        await backend.acquire(["i"], owner="w", now=T0, ttl=TTL)


async def test_naive_instants_are_refused(storage: SqliteStorage) -> None:
    with pytest.raises(ValueError, match="aware"):
        await storage.acquire(["i"], owner="w", now=datetime(2030, 1, 1), ttl=TTL)


@pytest.mark.parametrize("bad", ["", "x" * 1025, "nul\x00", "lone \ud800"])
async def test_invalid_ids_are_refused(storage: SqliteStorage, bad: str) -> None:
    with pytest.raises(ValueError, match="instance id"):
        await storage.acquire([bad], owner="w", now=T0, ttl=TTL)


async def test_acquire_of_many_ids_is_still_all_or_none(storage: SqliteStorage) -> None:
    ids = [f"many-{n:04d}" for n in range(1200)]
    await _leases(storage, [ids[-1]])
    assert await storage.acquire(ids, owner="w2", now=T0, ttl=TTL) is None
    got = await storage.acquire(ids[:-1], owner="w2", now=T0, ttl=TTL)
    assert got is not None
    assert len(got.leases) == len(got.snapshots) == 1199


# -- several processes ---------------------------------------------------------------------


def _open_and_commit(path: str, n: int, barrier: Barrier) -> None:
    async def run() -> None:
        barrier.wait(timeout=30)
        async with SqliteStorage(path) as backend:
            instance_id = f"proc-{n}"
            got = await backend.acquire([instance_id], owner=instance_id, now=T0, ttl=TTL)
            assert got is not None
            write = InstanceWrite(instance_id=instance_id, puts={"n": b"%d" % n}, alarm=T0)
            await backend.commit(got.leases, [write])

    asyncio.run(run())


def _claim_all(path: str, owner: str, barrier: Barrier, out: multiprocessing.Queue[str]) -> None:
    async def run() -> None:
        async with SqliteStorage(path) as backend:
            barrier.wait(timeout=30)
            while claimed := await backend.claim_due(now=T0, owner=owner, ttl=TTL, limit=5):
                for c in claimed:
                    out.put(c.lease.instance_id)
                leases = [c.lease for c in claimed]
                writes = [InstanceWrite(instance_id=x.instance_id, alarm=None) for x in leases]
                await backend.commit(leases, writes)

    asyncio.run(run())


def _run_processes(targets: Sequence[multiprocessing.process.BaseProcess]) -> None:
    for process in targets:
        process.start()
    for process in targets:
        process.join(timeout=60)
    for process in targets:
        if process.is_alive():
            process.kill()
    assert [p.exitcode for p in targets] == [0] * len(targets)


@pytest.mark.live
async def test_processes_opening_a_fresh_file_at_once_all_succeed(tmp_path: Path) -> None:
    path = str(tmp_path / "fresh.db")
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(6)
    processes = [ctx.Process(target=_open_and_commit, args=(path, n, barrier)) for n in range(6)]
    await asyncio.to_thread(_run_processes, processes)
    async with SqliteStorage(path) as backend:
        ids = [f"proc-{n}" for n in range(6)]
        assert list(await backend.list_instances("proc-")) == ids
        snaps = await backend.load(ids)
        assert [snaps[i].records["n"] for i in ids] == [b"%d" % n for n in range(6)]


@pytest.mark.live
async def test_processes_claiming_at_once_never_share_an_alarm(tmp_path: Path) -> None:
    path = str(tmp_path / "claims.db")
    ids = [f"due-{n:02d}" for n in range(60)]
    async with SqliteStorage(path) as backend:
        leases = await _leases(backend, ids)
        await backend.commit(leases, [InstanceWrite(instance_id=i, alarm=T0) for i in ids])
    ctx = multiprocessing.get_context("spawn")
    barrier = ctx.Barrier(3)
    out: multiprocessing.Queue[str] = ctx.Queue()
    processes = [
        ctx.Process(target=_claim_all, args=(path, f"p{n}", barrier, out)) for n in range(3)
    ]
    await asyncio.to_thread(_run_processes, processes)
    claimed = [out.get(timeout=10) for _ in ids]
    assert sorted(claimed) == ids
    assert out.empty()
    async with SqliteStorage(path) as backend:
        assert await backend.next_alarm_at() is None


_COMMIT_UNTIL_KILLED = """
import asyncio, sys
from datetime import UTC, datetime, timedelta
from durable_effect.storage import InstanceWrite, SqliteStorage

async def main() -> None:
    now = datetime(2030, 1, 1, tzinfo=UTC)
    async with SqliteStorage(sys.argv[1]) as storage:
        n = 0
        while True:
            ids = [f"k{n + i:06d}" for i in range(4)]
            got = await storage.acquire(ids, owner="w", now=now, ttl=timedelta(seconds=30))
            assert got is not None
            writes = [InstanceWrite(instance_id=i, puts={"v": i.encode()}) for i in ids]
            await asyncio.gather(*(storage.commit([x], [w]) for x, w in zip(got.leases, writes)))
            print(" ".join(ids), flush=True)
            n += 4

asyncio.run(main())
"""


def _commit_until_killed(path: str, lines: int) -> list[str]:
    with subprocess.Popen(
        [sys.executable, "-c", _COMMIT_UNTIL_KILLED, path],
        stdout=subprocess.PIPE,
        text=True,
    ) as child:
        assert child.stdout is not None
        committed: list[str] = []
        try:
            for _ in range(lines):
                committed.extend(child.stdout.readline().split())
        finally:
            child.kill()
            child.wait(timeout=30)
    return committed


@pytest.mark.live
async def test_a_killed_process_loses_no_returned_commit(tmp_path: Path) -> None:
    path = str(tmp_path / "killed.db")
    committed = await asyncio.wait_for(asyncio.to_thread(_commit_until_killed, path, 50), 60)
    assert len(committed) == 200
    async with SqliteStorage(path) as backend:
        snaps = await backend.load(committed)
        assert all(snaps[i].records == {"v": i.encode()} for i in committed)


# -- group commit --------------------------------------------------------------------------


async def test_concurrent_commits_share_transactions(storage: SqliteStorage) -> None:
    ids = [f"g{n:02d}" for n in range(64)]
    leases = await asyncio.gather(*(_leases(storage, [i]) for i in ids))
    before = storage.transactions_committed
    await asyncio.gather(
        *(
            storage.commit(lease, [InstanceWrite(instance_id=i, puts={"v": i.encode()})])
            for i, lease in zip(ids, leases, strict=True)
        )
    )
    assert storage.transactions_committed - before < 64
    snaps = await storage.load(ids)
    assert all(snaps[i].records == {"v": i.encode()} for i in ids)


async def test_one_fenced_commit_in_a_group_fails_alone(storage: SqliteStorage) -> None:
    ids = [f"g{n:02d}" for n in range(64)]
    leases = await _leases(storage, ids)
    victim = leases[17]
    await _leases(storage, [victim.instance_id], now=T0 + TTL)  # another worker takes it
    before = storage.transactions_committed
    results = await asyncio.gather(
        *(
            storage.commit([x], [InstanceWrite(instance_id=x.instance_id, puts={"v": b"1"})])
            for x in leases
        ),
        return_exceptions=True,
    )
    assert storage.transactions_committed - before < 64
    assert results[17] == LeaseLostError(
        instance_id=victim.instance_id, owner="w", generation=victim.generation
    )
    assert [r for n, r in enumerate(results) if n != 17] == [None] * 63
    assert list(await storage.list_instances("g")) == [i for i in ids if i != victim.instance_id]


async def test_sequential_commits_do_not_wait_for_company(storage: SqliteStorage) -> None:
    before = storage.transactions_committed
    for n in range(5):
        (lease,) = await _leases(storage, [f"s{n}"])
        await storage.commit([lease], [InstanceWrite(instance_id=f"s{n}", puts={"v": b"1"})])
    assert storage.transactions_committed - before == 10  # 5 acquires, 5 commits


async def test_close_finishes_queued_writes(tmp_path: Path) -> None:
    path = tmp_path / "jobs.db"
    backend = SqliteStorage(path)
    await backend.open()
    ids = [f"q{n}" for n in range(10)]
    leases = await _leases(backend, ids)
    commits = [
        backend.commit([lease], [InstanceWrite(instance_id=lease.instance_id, alarm=T0)])
        for lease in leases
    ]
    # gather starts the commits first (they queue), then close, which waits for them.
    await asyncio.gather(*commits, backend.close())
    async with SqliteStorage(path) as reopened:
        assert list(await reopened.list_instances("q")) == ids


# -- URLs ----------------------------------------------------------------------------------


def test_open_storage_parses_urls() -> None:
    assert isinstance(open_storage("memory://"), MemoryStorage)
    relative = open_storage("sqlite:///data/jobs.db")
    assert isinstance(relative, SqliteStorage)
    assert (relative.path, relative.synchronous) == ("data/jobs.db", "full")
    absolute = open_storage("sqlite:////var/lib/jobs%20db.sqlite?synchronous=normal")
    assert isinstance(absolute, SqliteStorage)
    assert (absolute.path, absolute.synchronous) == ("/var/lib/jobs db.sqlite", "normal")
    given = MemoryStorage()
    assert open_storage(given) is given


@pytest.mark.parametrize(
    "url",
    [
        "",
        "jobs.db",
        "redis://localhost",
        "memory://somewhere",
        "memory://?x=1",
        "sqlite://host/jobs.db",
        "sqlite:///",
        "sqlite:jobs.db",
        "sqlite:///jobs.db?synchronous=off",
        "sqlite:///jobs.db?timeout=5",
        "sqlite:///:memory:",
    ],
)
def test_open_storage_refuses_bad_urls(url: str) -> None:
    with pytest.raises(ValueError, match=re.escape(repr(url))):
        open_storage(url)


def test_postgres_without_its_module_says_what_to_install(
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setitem(sys.modules, "durable_effect.storage._postgres", None)
    with pytest.raises(ImportError, match=re.escape("pip install durable_effect[postgres]")):
        open_storage("postgresql://user:secret@localhost/jobs")
    with pytest.raises(ImportError) as caught:
        open_storage("postgres://user:secret@localhost/jobs")
    assert "secret" not in str(caught.value)


def test_postgres_urls_build_an_unopened_backend_when_available() -> None:
    try:
        backend: Storage | ImportError = open_storage("postgresql://user@localhost/jobs")
    except ImportError as exc:
        backend = exc
    if isinstance(backend, ImportError):
        assert "pip install durable_effect[postgres]" in str(backend)
    else:
        assert isinstance(backend, Storage)
