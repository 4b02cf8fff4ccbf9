"""A store made by a release from before indexes: opened, it lists and counts correctly.

The old store is made the way the old release left it: its schema by the older migrations
only (SQLite version 1, PostgreSQL version 3), its rows — runs in every status, with labels,
job instances, a finished run with the purge alarm of its own that old releases set —
copied from a store this release wrote (the record formats did not change), without any
index entry. Opening it migrates the schema; the first query back-fills the entries.
"""

from __future__ import annotations

import sqlite3
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import psycopg
import pytest
from psycopg import sql as pgsql

from durable_effect import Effect, Gen, Task, TaskContext, TaskEventContext, create_durable_jobs
from durable_effect.storage import PostgresStorage, Storage
from durable_effect.storage import _sqlite_schema as lite
from durable_effect.storage._sqlite import SqliteStorage
from durable_effect.testing import TestClock, TestRuntime
from durable_effect.workflow import RunStatus, Step, Workflow
from durable_effect.workflow._index import RUN_STATUSES
from tests.jobs.conftest import POSTGRES, storage_for
from tests.storage.test_postgres_schema import make_old_schema
from tests.workflow._support import T0, Boom, CrashableStorage, Order

pytestmark = pytest.mark.parametrize("kind", ["sqlite", POSTGRES])


@Effect.gen
def shaped(step: Step, order: Order) -> Gen[str, Boom]:
    if order.qty == 0:
        yield from step.run("fail", Effect.fail(Boom(code=1)))
    if order.qty == 2:
        yield from step.sleep("nap", "1 hour")
    return order.order_id


def plan(event: Order, ctx: TaskEventContext[Order]) -> Effect[None, Any]:
    return ctx.set_state(event).flat_map(
        lambda _: ctx.schedule(timedelta(minutes=5)) if event.qty else Effect.succeed(None)
    )


def execute(ctx: TaskContext[Order]) -> Effect[None, Any]:
    return Effect.succeed(None)


WF_RETAIN = timedelta(days=1)
WF = Workflow.make(Order, shaped, retain=WF_RETAIN)
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
TASK = Task.make(Order, Order, plan, execute)
JOBS = {"wf": WF, "task": TASK}


async def write_history(storage: str | Storage) -> tuple[list[str], dict[RunStatus, int]]:
    """Runs and instances written by this release; the listing and counts it gives (the
    clock starts at ``T0``: the first run completes then)."""
    async with TestRuntime(JOBS, storage=storage) as rt:
        h = rt.client.workflow(WF)
        for n, qty in enumerate([1, 2, 0, 1, 2, 1, 0, 2]):
            labels = {"team": "red" if n % 2 else "blue", "n": str(n)}
            await h.trigger(Order(order_id=f"o{n}", qty=qty), labels=labels)
            await rt.advance("1 s")
        await h.trigger(Order(order_id="waiting"), labels={"team": "red"})  # stays pending
        for n in range(3):
            await rt.client.task(TASK).send(id=f"t{n}", event=Order(order_id="x", qty=n % 2))
        listed = [r.id for r in await h.list_runs()]
        counts = await h.count_runs()
    return listed, counts


def make_old_sqlite(source: Path, old: Path) -> None:
    raw = sqlite3.connect(old, isolation_level=None)
    try:
        raw.execute("PRAGMA journal_mode = WAL")
        raw.execute(lite._CREATE_META)
        for statement in lite._MIGRATIONS[0]:
            raw.execute(statement)
        raw.execute("INSERT INTO meta VALUES ('schema_version', 1)")
        raw.execute("ATTACH DATABASE ? AS src", (str(source),))
        raw.execute(
            "INSERT INTO records SELECT * FROM src.records WHERE instance_id NOT LIKE 'jobmeta:%'"
        )
        raw.execute(
            "INSERT INTO alarms SELECT * FROM src.alarms WHERE instance_id NOT LIKE 'jobmeta:%'"
        )
        # The first run (completed at T0) with the purge alarm old releases gave it.
        micros = (T0 + WF_RETAIN - EPOCH) // timedelta(microseconds=1)
        raw.execute(
            "INSERT INTO alarms SELECT instance_id, ? FROM records"
            " WHERE instance_id LIKE 'workflow:wf:%' AND key = 'meta'"
            " ORDER BY instance_id LIMIT 1",
            (micros,),
        )
    finally:
        raw.close()


def make_old_postgres(source: PostgresStorage, old: PostgresStorage) -> None:
    make_old_schema(source.url, old.schema, 3)  # as the release of schema version 3 made it
    with psycopg.connect(source.url, autocommit=True) as conn:
        ident = pgsql.Identifier(old.schema)
        for table in ("records", "alarms"):
            conn.execute(
                pgsql.SQL(
                    "INSERT INTO {old}.{t} SELECT * FROM {src}.{t}"
                    " WHERE instance_id NOT LIKE 'jobmeta:%%'"
                ).format(old=ident, src=pgsql.Identifier(source.schema), t=pgsql.Identifier(table))
            )
        conn.execute(  # the first run (completed at T0) with an old release's purge alarm
            pgsql.SQL(
                "INSERT INTO {old}.alarms SELECT instance_id, %s FROM {old}.records"
                " WHERE instance_id LIKE 'workflow:wf:%%' AND key = 'meta'"
                " ORDER BY instance_id LIMIT 1"
            ).format(old=ident),
            (T0 + WF_RETAIN,),
        )


