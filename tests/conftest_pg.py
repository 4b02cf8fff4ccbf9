"""pytest fixtures for the PostgreSQL tests; import them into a test module::

    from tests.conftest_pg import pg_server, pg_store, pg_url  # noqa: F401

* ``pg_server`` (session) — the `PgServer` of ``tests.pg_harness``: started once per test run
  (or the one ``DURABLE_EFFECT_PG_URL`` names) and removed at the end.
* ``pg_url`` (function) — the URL of a fresh, empty database made for one test. Databases are
  made ahead in background, but each still costs the server a copy of ``template0``.
* ``pg_store`` (function) — a fresh store that costs almost nothing: a schema name never used
  before in one database shared by the session (`PgStore`: ``url``, ``schema``). The contract
  suite runs on these; tests about a whole database (concurrent first opens, restarts) take
  ``pg_url``.

A server that cannot start stops the whole run at the first test that needs it, with its
log (the root conftest stops it before any test when no binaries can be found at all); the
only way to skip these tests is to set ``DURABLE_EFFECT_SKIP_PG=1`` explicitly, and never
when ``CI`` is set.
"""

from __future__ import annotations

import atexit
import contextlib
import itertools
import os
import uuid
from collections.abc import Iterator
from dataclasses import dataclass
from typing import NoReturn

import pytest

from tests.pg_harness import (
    DatabaseFactory,
    PgServer,
    PgServerError,
    server_from_env,
    start_server,
)

__all__ = ["PgStore", "pg_server", "pg_store", "pg_url"]


@dataclass(frozen=True)
class PgStore:
    """A database URL and a schema in it that nothing has used yet."""

    url: str
    schema: str


class _Session:
    """The server, its database factory and the shared database, made once per run.

    Several test modules import these fixtures, and pytest then registers one session
    fixture per module: they all share this object, so the server starts once.
    """

    def __init__(self) -> None:
        self.server: PgServer | None = None
        self.failure: str | None = None
        self.databases: DatabaseFactory | None = None
        self.shared_name: str | None = None
        self.schemas = itertools.count(1)

    def start(self) -> PgServer:
        if self.failure is not None:
            _unavailable(self.failure)
        if self.server is None:
            server: PgServer | None = None
            try:
                server = server_from_env() or start_server()
            except (PgServerError, OSError) as exc:
                self.failure = f"{type(exc).__name__}: {exc}"
            if server is None:  # failed: report outside the except, without chained traces
                _unavailable(self.failure or "no server")
            self.server = server
            self.databases = DatabaseFactory(
                server, f"de_test_{os.getpid()}_{uuid.uuid4().hex[:6]}"
            )
            atexit.register(self.close)  # in case the session ends without teardown
        return self.server

    def factory(self) -> DatabaseFactory:
        assert self.databases is not None, "start() makes the factory"
        return self.databases

    def shared(self) -> str:
        server = self.start()
        if self.shared_name is None:
            self.shared_name = self.factory().take()
        return server.url(self.shared_name)

    def close(self) -> None:
        """Drop what an external server got from us, stop and remove ours (idempotent)."""
        databases, self.databases = self.databases, None
        server, self.server = self.server, None
        if databases is not None:
            databases.close()
        if server is not None:
            if self.shared_name is not None and not server.owned:
                with contextlib.suppress(Exception):
                    server.drop_database(self.shared_name)
            server.cleanup()
        self.shared_name = None


_SESSION = _Session()


def _unavailable(reason: str) -> NoReturn:
    message = f"the PostgreSQL test server could not start:\n{reason}"
    if os.environ.get("DURABLE_EFFECT_SKIP_PG") == "1" and not os.environ.get("CI"):
        pytest.skip(f"DURABLE_EFFECT_SKIP_PG=1: {message}")
    # Once, for the whole run: every other PostgreSQL test would fail the same way.
    pytest.exit(
        f"{message}\n(set DURABLE_EFFECT_PG_URL to use another server; outside CI, "
        "DURABLE_EFFECT_SKIP_PG=1 skips these tests)",
        returncode=4,
    )


def _ensure_running(server: PgServer) -> None:
    if server.owned and not server.running:
        server.start()  # a restart test left it stopped


@pytest.fixture(scope="session")
def pg_server() -> Iterator[PgServer]:
    """The PostgreSQL server of this test run."""
    server = _SESSION.start()
    yield server
    # Session teardown: every test is done (several modules' copies of this fixture may
    # get here; the first one closes).
    _SESSION.close()


@pytest.fixture
def pg_url(pg_server: PgServer) -> Iterator[str]:
    """A fresh, empty database for one test (dropped afterwards on external servers)."""
    _ensure_running(pg_server)
    name = _SESSION.factory().take()
    yield pg_server.url(name)
    _ensure_running(pg_server)
    _SESSION.factory().discard(name)


@pytest.fixture
def pg_store(pg_server: PgServer) -> PgStore:
    """A schema nobody used yet, in the session's shared database."""
    _ensure_running(pg_server)
    return PgStore(url=_SESSION.shared(), schema=f"t{next(_SESSION.schemas)}")
