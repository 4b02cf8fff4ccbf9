"""What only `PostgresStorage` promises: several processes on one database, and the server's
moods (concurrent first opens, LISTEN/NOTIFY across objects, SKIP LOCKED claims from two
"processes", restarts). Two `PostgresStorage` objects stand for two processes: each has its
own pool and its own LISTEN connection, exactly as another process would.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import sys
import time
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from typing import TypeVar

import psycopg
import pytest

from durable_effect.errors import LeaseLostError, StorageError
from durable_effect.storage import (
    KEEP,
    AlarmChange,
    InstanceWrite,
    Lease,
    MemoryStorage,
    open_storage,
)
from durable_effect.storage import _postgres_sql as q
from durable_effect.storage._postgres import PostgresStorage
from tests.conftest_pg import PgStore, pg_server, pg_store, pg_url  # noqa: F401
from tests.pg_harness import PgServer
from tests.storage.test_postgres_schema import make_old_schema

pytestmark = pytest.mark.postgres

T = TypeVar("T")
T0 = datetime(2030, 1, 1, tzinfo=UTC)
TTL = timedelta(seconds=30)


@pytest.fixture
async def pair(pg_store: PgStore) -> AsyncIterator[tuple[PostgresStorage, PostgresStorage]]:  # noqa: F811
    """Two opened storages on one store, as two processes would have."""
    first, second = (
        PostgresStorage(pg_store.url, schema=pg_store.schema, notify_channel=pg_store.schema)
        for _ in range(2)
    )
    await first.open()
    await second.open()
    try:
        yield first, second
    finally:
        await asyncio.gather(first.close(), second.close())


async def lease_of(storage: PostgresStorage, instance_id: str, *, now: datetime = T0) -> Lease:
    got = await storage.acquire([instance_id], owner="test", now=now, ttl=TTL)
    assert got is not None
    return got.leases[0]


async def put_alarms(storage: PostgresStorage, ids: list[str], at: datetime) -> None:
    """Set an alarm on every id in one commit."""
    got = await storage.acquire(ids, owner="setup", now=at - TTL, ttl=TTL)
    assert got is not None
    writes = [InstanceWrite(instance_id=i, puts={"id": i.encode()}, alarm=at) for i in ids]
    await storage.commit(got.leases, writes)


async def eventually(action: Callable[[], Awaitable[T]], *, within: float = 20.0) -> T:
    """``action()`` once it stops raising `StorageError` (after a server came back)."""
    deadline = time.monotonic() + within
    while True:
        try:
            return await action()
        except StorageError:
            if time.monotonic() > deadline:
                raise
            await asyncio.sleep(0.1)


async def wait_listening(storage: PostgresStorage, *, within: float = 10.0) -> None:
    """Until the LISTEN connection of ``storage`` is up again."""
    deadline = time.monotonic() + within
    while not storage.listening:
        assert time.monotonic() < deadline, "the listener did not reconnect"
        await asyncio.sleep(0.02)


def query(url: str, sql: str, *params: object) -> list[tuple[object, ...]]:
    with psycopg.connect(url, autocommit=True) as conn:
        cur = conn.execute(sql.encode(), params or None)
        return cur.fetchall() if cur.description is not None else []


# -- opening and the schema ------------------------------------------------------------------


async def test_concurrent_first_opens_of_a_fresh_database_all_succeed(pg_url: str) -> None:  # noqa: F811
    storages = [PostgresStorage(pg_url, min_size=1, max_size=2) for _ in range(4)]
    try:
        await asyncio.gather(*(s.open() for s in storages))
        lease = await lease_of(storages[0], "i")
        await storages[0].commit([lease], [InstanceWrite(instance_id="i", alarm=T0)])
        for storage in storages:
            assert await storage.next_alarm_at() == T0
    finally:
        await asyncio.gather(*(s.close() for s in storages))
    assert query(pg_url, "SELECT key, value FROM durable_effect.meta") == [
        ("schema_version", q.SCHEMA_VERSION)
    ]


async def test_open_storage_builds_it_from_a_url(pg_url: str) -> None:  # noqa: F811
    storage = open_storage(pg_url)
    assert isinstance(storage, PostgresStorage)
    async with storage:
        assert await storage.next_alarm_at() is None
    legacy = open_storage(pg_url.replace("postgresql://", "postgres://", 1))
    async with legacy:
        assert list(await legacy.list_instances("")) == []


async def test_hot_tables_get_their_storage_and_autovacuum_options(pg_store: PgStore) -> None:  # noqa: F811
    async with PostgresStorage(pg_store.url, schema=pg_store.schema):
        pass
    rows = query(
        pg_store.url,
        "SELECT c.relname, c.reloptions FROM pg_class AS c"
        " JOIN pg_namespace AS n ON n.oid = c.relnamespace"
        " WHERE n.nspname = %s AND c.relkind = 'r' ORDER BY c.relname",
        pg_store.schema,
    )
    options = {str(name): value for name, value in rows}
    assert set(options) == {
        "alarms",
        "feed",
        "index_counts",
        "index_entries",
        "leases",
        "meta",
        "records",
    }
    for table in ("alarms", "leases", "index_counts"):
        assert options[table] == list(q.HOT_TABLE_OPTIONS)
        assert {
            "fillfactor=70",
            "autovacuum_vacuum_scale_factor=0.01",
            "autovacuum_vacuum_cost_delay=0",
        } <= set(q.HOT_TABLE_OPTIONS)
    assert options["records"] is None
    assert options["index_entries"] is None
    # the feed turns its rows over (append, number, trim) but gains nothing from fillfactor
    assert options["feed"] == [o for o in q.HOT_TABLE_OPTIONS if not o.startswith("fillfactor")]
    indexes = query(
        pg_store.url,
        "SELECT indexdef FROM pg_indexes WHERE schemaname = %s"
        " AND indexname IN ('alarms_due', 'index_order') ORDER BY indexname",
        pg_store.schema,
    )
    schema = pg_store.schema
    assert indexes == [
        (f"CREATE INDEX alarms_due ON {schema}.alarms USING btree (due_at, instance_id)",),
        (
            f"CREATE INDEX index_order ON {schema}.index_entries"
            " USING btree (name, key, instance_id)",
        ),
    ]


@pytest.mark.parametrize("version", range(1, q.SCHEMA_VERSION))
async def test_an_older_schema_is_migrated_with_its_data(pg_store: PgStore, version: int) -> None:  # noqa: F811
    """A database made by an older release opens at the current version, its data intact."""
    schema = pg_store.schema
    make_old_schema(pg_store.url, schema, version)
    with psycopg.connect(pg_store.url, autocommit=True) as conn:
        conn.execute(
            f"INSERT INTO {schema}.records VALUES ('old', 'k', 'v'::bytea), ('old', 'j', '')"
        )
        conn.execute(f"INSERT INTO {schema}.alarms VALUES ('old', %s)", (T0,))
    async with PostgresStorage(pg_store.url, schema=schema, notify_channel=schema) as storage:
        (snapshot,) = (await storage.load(["old"])).values()
        assert snapshot.records == {"k": b"v", "j": b""}
        assert snapshot.alarm_at == T0
        # every operation of the current version works on the migrated tables
        got = await storage.acquire(["old"], owner="w", now=T0, ttl=TTL)
        assert got is not None
        assert got.snapshots["old"] == snapshot
        await storage.commit(got.leases, [InstanceWrite(instance_id="old", puts={"k": b"w"})])
        both = await storage.acquire(["old", "new"], owner="w", now=T0, ttl=TTL)
        assert both is not None
        await storage.commit(
            both.leases,
            [InstanceWrite(instance_id="new", puts={"n": b"1"})],
            unless_present=[("old", "missing")],
        )
        claimed = await storage.claim_due(now=T0, owner="w", ttl=TTL, limit=10)
        assert [c.lease.instance_id for c in claimed] == ["old"]
        assert claimed[0].snapshot.records == {"k": b"w", "j": b""}
        await storage.commit([claimed[0].lease], [], feed=[b"after the migration"])
        assert [e.data for e in await storage.read_feed(after=0, limit=5)] == [
            b"after the migration"
        ]
    assert query(pg_store.url, f"SELECT value FROM {schema}.meta") == [(q.SCHEMA_VERSION,)]


async def test_a_newer_schema_is_refused(pg_store: PgStore) -> None:  # noqa: F811
    async with PostgresStorage(pg_store.url, schema=pg_store.schema):
        pass
    query(pg_store.url, f"UPDATE {pg_store.schema}.meta SET value = 99")
    with pytest.raises(StorageError, match="version 99"):
        await PostgresStorage(pg_store.url, schema=pg_store.schema).open()


async def test_open_fails_with_storage_error_when_no_server_listens() -> None:
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]  # bound but not listening: connections are refused
        storage = PostgresStorage(f"postgresql://nobody@127.0.0.1:{port}/none", timeout=2)
        started = time.monotonic()
        with pytest.raises(StorageError, match="open"):
            await storage.open()
        assert time.monotonic() - started < 5
    with pytest.raises(StorageError, match="not open"):
        await storage.load(["x"])


def test_constructor_checks_its_arguments() -> None:
    url = "postgresql://u:secret@localhost/db"
    assert repr(PostgresStorage(url)) == (
        "PostgresStorage('postgresql://u:***@localhost/db', schema='durable_effect')"
    )
    for bad in ("", "1abc", "a-b", 'x"y', "a" * 64):
        with pytest.raises(ValueError, match="schema"):
            PostgresStorage(url, schema=bad)
        with pytest.raises(ValueError, match="notify_channel"):
            PostgresStorage(url, notify_channel=bad)
    with pytest.raises(ValueError, match="min_size"):
        PostgresStorage(url, min_size=3, max_size=2)
    with pytest.raises(ValueError, match="timeout"):
        PostgresStorage(url, timeout=0)
    with pytest.raises(ValueError, match="bad PostgreSQL URL"):
        PostgresStorage("postgresql://u:secret@localhost/db?nosuchoption=1")


def test_without_psycopg_the_error_says_what_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "psycopg", None)
    with pytest.raises(ImportError, match=r"pip install 'durable_effect\[postgres\]'"):
        PostgresStorage("postgresql://localhost/db")


async def test_invalid_values_are_refused_before_anything_is_sent(
    pair: tuple[PostgresStorage, PostgresStorage],
) -> None:
    storage, _ = pair
    with pytest.raises(ValueError, match="NUL"):
        await storage.acquire(["i"], owner="a\x00b", now=T0, ttl=TTL)
    with pytest.raises(ValueError, match="unicode"):
        await storage.claim_due(now=T0, owner="\ud800", ttl=TTL, limit=1)
    lease = await lease_of(storage, "i")
    with pytest.raises(ValueError, match="NUL"):
        await storage.commit([lease], [InstanceWrite(instance_id="i", puts={"a\x00": b""})])
    # Ids that cannot be stored cannot exist: reads find nothing, nothing fails.
    snaps = await storage.load(["a\x00b", "\ud800"])
    assert not snaps["a\x00b"].exists
    assert not snaps["\ud800"].exists
    assert list(await storage.list_instances("a\x00")) == []


@pytest.mark.parametrize("ids", [["x", "y"], ["x"]], ids=["two instances", "one instance"])
async def test_several_writes_to_one_instance_apply_in_order_as_in_memory(
    pair: tuple[PostgresStorage, PostgresStorage], ids: list[str]
) -> None:
    """A commit's writes fold per instance into one statement: compare with MemoryStorage.

    One instance takes the single-instance fast path (``commit_one``), two the general one.
    """
    storage, _ = pair
    memory = MemoryStorage()
    await memory.open()
    rng = random.Random(3)
    keys = ["a", "b", "c", "d"]
    for round_ in range(40):
        writes = []
        for _ in range(rng.randint(1, 5)):
            alarms: list[AlarmChange] = [KEEP, None, T0 + timedelta(seconds=round_)]
            writes.append(
                InstanceWrite(
                    instance_id=rng.choice(ids),
                    purge=rng.random() < 0.2,
                    deletes=frozenset(rng.sample(keys, rng.randint(0, 2))),
                    puts={k: f"{round_}".encode() for k in rng.sample(keys, rng.randint(0, 3))},
                    alarm=rng.choice(alarms),
                )
            )
        now = T0 + timedelta(hours=round_)
        for backend in (storage, memory):
            got = await backend.acquire(ids, owner="w", now=now, ttl=TTL)
            assert got is not None
            await backend.commit(got.leases, writes)
        assert await storage.load(ids) == await memory.load(ids)
    await memory.close()


# -- notifications ---------------------------------------------------------------------------


async def test_notify_wakes_another_process_promptly(
    pair: tuple[PostgresStorage, PostgresStorage],
) -> None:
    writer, watcher = pair
    assert watcher.listening
    lease = await lease_of(writer, "i")
    await watcher.wait_for_change(0)  # forget earlier changes
    waiter = asyncio.ensure_future(watcher.wait_for_change(30))
    await asyncio.sleep(0.05)
    assert not waiter.done()
    started = time.monotonic()
    await writer.commit([lease], [InstanceWrite(instance_id="i", alarm=T0)], release=False)
    await asyncio.wait_for(waiter, 5)
    assert time.monotonic() - started < 1.0
    # A release alone wakes it too; a commit that neither moves an alarm nor releases does not.
    await watcher.wait_for_change(0)
    await writer.commit([lease], [InstanceWrite(instance_id="i", puts={"k": b"v"})], release=False)
    quiet = asyncio.ensure_future(watcher.wait_for_change(30))
    await asyncio.sleep(0.3)
    assert not quiet.done()
    await writer.release([lease])
    await asyncio.wait_for(quiet, 5)


async def test_an_acquire_that_finds_a_lease_held_tells_every_listener_which(
    pair: tuple[PostgresStorage, PostgresStorage],
) -> None:
    """``want:<id>``: how a process keeping a lease between calls learns somebody waits."""
    holder, other = pair
    wanted: list[str] = []
    seen = asyncio.Event()

    def listener(instance_id: str) -> None:
        wanted.append(instance_id)
        seen.set()

    holder.add_wanted_listener(listener)
    await lease_of(holder, "busy 'one'")
    assert await other.acquire(["free"], owner="other", now=T0, ttl=TTL) is not None

    assert await other.acquire(["busy 'one'"], owner="other", now=T0, ttl=TTL) is None

    await asyncio.wait_for(seen.wait(), 5)
    assert wanted == ["busy 'one'"]  # the granted acquire signalled nothing
    # An acquire of several ids signals each one it found held (and grants none).
    seen.clear()
    await lease_of(holder, "busy two")
    assert (
        await other.acquire(["x", "busy two", "busy 'one'"], owner="other", now=T0, ttl=TTL) is None
    )
    await asyncio.wait_for(seen.wait(), 5)
    while len(wanted) < 3:
        seen.clear()
        await asyncio.wait_for(seen.wait(), 5)
    assert sorted(wanted[1:]) == ["busy 'one'", "busy two"]
    assert await other.acquire(["x"], owner="other", now=T0, ttl=TTL) is not None


async def test_wait_for_change_falls_back_to_its_timeout(
    pair: tuple[PostgresStorage, PostgresStorage],
) -> None:
    _, watcher = pair
    await watcher.wait_for_change(0)
    started = time.monotonic()
    await watcher.wait_for_change(0.2)
    assert 0.15 < time.monotonic() - started < 2


# -- claims from two processes -----------------------------------------------------------------


async def test_concurrent_claims_from_two_processes_are_disjoint_and_complete(
    pair: tuple[PostgresStorage, PostgresStorage],
) -> None:
    first, second = pair
    ids = [f"job:{n:04d}" for n in range(400)]
    rng = random.Random(5)
    for n in range(0, len(ids), 100):
        await put_alarms(first, ids[n : n + 100], T0 - timedelta(seconds=rng.randint(0, 50)))
    claimed: dict[str, list[str]] = {"p1": [], "p2": []}
    generations: list[int] = []

    async def drain(storage: PostgresStorage, owner: str) -> None:
        while True:
            got = await storage.claim_due(now=T0, owner=owner, ttl=TTL, limit=rng.randint(1, 25))
            if not got:
                return
            for c in got:
                assert c.snapshot.records == {"id": c.lease.instance_id.encode()}
                assert c.snapshot.alarm_at == c.due_at <= T0
            claimed[owner].extend(c.lease.instance_id for c in got)
            generations.extend(c.lease.generation for c in got)

    await asyncio.gather(
        *(drain(s, o) for s, o in ((first, "p1"), (second, "p2")) for _ in range(3))
    )
    assert not set(claimed["p1"]) & set(claimed["p2"])
    assert sorted(claimed["p1"] + claimed["p2"]) == ids
    assert claimed["p1"]
    assert claimed["p2"]
    assert len(set(generations)) == len(ids)


async def test_workers_in_two_processes_run_each_due_alarm_once(
    pair: tuple[PostgresStorage, PostgresStorage],
) -> None:
    """Claim, then commit (clearing the alarm and counting the run), from both sides at once."""
    ids = [f"w{n:03d}" for n in range(150)]
    await put_alarms(pair[0], ids, T0)

    async def worker(storage: PostgresStorage, owner: str) -> int:
        done = 0
        while got := await storage.claim_due(now=T0, owner=owner, ttl=TTL, limit=10):
            for c in got:
                runs = int(c.snapshot.records.get("runs", b"0")) + 1
                write = InstanceWrite(
                    instance_id=c.lease.instance_id, puts={"runs": b"%d" % runs}, alarm=None
                )
                await storage.commit([c.lease], [write])
                done += 1
        return done

    counts = await asyncio.gather(
        *(worker(s, f"{n}-{i}") for n, s in enumerate(pair) for i in range(2))
    )
    assert sum(counts) == len(ids)
    snaps = await pair[1].load(ids)
    assert all(snaps[i].records["runs"] == b"1" and snaps[i].alarm_at is None for i in ids)
    assert await pair[1].next_alarm_at() is None


async def test_mixed_concurrent_operations_never_deadlock(
    pg_store: PgStore,  # noqa: F811
) -> None:
    """Acquires of overlapping sets (in any order), claims and commits moving alarms, from
    two processes at once: the lock order keeps the server from ever seeing a deadlock."""
    storages = [PostgresStorage(pg_store.url, schema=pg_store.schema, max_size=4) for _ in range(2)]
    for storage in storages:
        await storage.open()
    ids = [f"m{n:02d}" for n in range(12)]
    await put_alarms(storages[0], ids, T0)
    rng = random.Random(11)
    clock = [T0]

    async def actor(storage: PostgresStorage, name: str) -> None:
        for _ in range(60):
            now = clock[0] = clock[0] + timedelta(milliseconds=rng.randint(0, 40_000))
            if rng.random() < 0.5:
                picked = rng.sample(ids, rng.randint(1, 4))
                got = await storage.acquire(picked, owner=name, now=now, ttl=TTL)
                leases = [] if got is None else list(got.leases)
            else:
                claimed = await storage.claim_due(now=now, owner=name, ttl=TTL, limit=3)
                leases = [c.lease for c in claimed]
            if not leases:
                continue
            writes = [
                InstanceWrite(
                    instance_id=lease.instance_id,
                    puts={"by": name.encode()},
                    alarm=now + timedelta(seconds=rng.randint(-5, 60)),
                )
                for lease in leases
            ]
            with contextlib.suppress(LeaseLostError):  # fenced after expiry: fine
                await storage.commit(leases, writes, release=rng.random() < 0.8)

    try:
        await asyncio.gather(
            *(actor(s, f"{n}.{i}") for n, s in enumerate(storages) for i in range(3))
        )
    finally:
        await asyncio.gather(*(s.close() for s in storages))
    await asyncio.sleep(0.5)  # the pool's backends exit and flush their statistics
    ((deadlocks,),) = query(
        pg_store.url, "SELECT deadlocks FROM pg_stat_database WHERE datname = current_database()"
    )
    assert deadlocks == 0


# -- the server goes away ----------------------------------------------------------------------


async def test_a_server_restart_fails_operations_while_down_and_loses_nothing(
    pg_server: PgServer,  # noqa: F811
    pg_url: str,  # noqa: F811
) -> None:
    if not pg_server.owned:
        pytest.skip("the server named by DURABLE_EFFECT_PG_URL is not ours to restart")
    storage = PostgresStorage(pg_url, timeout=0.5)
    watcher = PostgresStorage(pg_url, timeout=0.5)
    await storage.open()
    await watcher.open()
    try:
        kept = await lease_of(storage, "kept")
        await storage.commit(
            [kept], [InstanceWrite(instance_id="kept", puts={"k": b"v"}, alarm=T0)]
        )
        pending = await lease_of(storage, "pending")

        await asyncio.to_thread(pg_server.stop)
        down: list[Callable[[], Awaitable[object]]] = [
            lambda: storage.load(["kept"]),
            lambda: storage.commit(
                [pending], [InstanceWrite(instance_id="pending", puts={"k": b"x"})]
            ),
            lambda: storage.claim_due(now=T0, owner="w", ttl=TTL, limit=10),
            lambda: storage.acquire(["other"], owner="w", now=T0, ttl=TTL),
            storage.next_alarm_at,
            lambda: storage.release([pending]),
        ]
        for operation in down:
            started = time.monotonic()
            with pytest.raises(StorageError):
                await operation()
            assert time.monotonic() - started < 5  # about ``timeout``: no hanging
        assert not watcher.listening

        await asyncio.to_thread(pg_server.start)
        back = time.monotonic()
        snaps = await eventually(lambda: storage.load(["kept", "pending"]))
        recovered = time.monotonic() - back
        assert snaps["kept"].records == {"k": b"v"}
        assert snaps["kept"].alarm_at == T0
        assert not snaps["pending"].exists  # the commit that failed wrote nothing
        assert recovered < 10, f"took {recovered:.1f}s to work again"
        # Writes work again, and so do notifications to the other process, once its listener
        # is back (reconnecting wakes its waiters once: forget that wake-up).
        await eventually(watcher.next_alarm_at)
        await wait_listening(watcher)
        await watcher.wait_for_change(0)
        waiter = asyncio.ensure_future(watcher.wait_for_change(30))
        fresh = await eventually(lambda: lease_of(storage, "after"))
        await storage.commit([fresh], [InstanceWrite(instance_id="after", alarm=T0)])
        await asyncio.wait_for(waiter, 10)
        (claimed,) = [
            c
            for c in await storage.claim_due(now=T0, owner="w", ttl=TTL, limit=10)
            if c.lease.instance_id == "kept"
        ]
        assert claimed.snapshot.records == {"k": b"v"}
    finally:
        if not pg_server.running:
            await asyncio.to_thread(pg_server.start)
        await asyncio.gather(storage.close(), watcher.close())
