"""`PostgresStorage`: the `Storage` port on PostgreSQL, shared by any number of processes.

This module owns the connection handling: a ``psycopg_pool.AsyncConnectionPool`` for the
operations, one dedicated connection that ``LISTEN``s for change notifications, the mapping of
driver errors to `StorageError`, and the Python side of each operation (validation, building
array parameters, turning rows into snapshots), and running the migrations. The SQL — the
schema as it is today, the functions, the named queries, the migrations — lives in
``sql/postgres/*.sql``, loaded and composed by ``_postgres_sql``; ``docs/postgres.md``
explains the deployment.

Every operation is one statement in autocommit mode, so one round trip and one transaction:
``acquire``, ``claim_due`` and ``commit`` call PL/pgSQL functions that lock, check, write and
read in order; ``extend``, ``release``, ``load``, ``next_alarm_at`` and ``list_instances`` are
plain statements. Nothing is ever half-written: a statement that fails, or whose connection
drops, is rolled back by the server. (A connection lost *while the server commits* leaves the
outcome unknown, as with any database; the operation then raises `StorageError` and the
caller treats the write as possibly applied — leases and fencing keep that safe.)

psycopg and psycopg-pool are imported when a `PostgresStorage` is built, so this module (and
``durable_effect.storage``) imports without them.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import re
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Final, Literal, Self, TypeVar

from durable_effect.errors import StorageError
from durable_effect.storage import _postgres_sql as q
from durable_effect.storage._checks import (
    MAX_INDEX_KEY,
    check_feed,
    check_feed_read,
    check_indexes,
    check_limit,
    check_listing,
    check_scan,
    prefix_upper,
)
from durable_effect.storage._port import (
    Acquired,
    Claimed,
    FeedEntry,
    GuardFailed,
    IndexHit,
    InstanceSnapshot,
    InstanceWrite,
    Lease,
    Storage,
)
from durable_effect.storage._postgres_values import (
    Found,
    Plan,
    check_id,
    check_owner,
    check_text,
    group,
    instant,
    lease_lost,
    redact,
    storable,
    ttl_of,
    unique_ids,
    utc,
    validate_commit,
)

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow
    from psycopg_pool import AsyncConnectionPool

__all__ = ["PostgresStorage"]

T = TypeVar("T")

_log = logging.getLogger("durable_effect.storage.postgres")

_INSTALL_HINT: Final = "PostgresStorage needs psycopg 3: pip install 'durable_effect[postgres]'"
_NAME: Final = re.compile(r"[A-Za-z_][A-Za-z0-9_]{0,62}")
#: Attempts of an operation that the server rolled back for a deadlock or serialization
#: failure (never expected with the lock order the SQL keeps, but harmless to retry).
_ATTEMPTS: Final = 3
#: Feed entries one ``sequence_feed`` call numbers at most.
_NUMBER_BATCH: Final = 5000
#: ``sequence_feed`` calls per read at most (the rest is numbered by the next read).
_NUMBER_ROUNDS: Final = 4
#: Seconds between reconnection attempts of the LISTEN connection (doubling up to the max).
_LISTEN_RETRY_MIN: Final = 0.05
_LISTEN_RETRY_MAX: Final = 2.0
#: How long the pool keeps retrying to replace one lost connection before it lets the slot
#: go (a later request then starts a fresh attempt with a short delay again).
_RECONNECT_TIMEOUT: Final = 30.0
#: TCP keepalives for the LISTEN connection, unless the URL sets them: a dead peer is noticed
#: within about a minute instead of never.
_LISTENER_DEFAULTS: Final = {
    "keepalives": "1",
    "keepalives_idle": "30",
    "keepalives_interval": "10",
    "keepalives_count": "3",
}


def _require_driver() -> None:
    try:
        import psycopg  # noqa: F401
        import psycopg_pool  # noqa: F401
    except ImportError as exc:
        raise ImportError(f"{_INSTALL_HINT} ({exc})") from exc


#: Above every index key (keys have at most `MAX_INDEX_KEY` characters): the bound a scan
#: uses when it has none.
_ABOVE_EVERY_KEY: Final = "\U0010ffff" * (MAX_INDEX_KEY + 1)


class PostgresStorage(Storage):
    """The `Storage` port on a PostgreSQL database (psycopg 3, async, pooled).

    ``url`` is a libpq URL or conninfo string (``postgresql://user:pw@host:5432/db``).
    The tables live in ``schema`` (created on ``open`` if needed, with the migrations taken
    under an advisory lock so that many processes may open at once). ``min_size`` and
    ``max_size`` bound the pool; ``timeout`` is how long an operation waits for a pooled
    connection (and ``open`` for the server) before failing with `StorageError`.

    ``lease_linger`` (seconds, ``0`` to turn it off) lets the runtime keep a lease for that
    long after a client call on one instance: another call there from the same process
    meanwhile is one round trip (the commit) instead of two. Another process's call on that
    instance waits as long at most; alarms are not delayed (see ``docs/postgres.md``).

    ``lease_clock`` says which clock decides when a lease has expired. ``"server"`` (the
    default): the PostgreSQL server's (``statement_timestamp()``) — a lease expires ``ttl``
    after the server granted or renewed it, so workers on machines whose clocks disagree can
    never take each other's live leases; the ``now`` callers pass then decides only which
    alarms are due (and the ``expires_at`` of the leases handed back, ``now + ttl`` in the
    caller's frame). ``"caller"``: the ``now`` callers pass, as the `Storage` port describes
    for every backend — for tests that move a ``TestClock`` past a lease's expiry. Every
    process sharing a schema must use the same setting.

    ``wait_for_change`` wakes on ``NOTIFY`` from every process using the same database,
    schema and ``notify_channel``; the listener reconnects by itself when the server comes
    back. The object is used from one asyncio event loop. Nothing connects before ``open``:

    >>> PostgresStorage("postgresql://app:secret@db.internal/jobs", max_size=20)
    PostgresStorage('postgresql://app:***@db.internal/jobs', schema='durable_effect')
    """

    scheme = "postgresql"

    def __init__(
        self,
        url: str,
        *,
        min_size: int = 1,
        max_size: int = 10,
        schema: str = "durable_effect",
        notify_channel: str = "durable_effect",
        timeout: float = 5.0,
        lease_linger: float = 0.25,
        lease_clock: Literal["server", "caller"] = "server",
    ) -> None:
        _require_driver()
        from psycopg import ProgrammingError
        from psycopg.conninfo import conninfo_to_dict, make_conninfo

        if min_size < 0 or max_size < 1 or max_size < min_size:
            raise ValueError(
                f"need 0 <= min_size <= max_size and max_size >= 1, got {min_size}, {max_size}"
            )
        for what, name in (("schema", schema), ("notify_channel", notify_channel)):
            if _NAME.fullmatch(name) is None:
                raise ValueError(
                    f"{what} must be a plain identifier ([A-Za-z_][A-Za-z0-9_]*, at most 63"
                    f" characters), got {name!r}"
                )
        if timeout <= 0:
            raise ValueError(f"timeout must be positive, got {timeout!r}")
        if not 0 <= lease_linger <= 10:
            raise ValueError(f"lease_linger must be between 0 and 10 seconds, got {lease_linger!r}")
        if lease_clock not in q.LEASE_CLOCKS:
            raise ValueError(f"lease_clock must be 'server' or 'caller', got {lease_clock!r}")
        try:
            params = conninfo_to_dict(url)
        except ProgrammingError as exc:
            raise ValueError(f"bad PostgreSQL URL {redact(url)!r}: {exc}") from exc
        params.setdefault("application_name", "durable_effect")
        self.url: Final = url
        self.schema: Final = schema
        self.notify_channel: Final = notify_channel
        self.min_size: Final = min_size
        self.max_size: Final = max_size
        self.timeout: Final = timeout
        self.lease_linger = lease_linger
        self.lease_clock = lease_clock
        self._server_clock = lease_clock == "server"
        self._conninfo = make_conninfo("", **params)
        listener_params = {**_LISTENER_DEFAULTS, **params}
        listener_params["application_name"] = f"{params['application_name']}-listener"
        self._listener_conninfo = make_conninfo("", **listener_params)
        self._sql = q.Statements(schema, notify_channel, lease_clock)
        self._pool: AsyncConnectionPool[AsyncConnection[TupleRow]] | None = None
        self._listener: AsyncConnection[TupleRow] | None = None
        self._listener_task: asyncio.Task[None] | None = None
        self._checker: asyncio.Task[None] | None = None
        self._changed: asyncio.Event | None = None
        self._lifecycle: asyncio.Lock | None = None
        self._wanted_listeners: list[Callable[[str], None]] = []

    def __repr__(self) -> str:
        return f"PostgresStorage({redact(self.url)!r}, schema={self.schema!r})"

    @property
    def listening(self) -> bool:
        """Whether the LISTEN connection is up (``False`` while it reconnects, or closed)."""
        return self._listener is not None and self._pool is not None

    # -- lifecycle -------------------------------------------------------------------------

    async def open(self) -> None:
        """Connect, create or migrate the schema, start listening (idempotent).

        Safe when several processes open the same database at once: the migration runs in
        one transaction holding ``pg_advisory_xact_lock`` and re-checks the version there.
        Raises `StorageError` when the server cannot be reached within ``timeout``.
        """
        async with self._lock():
            if self._pool is not None:
                return
            await self._open()

    async def _open(self) -> None:
        import psycopg
        from psycopg_pool import AsyncConnectionPool

        listener: AsyncConnection[TupleRow] | None = None
        pool: AsyncConnectionPool[AsyncConnection[TupleRow]] | None = None
        try:
            listener = await self._connect_listener(listen=False)
            await self._migrate(listener)
            await listener.execute(self._sql.listen)
            self._sql.render(listener)
            pool = AsyncConnectionPool(
                self._conninfo,
                min_size=self.min_size,
                max_size=self.max_size,
                kwargs={"autocommit": True},
                configure=self._configure,
                open=False,
                timeout=self.timeout,
                reconnect_timeout=_RECONNECT_TIMEOUT,
                name=f"durable_effect:{self.schema}",
            )
            await pool.open(wait=True, timeout=self.timeout)
        except BaseException as exc:
            if pool is not None:
                await pool.close()
            if listener is not None:
                await _close_quietly(listener)
            if isinstance(exc, psycopg.Error | TimeoutError):
                raise StorageError(operation="open", cause=exc) from exc
            raise
        self._pool = pool
        self._listener = listener
        self._changed = asyncio.Event()
        self._listener_task = asyncio.create_task(
            self._listen(listener), name=f"durable_effect-listen:{self.notify_channel}"
        )

    async def __aenter__(self) -> Self:
        await self.open()
        return self

    async def close(self) -> None:
        """Stop listening and close every connection (idempotent). Leases are left to expire."""
        async with self._lock():
            pool, self._pool = self._pool, None
            if pool is None:
                return
            self._signal()  # wake waiters: nothing more will change through this object
            for task in (self._listener_task, self._checker):
                if task is not None:
                    task.cancel()
                    await asyncio.wait([task])
            self._listener_task = self._checker = None
            listener, self._listener = self._listener, None
            if listener is not None:
                await _close_quietly(listener)
            await pool.close()

    async def _configure(self, conn: AsyncConnection[TupleRow]) -> None:
        """Every pooled connection reads instants in UTC (so year 1 and 9999 round-trip)."""
        await conn.execute(self._sql.set_time_zone)

    def _lock(self) -> asyncio.Lock:
        if self._lifecycle is None:
            self._lifecycle = asyncio.Lock()
        return self._lifecycle

    async def _migrate(self, conn: AsyncConnection[TupleRow]) -> None:
        """Bring the schema to `SCHEMA_VERSION`; a no-op when another process already did.

        A fresh schema gets ``tables.sql`` and ``functions.sql``; an older one its missing
        migrations, then its functions afresh (see ``_postgres_sql``). One transaction.
        """
        sql = self._sql
        cur = await conn.execute(sql.meta_exists, (self.schema,))
        if await cur.fetchone() is not None and await self._version(conn) == q.SCHEMA_VERSION:
            return
        async with conn.transaction():
            await conn.execute(sql.lock_migrations, (q.MIGRATION_LOCK_ID,))
            await conn.execute(sql.create_schema)
            await conn.execute(sql.create_meta)
            version = await self._version(conn)
            if version > q.SCHEMA_VERSION:
                raise StorageError(
                    operation="open",
                    cause=f"schema {self.schema!r} is at version {version}, newer than this"
                    f" library's {q.SCHEMA_VERSION}",
                )
            if version < q.SCHEMA_VERSION:
                if version == 0:
                    await conn.execute(sql.tables)
                else:
                    for step in range(version + 1, q.SCHEMA_VERSION + 1):
                        migration = sql.migrations[step]
                        if migration is not None:
                            await conn.execute(migration)
                    await conn.execute(sql.drop_functions)
                await conn.execute(sql.functions)
                await conn.execute(sql.set_version, (q.SCHEMA_VERSION,))

    async def _version(self, conn: AsyncConnection[TupleRow]) -> int:
        row = await (await conn.execute(self._sql.select_version)).fetchone()
        return 0 if row is None else int(row[0])

    # -- leases ----------------------------------------------------------------------------

    async def acquire(
        self,
        instance_ids: Sequence[str],
        *,
        owner: str,
        now: datetime,
        ttl: timedelta,
    ) -> Acquired | None:
        ids = unique_ids(instance_ids)
        moment = instant(now)
        expires_at = moment + ttl_of(ttl)
        check_owner(owner)
        self._require_open("acquire")
        if not ids:
            return Acquired(leases=[], snapshots={})

        if len(ids) == 1:
            (only,) = ids

            async def work_one(conn: AsyncConnection[TupleRow]) -> list[tuple[Any, ...]]:
                params = (only, owner, *self._lease_at(moment, expires_at, ttl))
                cur = await conn.execute(self._sql.acquire_one, params)
                return [(only, *row) for row in await cur.fetchall()]

            rows = await self._run("acquire", work_one)
        else:
            params = (ids, owner, *self._lease_at(moment, expires_at, ttl))

            async def work(conn: AsyncConnection[TupleRow]) -> list[tuple[Any, ...]]:
                cur = await conn.execute(self._sql.acquire, params)
                return await cur.fetchall()

            rows = await self._run("acquire", work)
        if not rows:
            return None
        found = group(rows)
        leases = [
            Lease(instance_id=i, owner=owner, generation=found[i].generation, expires_at=expires_at)
            for i in ids
        ]
        return Acquired(leases=leases, snapshots={i: found[i].snapshot(i) for i in ids})

    async def extend(self, lease: Lease, *, now: datetime, ttl: timedelta) -> Lease:
        expires_at = instant(now) + ttl_of(ttl)
        self._require_open("extend")
        if not storable(lease.instance_id) or not storable(lease.owner):
            raise lease_lost(lease)
        until = ttl if self._server_clock else expires_at
        params = (until, lease.instance_id, lease.owner, lease.generation)

        async def work(conn: AsyncConnection[TupleRow]) -> bool:
            cur = await conn.execute(self._sql.extend, params)
            return await cur.fetchone() is not None

        if not await self._run("extend", work):
            raise lease_lost(lease)
        return Lease(
            instance_id=lease.instance_id,
            owner=lease.owner,
            generation=lease.generation,
            expires_at=expires_at,
        )

    async def release(self, leases: Sequence[Lease]) -> None:
        self._require_open("release")
        mine = [lease for lease in leases if storable(lease.instance_id) and storable(lease.owner)]
        if not mine:
            return
        params = (
            [lease.instance_id for lease in mine],
            [lease.owner for lease in mine],
            [lease.generation for lease in mine],
            self.notify_channel,
        )

        async def work(conn: AsyncConnection[TupleRow]) -> bool:
            cur = await conn.execute(self._sql.release, params)
            return await cur.fetchone() is not None

        if await self._run("release", work):
            self._signal()

    # -- records ---------------------------------------------------------------------------

    async def load(self, instance_ids: Sequence[str]) -> Mapping[str, InstanceSnapshot]:
        self._require_open("load")
        ids = list(dict.fromkeys(instance_ids))
        wanted = [i for i in ids if storable(i)]
        found: dict[str, Found] = {}
        if wanted:

            async def work(conn: AsyncConnection[TupleRow]) -> list[tuple[Any, ...]]:
                return await (await conn.execute(self._sql.load, (wanted,))).fetchall()

            rows = await self._run("load", work, idempotent=True)
            found = group((i, 0, at, key, value) for i, at, key, value in rows)
        return {
            i: found[i].snapshot(i) if i in found else InstanceSnapshot(instance_id=i) for i in ids
        }

    async def commit(
        self,
        leases: Sequence[Lease],
        writes: Sequence[InstanceWrite],
        *,
        release: bool = True,
        unless_present: Sequence[tuple[str, str]] = (),
        feed: Sequence[bytes] = (),
    ) -> None:
        validate_commit(leases, writes)
        entries = check_feed(feed, self.feed_retain) if feed and leases else []
        guards = [(check_id(i), _guard_key(k)) for i, k in unless_present]
        self._require_open("commit")
        if not leases and not guards:
            return
        for lease in leases:
            if not storable(lease.instance_id) or not storable(lease.owner):
                raise lease_lost(lease)
        if len(leases) == 1 and not guards:
            only = leases[0]
            if all(write.instance_id == only.instance_id for write in writes):
                await self._commit_one(only, Plan(writes), release, entries)
                return
        plan = Plan(writes)
        params: tuple[object, ...] = (
            [lease.instance_id for lease in leases],
            [lease.owner for lease in leases],
            [lease.generation for lease in leases],
            plan.purge_ids,
            plan.delete_ids,
            plan.delete_keys,
            plan.put_ids,
            plan.put_keys,
            plan.put_values,
            plan.alarm_ids,
            plan.alarm_ats,
            release,
            self.notify_channel,
            [i for i, _ in guards],
            [k for _, k in guards],
            plan.index_ids,
            plan.entry_ids,
            plan.entry_names,
            plan.entry_keys,
        )
        statement = self._sql.commit
        if entries:
            params = (*params, entries, self.feed_retain)
            statement = self._sql.commit_feed

        async def work(conn: AsyncConnection[TupleRow]) -> int | None:
            row = await (await conn.execute(statement, params)).fetchone()
            return None if row is None else row[0]

        lost = await self._run("commit", work)
        if lost is not None and lost < 0:
            raise GuardFailed(*guards[-lost - 1])
        if lost is not None:
            raise lease_lost(leases[lost - 1])
        if plan.alarm_ids or release:
            self._signal()

    async def _commit_one(
        self, lease: Lease, plan: Plan, release: bool, entries: Sequence[bytes]
    ) -> None:
        """``commit`` of one lease whose writes all go to its own instance, without guards
        (and the feed ``entries`` in the same statement)."""
        alarm_change = bool(plan.alarm_ids)
        params: tuple[object, ...] = (
            lease.instance_id,
            lease.owner,
            lease.generation,
            bool(plan.purge_ids),
            plan.delete_keys or None,
            plan.put_keys or None,
            plan.put_values or None,
            alarm_change,
            plan.alarm_ats[0] if alarm_change else None,
            release,
            bool(plan.index_ids),
            plan.entry_names or None,
            plan.entry_keys or None,
        )
        statement = self._sql.commit_one
        if entries:
            params = (*params, list(entries), self.feed_retain)
            statement = self._sql.commit_one_feed

        async def work(conn: AsyncConnection[TupleRow]) -> bool:
            row = await (await conn.execute(statement, params)).fetchone()
            return bool(row is not None and row[0])

        if await self._run("commit", work):
            raise lease_lost(lease)
        if alarm_change or release:
            self._signal()

    # -- alarms ----------------------------------------------------------------------------

    async def claim_due(
        self,
        *,
        now: datetime,
        owner: str,
        ttl: timedelta,
        limit: int,
    ) -> Sequence[Claimed]:
        moment = instant(now)
        expires_at = moment + ttl_of(ttl)
        check_limit(limit)
        check_owner(owner)
        self._require_open("claim_due")
        if limit == 0:
            return []
        bounded = min(limit, 2**31 - 1)
        params: tuple[object, ...] = (
            (moment, owner, ttl, bounded)
            if self._server_clock
            else (moment, owner, expires_at, bounded, moment)
        )

        async def work(conn: AsyncConnection[TupleRow]) -> list[tuple[Any, ...]]:
            return await (await conn.execute(self._sql.claim_due, params)).fetchall()

        found = group(await self._run("claim_due", work))
        claimed: list[Claimed] = []
        for instance_id, got in found.items():
            if got.alarm_at is None:  # pragma: no cover - the claim holds the alarm row
                continue
            lease = Lease(
                instance_id=instance_id,
                owner=owner,
                generation=got.generation,
                expires_at=expires_at,
            )
            claimed.append(
                Claimed(lease=lease, due_at=got.alarm_at, snapshot=got.snapshot(instance_id))
            )
        return claimed

    async def next_alarm_at(self) -> datetime | None:
        self._require_open("next_alarm_at")

        async def work(conn: AsyncConnection[TupleRow]) -> datetime | None:
            row = await (await conn.execute(self._sql.next_alarm_at)).fetchone()
            return None if row is None or row[0] is None else utc(row[0])

        return await self._run("next_alarm_at", work, idempotent=True)

    async def wait_for_change(self, timeout: float) -> None:
        """Wait up to ``timeout`` seconds for an alarm change or a release, here or elsewhere.

        Wakes on ``NOTIFY`` from any process committing to this schema (and at once on this
        object's own commits). A change since the previous call returned makes the next call
        return at once; so does a reconnection of the listener (changes may have been missed
        while it was away). Spurious returns are allowed by the port; callers bound
        ``timeout`` to keep a polling fallback.
        """
        event = self._changed
        if self._pool is None or event is None:
            raise StorageError(operation="wait_for_change", cause="the storage is not open")
        if not event.is_set():
            try:
                await asyncio.wait_for(event.wait(), timeout)
            except TimeoutError:
                return
        event.clear()

    async def list_instances(
        self,
        prefix: str,
        *,
        after: str | None = None,
        limit: int | None = None,
    ) -> Sequence[str]:
        self._require_open("list_instances")
        check_listing(prefix, after, limit)
        if "\x00" in prefix or limit == 0:
            return []  # ids never hold NUL
        # Ids hold no NUL, so ``id > a + "\0" + b`` is ``id > a``.
        params = {
            "prefix": prefix,
            "after": "" if after is None else after.split("\x00", 1)[0],
            "upper": prefix_upper(prefix),
            "limit": limit,
        }

        async def work(conn: AsyncConnection[TupleRow]) -> list[str]:
            rows = await (await conn.execute(self._sql.list_instances, params)).fetchall()
            return [row[0] for row in rows]

        return await self._run("list_instances", work, idempotent=True)

    # -- indexes ---------------------------------------------------------------------------

    async def scan_index(
        self,
        indexes: Sequence[str],
        *,
        limit: int,
        after: tuple[str, str] | None = None,
        until: str | None = None,
        descending: bool = False,
    ) -> Sequence[IndexHit]:
        self._require_open("scan_index")
        names = check_scan(indexes, limit, after, until)
        if not names or limit == 0:
            return []
        if descending:
            start = (_ABOVE_EVERY_KEY, "") if after is None else after
            stop = "" if until is None else until
        else:
            start = ("", "") if after is None else after
            stop = _ABOVE_EVERY_KEY if until is None else until
        params: dict[str, object] = {
            "names": names,
            "after_key": start[0],
            "after_id": start[1],
            "until": stop,
            "limit": limit,
        }
        sql = self._sql.scan_index_desc if descending else self._sql.scan_index_asc

        async def work(conn: AsyncConnection[TupleRow]) -> list[IndexHit]:
            rows = await (await conn.execute(sql, params)).fetchall()
            return [IndexHit(index=n, key=k, instance_id=i) for n, k, i in rows]

        return await self._run("scan_index", work, idempotent=True)

    async def load_index(self, instance_ids: Sequence[str]) -> Mapping[str, Mapping[str, str]]:
        self._require_open("load_index")
        ids = list(dict.fromkeys(instance_ids))
        found: dict[str, dict[str, str]] = {i: {} for i in ids}
        wanted = [i for i in ids if storable(i)]
        if wanted:

            async def work(conn: AsyncConnection[TupleRow]) -> list[tuple[Any, ...]]:
                return await (await conn.execute(self._sql.load_index, (wanted,))).fetchall()

            for instance_id, name, key in await self._run("load_index", work, idempotent=True):
                found[str(instance_id)][str(name)] = str(key)
        return found

    async def count_index(self, indexes: Sequence[str]) -> Mapping[str, int]:
        self._require_open("count_index")
        names = check_indexes(indexes)
        if not names:
            return {}

        async def work(conn: AsyncConnection[TupleRow]) -> dict[str, int]:
            rows = await (await conn.execute(self._sql.count_index, (names,))).fetchall()
            return {str(n): int(c) for n, c in rows}

        found = await self._run("count_index", work, idempotent=True)
        return {n: found.get(n, 0) for n in names}

    # -- feed ------------------------------------------------------------------------------

    async def read_feed(self, *, after: int, limit: int) -> Sequence[FeedEntry]:
        """Number what was committed since (see ``_postgres_sql``), then read past ``after``."""
        self._require_open("read_feed")
        check_feed_read(after, limit)
        params = (after, min(limit, 2**31 - 1))

        async def work(conn: AsyncConnection[TupleRow]) -> list[FeedEntry]:
            await self._number_feed(conn)
            rows = await (await conn.execute(self._sql.read_feed, params)).fetchall()
            return [FeedEntry(seq=int(seq), data=bytes(data)) for seq, data in rows]

        return await self._run("read_feed", work, idempotent=True)

    async def feed_head(self) -> int:
        self._require_open("feed_head")

        async def work(conn: AsyncConnection[TupleRow]) -> int:
            await self._number_feed(conn)
            row = await (await conn.execute(self._sql.feed_head)).fetchone()
            return 0 if row is None else int(row[0])

        return await self._run("feed_head", work, idempotent=True)

    async def _number_feed(self, conn: AsyncConnection[TupleRow]) -> None:
        """Number every committed, unnumbered feed entry (batches of `_NUMBER_BATCH`)."""
        for _ in range(_NUMBER_ROUNDS):
            row = await (await conn.execute(self._sql.sequence_feed, (_NUMBER_BATCH,))).fetchone()
            if row is None or int(row[0]) < _NUMBER_BATCH:
                return

    # -- connections -----------------------------------------------------------------------

    def _lease_at(
        self, now: datetime, expires_at: datetime, ttl: timedelta
    ) -> tuple[datetime] | tuple[datetime, datetime] | tuple[timedelta]:
        """The parameters of ``{lease_now}, {lease_until}`` (see ``_postgres_sql``)."""
        return (ttl,) if self._server_clock else (now, expires_at)

    def _require_open(self, operation: str) -> AsyncConnectionPool[AsyncConnection[TupleRow]]:
        if self._pool is None:
            raise StorageError(operation=operation, cause="the storage is not open")
        return self._pool

    async def _run(
        self,
        operation: str,
        work: Callable[[AsyncConnection[TupleRow]], Awaitable[T]],
        *,
        idempotent: bool = False,
    ) -> T:
        """``work`` on a pooled connection, driver errors turned into `StorageError`.

        A statement rolled back for a deadlock or serialization failure is retried; a read
        (``idempotent``) is retried once on a fresh connection when its connection broke
        (as every idle one does when the server restarts).
        """
        pool = self._require_open(operation)
        attempt = 0
        while True:
            attempt += 1
            try:
                async with pool.connection() as conn:
                    return await work(conn)
            except Exception as exc:  # sorted out below, off the hot path
                if not self._retry(operation, exc, attempt, idempotent):
                    raise

    def _retry(self, operation: str, exc: Exception, attempt: int, idempotent: bool) -> bool:
        """After ``exc`` in ``_run``: ``True`` to try again; else raise `StorageError` for a
        driver error, or return ``False`` to re-raise anything else as it is."""
        import psycopg
        from psycopg import errors
        from psycopg_pool import PoolClosed, PoolTimeout

        if isinstance(exc, PoolTimeout | PoolClosed):
            pass  # (operational errors too, but nothing a retry here would mend)
        elif isinstance(exc, errors.DeadlockDetected | errors.SerializationFailure):
            if attempt < _ATTEMPTS:
                return True
        elif isinstance(exc, psycopg.OperationalError):
            self._check_pool_soon()
            if idempotent and attempt == 1:
                return True
        elif not isinstance(exc, psycopg.Error):
            return False
        raise StorageError(operation=operation, cause=exc) from exc

    def _check_pool_soon(self) -> None:
        """Have the pool test its idle connections, dropping the broken ones, in background."""
        pool = self._pool
        if pool is None or (self._checker is not None and not self._checker.done()):
            return

        async def check() -> None:
            try:
                await pool.check()
            except Exception as exc:  # pragma: no cover - check() reports through logging
                _log.debug("checking the pool failed: %s", exc)

        self._checker = asyncio.create_task(check(), name="durable_effect-pool-check")

    async def _connect_listener(self, *, listen: bool = True) -> AsyncConnection[TupleRow]:
        import psycopg

        async with asyncio.timeout(self.timeout):
            conn = await psycopg.AsyncConnection.connect(self._listener_conninfo, autocommit=True)
            if listen:
                try:
                    await conn.execute(self._sql.listen)
                except BaseException:
                    await _close_quietly(conn)
                    raise
        return conn

    async def _listen(self, conn: AsyncConnection[TupleRow] | None) -> None:
        """Turn notifications into wake-ups; reconnect with backoff when the link drops."""
        import psycopg

        delay = _LISTEN_RETRY_MIN
        while True:
            if conn is None:
                try:
                    conn = await self._connect_listener()
                except (psycopg.Error, OSError, TimeoutError) as exc:
                    _log.debug("reconnecting the listener failed: %s", exc)
                    await asyncio.sleep(delay)
                    delay = min(delay * 2, _LISTEN_RETRY_MAX)
                    continue
                _log.info("listening on %r again", self.notify_channel)
                delay = _LISTEN_RETRY_MIN
                self._listener = conn
                self._signal()  # notifications sent while we were away are lost: re-read
            try:
                async for notice in conn.notifies():
                    self._signal()
                    if notice.payload.startswith(q.WANT_PREFIX):
                        self._wanted(notice.payload[len(q.WANT_PREFIX) :])
            except Exception as exc:  # the link dropped (or anything else): start over
                _log.warning("lost the LISTEN connection (%s); reconnecting", exc)
            self._listener = None
            await _close_quietly(conn)
            conn = None

    def _signal(self) -> None:
        if self._changed is not None:
            self._changed.set()

    def add_wanted_listener(self, listener: Callable[[str], None]) -> None:
        """Call ``listener(instance_id)`` when a process (this one too) found its lease held."""
        self._wanted_listeners.append(listener)

    def _wanted(self, instance_id: str) -> None:
        for listener in self._wanted_listeners:
            try:
                listener(instance_id)
            except Exception:  # pragma: no cover - the engine's listener does not raise
                _log.exception("lease-wanted listener failed")


def _guard_key(key: str) -> str:
    """A guard's record key, checked like a written one (``ValueError``)."""
    if "\x00" in key:
        raise ValueError(f"record keys are strings without NUL, got {key!r}")
    check_text(key, "record key")
    return key


async def _close_quietly(conn: AsyncConnection[TupleRow]) -> None:
    with contextlib.suppress(Exception):
        await conn.close()
