"""One storage plumbing for the job suites: a ``kind`` of memory, sqlite or postgres.

The suites are parametrised over ``STORAGES`` of their support module; ``storage_for(kind,
path, filename)`` turns one kind into what ``TestRuntime(..., storage=...)`` takes:

* ``"memory"`` — ``memory://`` (a fresh store per runtime);
* ``"sqlite"`` — ``sqlite:///<path>/<filename>`` (the same file for the same ``path``);
* ``"postgres"`` — a new, unopened `PostgresStorage` on a schema of its own in the harness's
  shared database (``tests.conftest_pg``). The same ``path`` and ``filename`` give the same
  schema within a test, as SQLite gives the same file — so a test that reopens its storage
  ("restarts") finds what it committed — and another ``path`` or ``filename`` (or
  ``path=None``, for the Hypothesis state machines: one store per example) a fresh one.
  Each call makes a new object, as a new process would. Its leases expire by the server's
  clock (PostgreSQL's default) unless ``lease_clock="caller"`` asks for the callers' — for
  tests that move a ``TestClock`` past a lease's expiry (a crashed worker's lease).

PostgreSQL params are ``pytest.param("postgres", marks=pytest.mark.postgres)``
(`POSTGRES`); the autouse fixture `postgres_job_stores` gives every test marked
``postgres`` a fresh store (``pg_store``) before its other fixtures run (``tests/workflow``
re-exports it in its conftest). The `job_storage` fixture is the same function for tests
that prefer a fixture.
"""

from __future__ import annotations

import itertools
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Literal

import pytest

from durable_effect.storage import Storage
from durable_effect.storage._postgres import PostgresStorage
from tests.conftest_pg import PgStore, pg_server, pg_store  # noqa: F401

__all__ = ["KINDS", "POSTGRES", "job_storage", "postgres_job_stores", "storage_for"]

#: The PostgreSQL param of a ``STORAGES`` tuple.
POSTGRES = pytest.param("postgres", marks=pytest.mark.postgres, id="postgres")
#: Every kind, for suites that run on all three backends.
KINDS = ("memory", "sqlite", POSTGRES)
#: Pooled connections of one storage: the tests run one handler at a time or a few at once.
_POOL_SIZE = 4


class _PostgresStores:
    """The schemas of one test: one per ``path`` it asks for, a new one for ``None``."""

    def __init__(self, store: PgStore) -> None:
        self.store = store
        self.schemas: dict[str, str] = {}
        self.numbers = itertools.count(1)

    def schema(self, path: Path | None, filename: str) -> str:
        key = None if path is None else str(path / filename)
        if key is not None and key in self.schemas:
            return self.schemas[key]
        number = next(self.numbers)
        schema = self.store.schema if number == 1 else f"{self.store.schema}_{number}"
        if key is not None:
            self.schemas[key] = schema
        return schema

    def storage(
        self, path: Path | None, filename: str, lease_clock: Literal["server", "caller"]
    ) -> PostgresStorage:
        schema = self.schema(path, filename)
        return PostgresStorage(
            self.store.url,
            max_size=_POOL_SIZE,
            schema=schema,
            notify_channel=schema,
            lease_clock=lease_clock,
        )


#: The stores of the running test marked ``postgres`` (at most one: tests run one at a time).
_ACTIVE: list[_PostgresStores] = []


def storage_for(
    kind: str,
    path: Path | None,
    filename: str = "jobs.db",
    *,
    lease_clock: Literal["server", "caller"] = "server",
) -> str | Storage:
    """What ``TestRuntime(storage=...)`` takes for ``kind`` (see the module docstring)."""
    if kind == "memory":
        return "memory://"
    if kind == "sqlite":
        if path is None:
            raise ValueError("a SQLite storage needs a directory")
        return f"sqlite:///{path}/{filename}"
    if kind == "postgres":
        if not _ACTIVE:
            raise RuntimeError(
                "a postgres storage outside a test marked postgres: use the POSTGRES param "
                "(pytest.param('postgres', marks=pytest.mark.postgres)) or mark the test"
            )
        return _ACTIVE[-1].storage(path, filename, lease_clock)
    raise ValueError(f"unknown storage kind {kind!r}: memory, sqlite or postgres")


@pytest.fixture(autouse=True)
def postgres_job_stores(request: pytest.FixtureRequest) -> Iterator[None]:
    """Tests marked ``postgres`` get a fresh store in the harness's database."""
    if request.node.get_closest_marker("postgres") is None:
        yield
        return
    store: PgStore = request.getfixturevalue("pg_store")
    _ACTIVE.append(_PostgresStores(store))
    try:
        yield
    finally:
        _ACTIVE.clear()


@pytest.fixture
def job_storage(tmp_path: Path) -> Callable[[str], str | Storage]:
    """``job_storage(kind)``: `storage_for` over the test's ``tmp_path``."""

    def make(kind: str) -> str | Storage:
        return storage_for(kind, tmp_path)

    return make
