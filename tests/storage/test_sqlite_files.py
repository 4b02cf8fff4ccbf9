"""SQLite's files under attack: removed, moved or replaced while open; created private.

Every test uses real files. An "attack" is done to the database's path while a
`SqliteStorage` has it open; from then on every call must fail with `StorageError` naming
the path, and no call may be reported committed unless its write is in the file that was at
the path when it was acknowledged.
"""

from __future__ import annotations

import asyncio
import os
import random
import re
import shutil
import sqlite3
import stat
import threading
from collections.abc import Awaitable, Callable, Iterator
from datetime import UTC, datetime, timedelta
from pathlib import Path

import msgspec
import pytest

from durable_effect import Effect, Gen, Task, TaskEventContext, ValidationError
from durable_effect.errors import StorageError
from durable_effect.storage import InstanceWrite, Lease, SqliteStorage, _sqlite_batch
from durable_effect.testing import TestRuntime

T0 = datetime(2030, 1, 1, tzinfo=UTC)
TTL = timedelta(seconds=30)
SUFFIXES = ("", "-wal", "-shm")


def remove_directory(db: Path) -> None:
    shutil.rmtree(db.parent)


def move_file(db: Path) -> None:
    db.rename(db.with_name("moved.db"))


def move_all_files(db: Path) -> None:
    for suffix in SUFFIXES:
        Path(f"{db}{suffix}").rename(db.with_name(f"moved.db{suffix}"))


def replace_with_another_database(db: Path) -> None:
    other = db.with_name("other.db")
    with sqlite3.connect(other) as conn:
        conn.execute("CREATE TABLE unrelated (x)")
    conn.close()
    other.rename(db)


def replace_with_an_empty_file(db: Path) -> None:
    db.unlink()
    db.touch()


def remove_the_wal(db: Path) -> None:
    Path(f"{db}-wal").unlink()


ATTACKS: dict[str, Callable[[Path], None]] = {
    "directory removed": remove_directory,
    "file moved": move_file,
    "file, -wal and -shm moved": move_all_files,
    "another database put in its place": replace_with_another_database,
    "an empty file put in its place": replace_with_an_empty_file,
    "-wal removed": remove_the_wal,
}


@pytest.fixture
def db(tmp_path: Path) -> Path:
    directory = tmp_path / "data"
    directory.mkdir()
    return directory / "jobs.db"


async def lease_of(storage: SqliteStorage, instance_id: str) -> Lease:
    got = await storage.acquire([instance_id], owner="w", now=T0, ttl=TTL)
    assert got is not None
    return got.leases[0]


async def put(storage: SqliteStorage, instance_id: str, value: bytes) -> None:
    lease = await lease_of(storage, instance_id)
    write = InstanceWrite(instance_id=instance_id, puts={"k": value}, alarm=T0)
    await storage.commit([lease], [write])


def every_call(storage: SqliteStorage, held: Lease) -> dict[str, Callable[[], Awaitable[object]]]:
    """One call of each operation of the port (and the SQLite extras)."""
    write = InstanceWrite(instance_id=held.instance_id, puts={"k": b"after"})
    return {
        "commit": lambda: storage.commit([held], [write]),
        "extend": lambda: storage.extend(held, now=T0, ttl=TTL),
        "release": lambda: storage.release([held]),
        "acquire": lambda: storage.acquire(["fresh"], owner="w", now=T0, ttl=TTL),
        "acquire several": lambda: storage.acquire(["x", "y"], owner="w", now=T0, ttl=TTL),
        "claim_due": lambda: storage.claim_due(now=T0, owner="w", ttl=TTL, limit=10),
        "load": lambda: storage.load(["a"]),
        "load many": lambda: storage.load([f"i{n}" for n in range(100)]),
        "next_alarm_at": storage.next_alarm_at,
        "list_instances": lambda: storage.list_instances(""),
        "read_pragma": lambda: storage.read_pragma("journal_mode"),
        "wait_for_change": lambda: storage.wait_for_change(0),
    }


@pytest.fixture(params=["gated", "always"])
def checks(request: pytest.FixtureRequest, monkeypatch: pytest.MonkeyPatch) -> str:
    """``gated``: as shipped; ``always``: no check is taken as fresh, as after an idle spell
    longer than `FRESH_CHECK` (so the first write after the attack is refused before it
    writes anything)."""
    if request.param == "always":
        monkeypatch.setattr(_sqlite_batch, "FRESH_CHECK", 0.0)
    return str(request.param)


@pytest.mark.parametrize("attack", ATTACKS)
async def test_after_the_path_changes_every_call_fails_naming_it(
    db: Path, attack: str, checks: str
) -> None:
    async with SqliteStorage(db) as storage:
        for n in range(20):
            await put(storage, "a", f"v{n}".encode())
        held = await lease_of(storage, "b")

        ATTACKS[attack](db)

        # The first call (a read here, or a write) notices; all later calls fail alike.
        for name, call in every_call(storage, held).items():
            with pytest.raises(StorageError) as caught:
                await call()
            assert str(db) in str(caught.value), name
            assert "every call fails" in str(caught.value), name
        with pytest.raises(StorageError, match=r"not the file this storage opened|write-ahead"):
            await put(storage, "c", b"never")
    # A storage opened on what is at the path now sees nothing written after the attack.
    if checks == "always" and db.exists() and attack != "-wal removed":
        async with SqliteStorage(db) as fresh:
            snapshots = await fresh.load(["a", "b", "c"])
            assert not snapshots["b"].exists
            assert not snapshots["c"].exists


