"""The storage contract suite run against `PostgresStorage` on the harness's server."""

from __future__ import annotations

from collections.abc import AsyncIterator

import pytest

from durable_effect.storage import Storage
from durable_effect.storage._postgres import PostgresStorage
from durable_effect.testing import StorageContract
from tests.conftest_pg import PgStore, pg_server, pg_store  # noqa: F401

pytestmark = pytest.mark.postgres


@pytest.fixture
async def storage(pg_store: PgStore) -> AsyncIterator[Storage]:  # noqa: F811
    """A fresh store: a new schema (and its own channel) in the session's database."""
    backend = PostgresStorage(
        pg_store.url, max_size=4, schema=pg_store.schema, notify_channel=pg_store.schema
    )
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


class TestPostgresStorage(StorageContract):
    __test__ = True

    def peer(self, storage: Storage) -> Storage | None:
        assert isinstance(storage, PostgresStorage)
        return PostgresStorage(
            storage.url,
            max_size=2,
            schema=storage.schema,
            notify_channel=storage.notify_channel,
        )