async def test_an_old_store_with_runs_lists_and_counts_correctly(kind: str, tmp_path: Path) -> None:
    source = storage_for(kind, tmp_path, "source.db")
    listed, counts = await write_history(source)
    old = storage_for(kind, tmp_path, "old.db")
    if kind == "sqlite":
        assert isinstance(old, str)
        make_old_sqlite(tmp_path / "source.db", tmp_path / "old.db")
    else:
        assert isinstance(source, PostgresStorage)
        assert isinstance(old, PostgresStorage)
        make_old_postgres(source, old)
    async with TestRuntime(JOBS, storage=old) as rt:
        storage = rt.jobs.storage
        h = rt.client.workflow(WF)
        # The worker side (TestRuntime, like a starting worker) built the entries at once.
        assert await storage.count_index(["wf:wf:s:completed"]) == {"wf:wf:s:completed": 3}
        assert [r.id for r in await h.list_runs()] == listed
        assert await h.count_runs() == counts
        assert counts == {
            "pending": 1,
            "leased": 0,
            "sleeping": 3,
            "completed": 3,
            "failed": 2,
            "cancelled": 0,
        }
        red = await h.list_runs(labels={"team": "red"}, status=["sleeping", "pending"])
        assert [r.labels["team"] for r in red] == ["red"] * 3
        assert [r.id for r in red] == [
            r.id
            for r in await h.list_runs()
            if r.labels["team"] == "red" and r.status in ("sleeping", "pending")
        ]
        instances = await rt.client.instances()
        assert sorted((i.id, i.status) for i in instances) == [
            ("t0", "idle"),
            ("t1", "active"),
            ("t2", "idle"),
        ]
        # ...and the store goes on as a current one: the runs finish and are swept.
        await rt.advance(
            timedelta(hours=1, seconds=10)
        )  # the sleepers wake (they slept at T0 + n s)
        assert (await h.count_runs())["completed"] == 7
        first = f"workflow:wf:{listed[-1]}"
        assert (await storage.load([first]))[first].alarm_at == T0 + WF_RETAIN
        await rt.advance(WF_RETAIN)  # every finished run past its retention: all purged
        assert await h.count_runs() == dict.fromkeys(RUN_STATUSES, 0)
        assert await storage.list_instances("workflow:") == []
        assert await storage.list_instances("wfidem:") == []
    if kind == "sqlite":
        assert isinstance(old, str)
        raw = sqlite3.connect(tmp_path / "old.db")
        try:
            version = raw.execute("SELECT value FROM meta WHERE key = 'schema_version'")
            assert version.fetchall() == [(lite.SCHEMA_VERSION,)]
        finally:
            raw.close()


async def test_a_query_before_any_worker_builds_the_entries_once(kind: str, tmp_path: Path) -> None:
    source = storage_for(kind, tmp_path, "source.db")
    listed, counts = await write_history(source)
    old = storage_for(kind, tmp_path, "old.db")
    if kind == "sqlite":
        make_old_sqlite(tmp_path / "source.db", tmp_path / "old.db")
        again: Storage = SqliteStorage(tmp_path / "old.db")
    else:
        assert isinstance(source, PostgresStorage)
        assert isinstance(old, PostgresStorage)
        make_old_postgres(source, old)
        again = storage_for(kind, tmp_path, "old.db")  # type: ignore[assignment]
    async with create_durable_jobs(JOBS, storage=old, clock=TestClock(T0)) as jobs:
        h = jobs.client.workflow(WF)
        assert [r.id for r in await h.list_runs(limit=3)] == listed[:3]
        assert await h.count_runs() == counts
        assert len(await jobs.client.instances("task")) == 3
    # Another process later: the entries are there, nothing is built again.
    counting = Writes(again)
    async with create_durable_jobs(JOBS, storage=counting, clock=TestClock(T0)) as jobs:
        await jobs.engine.indexes.ensure(["wf", "task"])
        assert [r.id for r in await jobs.client.workflow(WF).list_runs()] == listed
        assert counting.writes == 0


class Writes(CrashableStorage):
    """Counts the calls that would build entries (listing instances, committing)."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self.writes = 0

    async def commit(self, *args: Any, **kwargs: Any) -> None:
        self.writes += 1
        await super().commit(*args, **kwargs)

    async def list_instances(self, *args: Any, **kwargs: Any) -> Sequence[str]:
        self.writes += 1
        return await super().list_instances(*args, **kwargs)