@pytest.mark.parametrize("attack", ["directory removed", "file moved", "-wal removed"])
async def test_a_write_is_the_call_that_notices(db: Path, attack: str) -> None:
    """The first call after the attack is a commit: it is refused, not acknowledged."""
    async with SqliteStorage(db) as storage:
        await put(storage, "a", b"before")
        lease = await lease_of(storage, "a")
        ATTACKS[attack](db)
        with pytest.raises(StorageError, match=re.escape(str(db))):
            await storage.commit([lease], [InstanceWrite(instance_id="a", puts={"k": b"x"})])
        with pytest.raises(StorageError, match=re.escape(str(db))):
            await storage.load(["a"])


async def test_concurrent_writers_never_hear_committed_for_a_write_that_is_not_in_the_file(
    db: Path,
) -> None:
    """Writers commit while a thread moves the files away at a random moment.

    Every acknowledged write is in the moved database (that is where the file at the path
    went), and no call that started after the move was acknowledged.
    """
    rng = random.Random(11)
    moved = db.with_name("moved.db")
    acknowledged: dict[str, bytes] = {}
    started_after_move: list[str] = []
    move_done = threading.Event()

    async with SqliteStorage(db) as storage:

        async def writer(w: int) -> None:
            for n in range(10_000):
                after = move_done.is_set()
                instance_id = f"w{w}-{n}"
                try:
                    await put(storage, instance_id, f"{w}:{n}".encode())
                except StorageError:
                    return
                acknowledged[instance_id] = f"{w}:{n}".encode()
                if after:
                    started_after_move.append(instance_id)

        def attack() -> None:
            threading.Event().wait(rng.uniform(0.05, 0.15))
            move_all_files(db)
            move_done.set()

        thread = threading.Thread(target=attack)
        thread.start()
        await asyncio.wait_for(asyncio.gather(*(writer(w) for w in range(8))), 30)
        thread.join()
        assert acknowledged, "the writers got nothing done before the move"
    assert started_after_move == []
    conn = sqlite3.connect(moved)
    try:
        stored = dict(conn.execute("SELECT instance_id, value FROM records WHERE key = 'k'"))
    finally:
        conn.close()
    missing = {i: v for i, v in acknowledged.items() if stored.get(i) != v}
    assert missing == {}


async def test_a_reopened_storage_works_on_the_file_put_back(db: Path) -> None:
    async with SqliteStorage(db) as storage:
        await put(storage, "a", b"kept")
        move_all_files(db)
        with pytest.raises(StorageError):
            await put(storage, "b", b"lost")
    for suffix in SUFFIXES:
        moved = db.with_name(f"moved.db{suffix}")
        if moved.exists():
            moved.rename(f"{db}{suffix}")
    async with SqliteStorage(db) as storage:
        assert (await storage.load(["a"]))["a"].records == {"k": b"kept"}
        await put(storage, "c", b"new")


# -- permissions ---------------------------------------------------------------------------


@pytest.fixture(params=[0o022, 0o000], ids=["umask-022", "umask-000"])
def umask(request: pytest.FixtureRequest) -> Iterator[int]:
    old = os.umask(request.param)
    try:
        yield request.param
    finally:
        os.umask(old)


def mode(path: Path | str) -> int:
    return stat.S_IMODE(os.stat(path).st_mode)


async def test_a_new_database_and_its_wal_and_shm_are_private(db: Path, umask: int) -> None:
    async with SqliteStorage(db) as storage:
        await put(storage, "a", b"v")
        modes = {suffix: mode(f"{db}{suffix}") for suffix in SUFFIXES}
    assert modes == {"": 0o600, "-wal": 0o600, "-shm": 0o600}
    assert mode(db) == 0o600


async def test_an_existing_file_keeps_its_permissions(db: Path) -> None:
    db.touch(mode=0o640)
    os.chmod(db, 0o640)
    async with SqliteStorage(db) as storage:
        await put(storage, "a", b"v")
        assert mode(db) == 0o640
        assert mode(f"{db}-wal") == 0o640


async def test_a_missing_directory_is_an_open_error_naming_the_path(tmp_path: Path) -> None:
    path = tmp_path / "missing" / "jobs.db"
    with pytest.raises(StorageError) as caught:
        await SqliteStorage(path).open()
    assert caught.value.operation == "open"
    assert str(path) in str(caught.value)
    assert not path.parent.exists()


# -- through the public API ----------------------------------------------------------------


class Count(msgspec.Struct):
    n: int = 0


class Bump(msgspec.Struct, tag=True):
    pass


@Effect.gen
def bump(event: Bump, ctx: TaskEventContext[Count]) -> Gen[None, ValidationError]:
    state = yield from ctx.state
    yield from ctx.set_state(Count((state or Count()).n + 1))


counter = Task.make(Count, Bump, bump, lambda ctx: Effect.succeed(None))


@pytest.mark.parametrize("attack", ["directory removed", "another database put in its place"])
async def test_client_calls_fail_with_storage_error_naming_the_file(db: Path, attack: str) -> None:
    async with TestRuntime({"counter": counter}, storage=f"sqlite:///{db}") as rt:
        handle = rt.client.task(counter)
        for _ in range(3):
            await handle.send(id="a", event=Bump())
        ATTACKS[attack](db)
        with pytest.raises(StorageError, match=re.escape(str(db))):
            await handle.send(id="a", event=Bump())
        with pytest.raises(StorageError, match=re.escape(str(db))):
            await handle.get_state("a")
        with pytest.raises(StorageError, match=re.escape(str(db))):
            await rt.run_until_idle()
