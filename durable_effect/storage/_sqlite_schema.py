"""The SQLite schema of `SqliteStorage`: tables, migrations, statements and connections.

Two connections per storage object:

* the **reader** has the base settings (``synchronous``, the busy timeout); it migrates the
  schema, serves reads on the storage thread, and runs every checkpoint (with syncing);
* the **writer** makes every write transaction. At rest it is ``synchronous=OFF``, never
  checkpoints and never waits for a busy file, so a short transaction can run inline on the
  event loop; a batch run on the storage thread waits for a busy file by retrying its
  ``BEGIN IMMEDIATE`` (up to the busy timeout) and, for a durable commit under ``FULL``,
  switches the writer to ``synchronous=FULL`` for that transaction.

See ``_sqlite_batch`` for which transaction runs where, and ``docs/storage.md`` for why this
never puts a durable commit at risk.
"""

from __future__ import annotations

import sqlite3
import time
from typing import Final, Literal

from durable_effect.errors import StorageError
from durable_effect.storage._sqlite_files import create_private

__all__ = [
    "CHECKPOINT",
    "PRAGMAS",
    "scan_sql",
    "SCHEMA_VERSION",
    "close_writer",
    "connect_reader",
    "connect_writer",
    "is_busy",
]

#: The reader's ``wal_autocheckpoint`` (SQLite's default; it never writes, so never uses it).
AUTOCHECKPOINT: Final = 1000
#: Run by the reader on the storage thread after enough writes: copies the WAL into the
#: database file, syncing both (never blocks writers).
CHECKPOINT: Final = "PRAGMA wal_checkpoint(PASSIVE)"

