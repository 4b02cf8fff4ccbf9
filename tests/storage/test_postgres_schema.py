"""The PostgreSQL schema files: a fresh database and one migrated from every older version
are identical, catalog for catalog.

An older version's schema is made exactly as that release made it: ``pg_history/vN.sql``
holds the statements version N's migration ran, frozen, and `make_old_schema` runs
``v1.sql`` to ``vN.sql``. The current version's file too: a schema that release made,
opened by this code, must equal one this code makes from ``tables.sql`` and
``functions.sql``. When a release changes the schema, add its ``vN.sql``: its migration's
statements, then for each function it changed the ``DROP FUNCTION`` of the old signature
and the new ``CREATE FUNCTION`` (as in ``functions.sql`` at that release) — so that
``v1.sql`` to ``vN.sql`` make what that release made.

The catalog dump (`catalog`): tables with their storage options, columns (order, type,
collation, nullability, default), constraints, indexes, sequences, and functions (identity
arguments, result, language, volatility, source) — the schema's name replaced by ``S``.
"""

from __future__ import annotations

from pathlib import Path

import psycopg
import pytest
from psycopg import sql

from durable_effect.storage import _postgres_sql as q
from durable_effect.storage._postgres import PostgresStorage
from tests.conftest_pg import PgStore, pg_server, pg_store  # noqa: F401

pytestmark = pytest.mark.postgres

HISTORY = Path(__file__).with_name("pg_history")
RELEASED = sorted(int(path.stem[1:]) for path in HISTORY.glob("v*.sql"))


def make_old_schema(url: str, schema: str, version: int) -> None:
    """``schema`` as the release of schema ``version`` made it (with its version row)."""
    with psycopg.connect(url, autocommit=True) as conn:
        ident = sql.Identifier(schema)
        for name in ("create_schema", "create_meta"):
            conn.execute(sql.SQL(q.QUERIES[name]).format(schema=ident))
        with conn.transaction():
            for step in range(1, version + 1):
                text = (HISTORY / f"v{step}.sql").read_text()
                conn.execute(sql.SQL(text).format(schema=ident))
        conn.execute(sql.SQL(q.QUERIES["set_version"]).format(schema=ident), (version,))


_QUERIES = {
    "tables": """
        SELECT c.relname, c.relkind, c.reloptions, c.relpersistence
        FROM pg_class AS c WHERE c.relnamespace = %(ns)s::regnamespace
        ORDER BY c.relname""",
    "columns": """
        SELECT c.relname, a.attnum, a.attname, format_type(a.atttypid, a.atttypmod),
               a.attnotnull, co.collname, pg_get_expr(d.adbin, d.adrelid)
        FROM pg_attribute AS a
        JOIN pg_class AS c ON c.oid = a.attrelid
        LEFT JOIN pg_collation AS co ON co.oid = a.attcollation
        LEFT JOIN pg_attrdef AS d ON d.adrelid = a.attrelid AND d.adnum = a.attnum
        WHERE c.relnamespace = %(ns)s::regnamespace AND a.attnum > 0 AND NOT a.attisdropped
        ORDER BY c.relname, a.attnum""",
    "constraints": """
        SELECT c.relname, k.conname, k.contype, pg_get_constraintdef(k.oid)
        FROM pg_constraint AS k JOIN pg_class AS c ON c.oid = k.conrelid
        WHERE k.connamespace = %(ns)s::regnamespace
        ORDER BY c.relname, k.conname""",
    "indexes": """
        SELECT tablename, indexname, indexdef FROM pg_indexes WHERE schemaname = %(name)s
        ORDER BY tablename, indexname""",
    "sequences": """
        SELECT sequencename, data_type::text, start_value, increment_by, max_value, cycle
        FROM pg_sequences WHERE schemaname = %(name)s ORDER BY sequencename""",
    "functions": """
        SELECT p.proname, pg_get_function_identity_arguments(p.oid),
               pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),
               l.lanname, p.provolatile, p.prosecdef, p.proconfig, p.prosrc
        FROM pg_proc AS p JOIN pg_language AS l ON l.oid = p.prolang
        WHERE p.pronamespace = %(ns)s::regnamespace
        ORDER BY p.proname, pg_get_function_identity_arguments(p.oid)""",
}


