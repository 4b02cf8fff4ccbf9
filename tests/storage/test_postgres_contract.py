"""The storage contract suite run against `PostgresStorage` on the harness's server.

Twice: with ``lease_clock="caller"`` the whole suite (the port's semantics: expiry by the
``now`` callers pass); with the default ``lease_clock="server"`` every test but those that
move ``now`` past a lease's expiry (``tests/storage/test_postgres_clock.py`` checks expiry
by the server's clock).
"""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from durable_effect.storage import Storage
from durable_effect.storage._postgres import PostgresStorage
from durable_effect.testing.contract import (
    CALLER_CLOCK_TESTS,
    ServerClockStorageContract,
    StorageContract,
)
from tests.conftest_pg import PgStore, pg_server, pg_store  # noqa: F401

pytestmark = pytest.mark.postgres


def _peer(storage: Storage) -> Storage:
    assert isinstance(storage, PostgresStorage)
    return PostgresStorage(
        storage.url,
        max_size=2,
        schema=storage.schema,
        notify_channel=storage.notify_channel,
        lease_clock=storage.lease_clock,
    )


class TestPostgresStorage(StorageContract):
    __test__ = True

    @pytest.fixture
    async def storage(self, pg_store: PgStore) -> AsyncIterator[Storage]:  # noqa: F811
        """A fresh store (a new schema and channel in the session's database), caller clock."""
        backend = PostgresStorage(
            pg_store.url,
            max_size=4,
            schema=pg_store.schema,
            notify_channel=pg_store.schema,
            lease_clock="caller",
        )
        async with backend:
            yield backend

    def peer(self, storage: Storage) -> Storage | None:
        return _peer(storage)


class TestPostgresStorageServerClock(ServerClockStorageContract):
    __test__ = True

    @pytest.fixture
    async def storage(self, pg_store: PgStore) -> AsyncIterator[Storage]:  # noqa: F811
        """A fresh store with the default lease clock, the server's."""
        backend = PostgresStorage(
            pg_store.url, max_size=4, schema=pg_store.schema, notify_channel=pg_store.schema
        )
        assert backend.lease_clock == "server"
        async with backend:
            yield backend

    def peer(self, storage: Storage) -> Storage | None:
        return _peer(storage)


def test_the_tests_left_out_for_the_server_clock_exist() -> None:
    for name in CALLER_CLOCK_TESTS:
        assert callable(getattr(StorageContract, name)), name
        assert getattr(ServerClockStorageContract, name) is None, name