#: Statements of each schema version, applied in order by ``open`` (index 0 makes version 1).
_MIGRATIONS: Final[tuple[tuple[str, ...], ...]] = (
    (
        """CREATE TABLE IF NOT EXISTS records (
            instance_id TEXT NOT NULL,
            key TEXT NOT NULL,
            value BLOB NOT NULL,
            PRIMARY KEY (instance_id, key)
        ) WITHOUT ROWID""",
        """CREATE TABLE IF NOT EXISTS alarms (
            instance_id TEXT NOT NULL PRIMARY KEY,
            due_at INTEGER NOT NULL
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS alarms_due ON alarms (due_at, instance_id)",
        """CREATE TABLE IF NOT EXISTS leases (
            instance_id TEXT NOT NULL PRIMARY KEY,
            owner TEXT NOT NULL,
            generation INTEGER NOT NULL,
            expires_at INTEGER NOT NULL
        ) WITHOUT ROWID""",
        "INSERT OR IGNORE INTO meta (key, value) VALUES ('generation', 0)",
    ),
    # Version 2: index entries and their counts (kept by triggers, in the same transaction).
    (
        """CREATE TABLE IF NOT EXISTS index_entries (
            instance_id TEXT NOT NULL,
            name TEXT NOT NULL,
            key TEXT NOT NULL,
            PRIMARY KEY (instance_id, name)
        ) WITHOUT ROWID""",
        "CREATE INDEX IF NOT EXISTS index_order ON index_entries (name, key, instance_id)",
        """CREATE TABLE IF NOT EXISTS index_counts (
            name TEXT NOT NULL PRIMARY KEY,
            n INTEGER NOT NULL
        ) WITHOUT ROWID""",
        """CREATE TRIGGER IF NOT EXISTS index_entry_added AFTER INSERT ON index_entries BEGIN
            INSERT INTO index_counts (name, n) VALUES (new.name, 1)
            ON CONFLICT (name) DO UPDATE SET n = n + 1;
        END""",
        """CREATE TRIGGER IF NOT EXISTS index_entry_removed AFTER DELETE ON index_entries BEGIN
            UPDATE index_counts SET n = n - 1 WHERE name = old.name;
            DELETE FROM index_counts WHERE name = old.name AND n = 0;
        END""",
        """CREATE TRIGGER IF NOT EXISTS index_entry_moved
        AFTER UPDATE OF name ON index_entries WHEN new.name IS NOT old.name BEGIN
            UPDATE index_counts SET n = n - 1 WHERE name = old.name;
            DELETE FROM index_counts WHERE name = old.name AND n = 0;
            INSERT INTO index_counts (name, n) VALUES (new.name, 1)
            ON CONFLICT (name) DO UPDATE SET n = n + 1;
        END""",
    ),
    # Version 3: the event feed. ``seq`` is the rowid: one more than the largest, so commit
    # order (one writer at a time) and never reused (trimming always keeps the newest rows).
    ("CREATE TABLE IF NOT EXISTS feed (seq INTEGER PRIMARY KEY, data BLOB NOT NULL)",),
)

#: The schema version this library writes.
SCHEMA_VERSION: Final = len(_MIGRATIONS)

_CREATE_META: Final = (
    "CREATE TABLE IF NOT EXISTS meta (key TEXT NOT NULL PRIMARY KEY, value INTEGER NOT NULL)"
    " WITHOUT ROWID"
)

#: Pragmas ``read_pragma`` may read.
PRAGMAS: Final = frozenset({"journal_mode", "synchronous", "busy_timeout", "wal_autocheckpoint"})

# -- statements (the sqlite3 statement cache keeps each one prepared per connection) -------

#: Reserve generations: ``value`` becomes the last one reserved.
RESERVE_GENERATIONS: Final = (
    "UPDATE meta SET value = value + ? WHERE key = 'generation' RETURNING value"
)
SET_GENERATION: Final = "UPDATE meta SET value = ? WHERE key = 'generation'"
SELECT_LEASE: Final = "SELECT owner, generation, expires_at FROM leases WHERE instance_id = ?"
PUT_LEASE: Final = (
    "INSERT OR REPLACE INTO leases (instance_id, owner, generation, expires_at) VALUES (?, ?, ?, ?)"
)
#: Take a lease unless a live one holds the instance (``rowcount`` tells which).
TAKE_LEASE: Final = (
    "INSERT INTO leases (instance_id, owner, generation, expires_at) VALUES (?, ?, ?, ?)"
    " ON CONFLICT (instance_id) DO UPDATE SET owner = excluded.owner,"
    " generation = excluded.generation, expires_at = excluded.expires_at"
    " WHERE leases.expires_at <= ?"
)
EXTEND_LEASE: Final = "UPDATE leases SET expires_at = ? WHERE instance_id = ?"
DELETE_LEASE: Final = "DELETE FROM leases WHERE instance_id = ? AND owner = ? AND generation = ?"
#: The records and the alarm of one instance in one statement (``key`` NULL: the alarm row).
#: Whether an instance has a lease row (live or not), a record, an alarm or an index entry
#: (``commit_new``).
IN_USE: Final = (
    "SELECT EXISTS (SELECT 1 FROM leases WHERE instance_id = ?)"
    " OR EXISTS (SELECT 1 FROM records WHERE instance_id = ?)"
    " OR EXISTS (SELECT 1 FROM alarms WHERE instance_id = ?)"
    " OR EXISTS (SELECT 1 FROM index_entries WHERE instance_id = ?)"
)
SNAPSHOT: Final = (
    "SELECT key, value, NULL FROM records WHERE instance_id = ?"
    " UNION ALL SELECT NULL, NULL, due_at FROM alarms WHERE instance_id = ?"
)
PUT_RECORD: Final = (
    "INSERT INTO records (instance_id, key, value) VALUES (?, ?, ?)"
    " ON CONFLICT (instance_id, key) DO UPDATE SET value = excluded.value"
)
DELETE_RECORD: Final = "DELETE FROM records WHERE instance_id = ? AND key = ?"
PURGE_RECORDS: Final = "DELETE FROM records WHERE instance_id = ?"
PUT_ALARM: Final = (
    "INSERT INTO alarms (instance_id, due_at) VALUES (?, ?)"
    " ON CONFLICT (instance_id) DO UPDATE SET due_at = excluded.due_at"
)
DELETE_ALARM: Final = "DELETE FROM alarms WHERE instance_id = ?"
#: Due, unleased alarms (oldest first, ties by id) with their records: one row per record
#: (``key`` NULL for an instance without any), the rows of one instance together.
CLAIM: Final = (
    "WITH due AS (SELECT a.instance_id, a.due_at FROM alarms AS a"
    " LEFT JOIN leases AS l ON l.instance_id = a.instance_id"
    " WHERE a.due_at <= ? AND (l.expires_at IS NULL OR l.expires_at <= ?)"
    " ORDER BY a.due_at, a.instance_id LIMIT ?)"
    " SELECT due.instance_id, due.due_at, r.key, r.value FROM due"
    " LEFT JOIN records AS r ON r.instance_id = due.instance_id"
    " ORDER BY due.due_at, due.instance_id"
)
NEXT_ALARM: Final = "SELECT MIN(due_at) FROM alarms"
#: Drop every index entry of an instance (before writing its new set, or with a purge).
CLEAR_INDEX: Final = "DELETE FROM index_entries WHERE instance_id = ?"
PUT_INDEX: Final = "INSERT INTO index_entries (instance_id, name, key) VALUES (?, ?, ?)"
COUNT_INDEX: Final = "SELECT name, n FROM index_counts WHERE name IN ({marks})"
LOAD_INDEX: Final = (
    "SELECT instance_id, name, key FROM index_entries WHERE instance_id IN ({marks})"
)


def scan_sql(indexes: int, *, after: bool, until: bool, descending: bool) -> str:
    """``scan_index`` over ``indexes`` names: one limited, index-ordered scan per name,
    merged (each arm reads at most ``limit`` rows of ``index_order``; the merge sorts at
    most ``indexes * limit`` rows).

    Parameters, per name: the name, then ``after`` (key, instance id) and ``until`` when
    given, then the limit; and last the overall limit when there are several names.
    """
    way = "DESC" if descending else "ASC"
    past = "<" if descending else ">"
    stop = ">=" if descending else "<="
    where = "name = ?"
    if after:
        where += f" AND (key, instance_id) {past} (?, ?)"
    if until:
        where += f" AND key {stop} ?"
    arm = (
        f"SELECT name, key, instance_id FROM index_entries WHERE {where}"
        f" ORDER BY key {way}, instance_id {way} LIMIT ?"
    )
    if indexes == 1:
        return arm
    arms = " UNION ALL ".join([f"SELECT * FROM ({arm})"] * indexes)
    # A position held by several of the indexes is returned once (with the least name).
    return (
        f"SELECT min(name), key, instance_id FROM ({arms}) GROUP BY key, instance_id"
        f" ORDER BY key {way}, instance_id {way} LIMIT ?"
    )


#: The most feed entries one ``INSERT`` statement appends (one ``?`` each).
FEED_CHUNK: Final = 500
#: Delete up to ``?`` (second) of the oldest feed entries with ``seq <= ?`` (first).
TRIM_FEED: Final = (
    "DELETE FROM feed WHERE seq IN (SELECT seq FROM feed WHERE seq <= ? ORDER BY seq LIMIT ?)"
)
READ_FEED: Final = "SELECT seq, data FROM feed WHERE seq > ? ORDER BY seq LIMIT ?"
FEED_HEAD: Final = "SELECT MAX(seq) FROM feed"


def append_feed(n: int) -> str:
    """The statement appending ``n`` feed entries (``n <= FEED_CHUNK``) in one insert."""
    return "INSERT INTO feed (data) VALUES " + ", ".join(["(?)"] * n)


# -- connections ---------------------------------------------------------------------------


def connect_reader(
    path: str, synchronous: Literal["full", "normal"], busy_timeout_ms: int
) -> sqlite3.Connection:
    """The reader connection: WAL, the base settings, the schema migrated.

    A new file is created ``0600`` first (`create_private`), so its ``-wal`` and ``-shm``
    are too.
    """
    create_private(path)
    try:
        conn = sqlite3.connect(
            path,
            timeout=busy_timeout_ms / 1000,
            isolation_level=None,
            cached_statements=256,
        )
    except sqlite3.Error as exc:
        raise StorageError(operation="open", cause=exc) from exc
    try:
        conn.execute(f"PRAGMA busy_timeout = {int(busy_timeout_ms)}")
        _enable_wal(conn, busy_timeout_ms)
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
        conn.execute(f"PRAGMA wal_autocheckpoint = {AUTOCHECKPOINT}")
        _migrate(conn)
    except BaseException as exc:
        conn.close()
        if isinstance(exc, StorageError):
            raise
        if isinstance(exc, sqlite3.Error):
            raise StorageError(operation="open", cause=exc) from exc
        raise
    return conn


def connect_writer(path: str) -> sqlite3.Connection:
    """The writer connection, at rest: no fsync, no checkpoint, ``SQLITE_BUSY`` at once.

    Opened after the reader (the file is already in WAL mode and migrated) and closed before
    it (`close_writer`), so it is never the last connection of this process to the file:
    the last one checkpoints on close, and that checkpoint must sync.
    """
    try:
        conn = sqlite3.connect(
            path,
            timeout=0,
            isolation_level=None,
            cached_statements=256,
            check_same_thread=False,  # used on the loop and on the storage thread, in turn
        )
    except sqlite3.Error as exc:
        raise StorageError(operation="open", cause=exc) from exc
    try:
        conn.execute("PRAGMA busy_timeout = 0")
        conn.execute("PRAGMA synchronous = OFF")
        conn.execute("PRAGMA wal_autocheckpoint = 0")
    except sqlite3.Error as exc:
        conn.close()
        raise StorageError(operation="open", cause=exc) from exc
    return conn


def close_writer(conn: sqlite3.Connection, synchronous: Literal["full", "normal"]) -> None:
    """Close the writer with syncing restored (should it ever be the last to close)."""
    try:
        conn.execute(f"PRAGMA synchronous = {synchronous.upper()}")
    finally:
        conn.close()


def is_busy(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` is ``SQLITE_BUSY`` or ``SQLITE_LOCKED`` (another writer holds the file)."""
    code = getattr(exc, "sqlite_errorcode", None)
    if isinstance(code, int):
        return code & 0xFF in (sqlite3.SQLITE_BUSY, sqlite3.SQLITE_LOCKED)
    text = str(exc)
    return "locked" in text or "busy" in text


def _enable_wal(conn: sqlite3.Connection, busy_timeout_ms: int) -> None:
    """Switch the file to WAL (a persistent setting), retrying while another opener holds it.

    Changing the journal mode needs a lock SQLite's busy handler does not wait for: when two
    processes open a fresh file at once, the loser gets the old mode back. It retries here, on
    the storage thread, for up to the busy timeout.
    """
    waited_ms, pause_ms = 0, 1
    while True:
        try:
            row = conn.execute("PRAGMA journal_mode = WAL").fetchone()
        except sqlite3.OperationalError as exc:
            if "locked" not in str(exc) and "busy" not in str(exc):
                raise
            row = None
        if row is not None and str(row[0]).lower() == "wal":
            return
        if waited_ms >= busy_timeout_ms:
            raise StorageError(operation="open", cause="could not switch the database to WAL")
        time.sleep(pause_ms / 1000)
        waited_ms += pause_ms
        pause_ms = min(pause_ms * 2, 50)


def _schema_version(conn: sqlite3.Connection) -> int:
    exists = conn.execute(
        "SELECT 1 FROM sqlite_master WHERE type = 'table' AND name = 'meta'"
    ).fetchone()
    if exists is None:
        return 0
    row = conn.execute("SELECT value FROM meta WHERE key = 'schema_version'").fetchone()
    return 0 if row is None else int(row[0])


def _migrate(conn: sqlite3.Connection) -> None:
    """Bring the schema to `SCHEMA_VERSION`; a no-op when another process already did."""
    if _schema_version(conn) == SCHEMA_VERSION:
        return
    conn.execute("BEGIN IMMEDIATE")
    try:
        conn.execute(_CREATE_META)
        version = _schema_version(conn)
        if version > SCHEMA_VERSION:
            raise StorageError(
                operation="open",
                cause=f"schema version {version} is newer than this library's {SCHEMA_VERSION}",
            )
        for statements in _MIGRATIONS[version:]:
            for statement in statements:
                conn.execute(statement)
        conn.execute(
            "INSERT OR REPLACE INTO meta (key, value) VALUES ('schema_version', ?)",
            (SCHEMA_VERSION,),
        )
        conn.execute("COMMIT")
    except BaseException:
        if conn.in_transaction:
            conn.execute("ROLLBACK")
        raise
