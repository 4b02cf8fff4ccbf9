"""The SQL of `PostgresStorage`: the ``.sql`` files, loaded, and composed for one storage.

The SQL itself lives in ``durable_effect/storage/sql/postgres/`` (package data), readable as
the database is today, not only as migration history:

* ``tables.sql`` — every table, index and sequence of the current schema version;
* ``functions.sql`` — every function (one operation each, in one round trip), once;
* ``queries.sql`` — every statement the storage sends, by name (``-- name: acquire_one``);
* ``migrations/NNNN_*.sql`` — what turns a database of version ``NNNN - 1`` into one of
  version ``NNNN``: table changes only (some are comments only).

A fresh database gets ``tables.sql`` then ``functions.sql``. An older one gets the
migrations after its version, in order, then every function of the schema named as one in
``functions.sql`` is dropped (whatever its arguments; any other function there is left
alone) and ``functions.sql`` runs again — so a function's current source exists once, and a
migrated database ends up exactly like a fresh one (``tests/storage/test_postgres_schema.py``
compares their catalogs, from every older version: the schemas older releases made are
frozen there, in ``tests/storage/pg_history/``). All of it runs in one transaction under an
advisory lock (``_postgres.PostgresStorage._migrate``). A migration that retires a function
drops it itself.

Placeholders, filled by `Statements` (``psycopg.sql`` composition): ``{schema}`` the quoted
schema name; ``{channel}`` the notify channel (a string literal, or an identifier in
``LISTEN``); ``{functions}`` the `FUNCTION_NAMES` (a literal); ``{lease_now}`` and
``{lease_until}`` in the lease operations (see `lease_clock_sql`). Nothing else is
interpolated: values travel as parameters (``%s``, ``%b`` in binary format, ``%(name)s``),
and the files contain no other braces. ``commit_one`` and ``commit`` are also sent wrapped
by `with_feed`, to append feed entries in their statement.

This module imports without psycopg (it is imported lazily by `Statements`).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from importlib import resources
from typing import TYPE_CHECKING, Final

if TYPE_CHECKING:
    from psycopg import AsyncConnection
    from psycopg.rows import TupleRow
    from psycopg.sql import Composed

__all__ = [
    "FUNCTION_NAMES",
    "HOT_TABLE_OPTIONS",
    "LEASE_CLOCKS",
    "MIGRATIONS",
    "MIGRATION_LOCK_ID",
    "QUERIES",
    "SCHEMA_VERSION",
    "WANT_PREFIX",
    "Statements",
    "lease_clock_sql",
    "named_queries",
    "read_sql",
    "with_feed",
]


def read_sql(name: str) -> str:
    """The text of ``sql/postgres/<name>`` (package data)."""
    path = resources.files("durable_effect.storage").joinpath("sql", "postgres", *name.split("/"))
    return path.read_text(encoding="utf-8")


_NAME_LINE: Final = re.compile(r"^-- name: ([a-z_]+)\s*$", re.MULTILINE)


def named_queries(text: str) -> dict[str, str]:
    """The statements of a ``-- name: x`` file: each name's SQL, its comment lines dropped.

    A statement runs from its name line to the next one. Whole-line comments are its
    documentation (the ones right after the name) or section headings, and are dropped:
    sent to the server, psycopg would read every ``%`` in them as a placeholder. A trailing
    ``;`` is dropped too.
    """
    queries: dict[str, str] = {}
    parts = _NAME_LINE.split(text)
    for name, body in zip(parts[1::2], parts[2::2], strict=True):
        lines = [line for line in body.splitlines() if not line.lstrip().startswith("--")]
        sql = "\n".join(lines).strip()
        if name in queries or not sql:
            raise ValueError(f"queries.sql: {name!r} is repeated or empty")
        queries[name] = sql.removesuffix(";").rstrip()
    return queries


def _migrations() -> dict[int, str]:
    """``version -> the SQL of its migration`` for every file in ``migrations/``."""
    found: dict[int, str] = {}
    folder = resources.files("durable_effect.storage").joinpath("sql", "postgres", "migrations")
    for entry in folder.iterdir():
        match = re.fullmatch(r"(\d{4})_[a-z0-9_]+\.sql", entry.name)
        if match is not None:
            found[int(match.group(1))] = entry.read_text(encoding="utf-8")
    return dict(sorted(found.items()))


def _has_sql(text: str) -> bool:
    """Whether ``text`` holds anything but comments and blank lines."""
    return any(line.strip() and not line.lstrip().startswith("--") for line in text.splitlines())


QUERIES: Final[Mapping[str, str]] = named_queries(read_sql("queries.sql"))
TABLES: Final = read_sql("tables.sql")
FUNCTIONS: Final = read_sql("functions.sql")
#: The functions ``functions.sql`` creates: what a migration drops before running it again
#: (``drop_functions``; other functions in the schema are left alone).
FUNCTION_NAMES: Final = tuple(
    re.findall(r"^CREATE FUNCTION \{schema\}\.([a-z_]+)\(", FUNCTIONS, re.MULTILINE)
)
#: Version -> its migration's SQL (``None``: nothing but the functions changed).
MIGRATIONS: Final[Mapping[int, str | None]] = {
    version: text if _has_sql(text) else None for version, text in _migrations().items()
}

#: The version of the schema this library writes: the last migration's.
SCHEMA_VERSION: Final = max(MIGRATIONS)
if sorted(MIGRATIONS) != list(range(2, SCHEMA_VERSION + 1)):  # pragma: no cover - packaging
    raise ImportError(f"sql/postgres/migrations is incomplete: {sorted(MIGRATIONS)}")

#: ``pg_advisory_xact_lock`` key held while migrating ("durable_" in ASCII).
MIGRATION_LOCK_ID: Final = 0x6475_7261_626C_655F

#: Storage options of the hot tables, as ``tables.sql`` sets them (checked by the tests
#: through ``pg_class.reloptions``).
HOT_TABLE_OPTIONS: Final = (
    "fillfactor=70",
    "autovacuum_vacuum_scale_factor=0.01",
    "autovacuum_vacuum_threshold=100",
    "autovacuum_analyze_scale_factor=0.02",
    "autovacuum_vacuum_cost_delay=0",
)

#: The payload prefix of the notification an acquire sends when it finds a lease held.
WANT_PREFIX: Final = "want:"

#: Lease clocks: where lease expiry is judged (see ``PostgresStorage``).
LEASE_CLOCKS: Final = ("server", "caller")


def lease_clock_sql(lease_clock: str, marker: str) -> dict[str, str]:
    """The ``{lease_now}`` and ``{lease_until}`` of a statement (``marker``: ``%s``/``%b``).

    ``"server"``: the server's ``statement_timestamp()``, and it plus one parameter (the
    ttl, an interval); ``"caller"``: two parameters, the caller's ``now`` and ``now + ttl``.
    """
    if lease_clock == "server":
        return {
            "lease_now": "statement_timestamp()",
            "lease_until": f"statement_timestamp() + {marker}::interval",
        }
    return {"lease_now": f"{marker}::timestamptz", "lease_until": f"{marker}::timestamptz"}


def with_feed(call: str, applied: str, marker: str) -> str:
    """``call`` (one ``SELECT f(...)``) that also appends feed entries in the same statement,
    so in the same transaction, when ``applied`` (a condition on its result ``c.lost``)
    holds: two more parameters, the entries (``bytea[]``) and the retention (``integer``)."""
    inner = call.strip().removeprefix("SELECT ")
    return (
        f"WITH c AS MATERIALIZED (SELECT {inner} AS lost)\n"
        f"SELECT c.lost, {{schema}}.append_feed({applied}, {marker}::bytea[], {marker}::integer)"
        " FROM c"
    )


#: The operations `Statements.render` turns into bytes.
_OPERATIONS: Final = (
    "acquire",
    "acquire_one",
    "commit_one",
    "commit_one_feed",
    "commit_feed",
    "sequence_feed",
    "read_feed",
    "feed_head",
    "claim_due",
    "commit",
    "extend",
    "release",
    "load",
    "next_alarm_at",
    "list_instances",
    "scan_index_asc",
    "scan_index_desc",
    "count_index",
    "load_index",
)


class Statements:
    """The SQL composed for one schema, notify channel and lease clock."""

    def __init__(self, schema: str, channel: str, lease_clock: str) -> None:
        from psycopg import sql

        ident = sql.Identifier(schema)
        channel_literal = sql.Literal(channel)

        def compose(text: str, marker: str = "%s") -> Composed:
            clock: dict[str, sql.Composable] = {
                name: sql.SQL(value)
                for name, value in lease_clock_sql(lease_clock, marker).items()
                if "{" + name + "}" in text
            }
            if "{channel}" in text:
                clock["channel"] = channel_literal
            if "{functions}" in text:
                clock["functions"] = sql.Literal(list(FUNCTION_NAMES))
            # Our own package files (never input): as trusted as a literal in the code.
            return sql.SQL(text).format(schema=ident, **clock)

        query = QUERIES
        self.create_schema = compose(query["create_schema"])
        self.create_meta = compose(query["create_meta"])
        self.lock_migrations = compose(query["lock_migrations"])
        self.meta_exists = compose(query["meta_exists"])
        self.select_version = compose(query["select_version"])
        self.set_version = compose(query["set_version"])
        self.drop_functions = compose(query["drop_functions"])
        self.set_time_zone = compose(query["set_time_zone"])
        self.tables = compose(TABLES)
        self.functions = compose(FUNCTIONS)
        self.migrations: dict[int, Composed | None] = {
            version: None if text is None else compose(text) for version, text in MIGRATIONS.items()
        }
        self.listen = sql.SQL(query["listen"]).format(channel=sql.Identifier(channel))
        # The operations: ``render`` turns them into bytes once the server is reachable.
        self.acquire: Composed | bytes = compose(query["acquire"])
        self.acquire_one: Composed | bytes = compose(query["acquire_one"], "%b")
        self.commit_one: Composed | bytes = compose(query["commit_one"], "%b")
        self.commit_one_feed: Composed | bytes = compose(
            with_feed(query["commit_one"], "NOT c.lost", "%b"), "%b"
        )
        self.commit_feed: Composed | bytes = compose(
            with_feed(query["commit"], "c.lost IS NULL", "%s")
        )
        self.sequence_feed: Composed | bytes = compose(query["sequence_feed"])
        self.read_feed: Composed | bytes = compose(query["read_feed"])
        self.feed_head: Composed | bytes = compose(query["feed_head"])
        self.claim_due: Composed | bytes = compose(query["claim_due"])
        self.commit: Composed | bytes = compose(query["commit"])
        self.extend: Composed | bytes = compose(query["extend"])
        self.release: Composed | bytes = compose(query["release"])
        self.load: Composed | bytes = compose(query["load"])
        self.next_alarm_at: Composed | bytes = compose(query["next_alarm_at"])
        self.list_instances: Composed | bytes = compose(query["list_instances"])
        self.scan_index_asc: Composed | bytes = compose(query["scan_index_asc"])
        self.scan_index_desc: Composed | bytes = compose(query["scan_index_desc"])
        self.count_index: Composed | bytes = compose(query["count_index"])
        self.load_index: Composed | bytes = compose(query["load_index"])

    def render(self, conn: AsyncConnection[TupleRow]) -> None:
        """Render the operations' statements to bytes, once.

        psycopg renders a ``Composed`` query again on every execute (~20 µs for ours), while
        it caches what it makes of a bytes query.
        """
        for name in _OPERATIONS:
            value = getattr(self, name)
            if not isinstance(value, bytes):
                setattr(self, name, value.as_bytes(conn))