def catalog(url: str, schema: str) -> dict[str, list[tuple[object, ...]]]:
    """What the catalog says about ``schema`` (its name written ``S``)."""
    params = {"ns": f'"{schema}"', "name": schema}

    def plain(value: object) -> object:
        if isinstance(value, str):
            return value.replace(f'"{schema}".', "S.").replace(f"{schema}.", "S.")
        if isinstance(value, list):
            return [plain(item) for item in value]
        return value

    dump: dict[str, list[tuple[object, ...]]] = {}
    with psycopg.connect(url, autocommit=True) as conn:
        for kind, text in _QUERIES.items():
            rows = conn.execute(text.encode(), params).fetchall()
            dump[kind] = [tuple(plain(value) for value in row) for row in rows]
    return dump


async def opened(url: str, schema: str) -> None:
    async with PostgresStorage(url, schema=schema, notify_channel=schema):
        pass


def test_every_released_version_is_frozen() -> None:
    assert list(range(1, q.SCHEMA_VERSION + 1)) == RELEASED


@pytest.mark.parametrize("version", RELEASED)
async def test_a_migrated_schema_is_the_fresh_one(
    pg_store: PgStore,  # noqa: F811
    version: int,
) -> None:
    fresh, old = pg_store.schema, f"{pg_store.schema}_v{version}"
    await opened(pg_store.url, fresh)
    make_old_schema(pg_store.url, old, version)
    await opened(pg_store.url, old)
    expected = catalog(pg_store.url, fresh)
    assert expected["functions"], "the dump is empty: wrong schema name?"
    assert {name for name, *_ in expected["tables"]} >= {"records", "alarms", "leases", "meta"}
    got = catalog(pg_store.url, old)
    for kind in _QUERIES:
        assert got[kind] == expected[kind], kind


async def test_the_catalog_dump_sees_a_difference(pg_store: PgStore) -> None:  # noqa: F811
    """Not vacuous: one changed function body or column default is a difference."""
    first, second = pg_store.schema, f"{pg_store.schema}_b"
    await opened(pg_store.url, first)
    await opened(pg_store.url, second)
    assert catalog(pg_store.url, first) == catalog(pg_store.url, second)
    with psycopg.connect(pg_store.url, autocommit=True) as conn:
        conn.execute(f"ALTER TABLE {second}.leases ALTER COLUMN owner SET DEFAULT 'x'".encode())
    assert catalog(pg_store.url, first)["columns"] != catalog(pg_store.url, second)["columns"]


async def test_a_migration_leaves_other_functions_in_the_schema_alone(
    pg_store: PgStore,  # noqa: F811
) -> None:
    """It drops and re-creates only the functions ``functions.sql`` makes: one of the
    user's own in the same schema (``schema="public"``, say) survives every migration."""
    schema = pg_store.schema
    make_old_schema(pg_store.url, schema, 1)
    with psycopg.connect(pg_store.url, autocommit=True) as conn:
        conn.execute(
            f"CREATE FUNCTION {schema}.mine(p integer) RETURNS integer"
            " LANGUAGE sql AS 'SELECT p + 1'".encode()
        )
    await opened(pg_store.url, schema)
    with psycopg.connect(pg_store.url, autocommit=True) as conn:
        row = conn.execute(f"SELECT {schema}.mine(41)".encode()).fetchone()
    assert row == (42,)
    names = {name for name, *_ in catalog(pg_store.url, schema)["functions"]}
    assert names == {*q.FUNCTION_NAMES, "mine"}


def test_the_files_hold_each_function_once_and_name_every_query() -> None:
    created = [
        line.split("(")[0].split(".")[-1]
        for line in q.FUNCTIONS.splitlines()
        if line.startswith("CREATE FUNCTION")
    ]
    assert sorted(created) == sorted(set(created))
    assert sorted(q.FUNCTION_NAMES) == sorted(created)
    assert set(created) == {
        "acquire",
        "acquire_one",
        "append_feed",
        "claim_due",
        "commit_one",
        "commit_writes",
        "grant_leases",
        "sequence_feed",
        "set_index",
    }
    assert all("CREATE FUNCTION" not in (m or "") for m in q.MIGRATIONS.values())
    assert {"acquire_one", "commit_one", "claim_due", "drop_functions"} <= set(q.QUERIES)
