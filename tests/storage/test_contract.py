"""The storage contract suite run against the bundled backends (memory, SQLite FULL/NORMAL)."""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path
from typing import Literal

import pytest

from durable_effect.storage import MemoryStorage, SqliteStorage, Storage
from durable_effect.testing.contract import StorageContract


@pytest.fixture(params=["memory", "sqlite-full", "sqlite-normal"])
async def storage(request: pytest.FixtureRequest, tmp_path: Path) -> AsyncIterator[Storage]:
    backend: Storage
    if request.param == "memory":
        backend = MemoryStorage()
    else:
        synchronous: Literal["full", "normal"] = "full"
        if request.param == "sqlite-normal":
            synchronous = "normal"
        backend = SqliteStorage(tmp_path / "contract.db", synchronous=synchronous)
    await backend.open()
    try:
        yield backend
    finally:
        await backend.close()


class TestBundledBackends(StorageContract):
    __test__ = True

    def peer(self, storage: Storage) -> Storage | None:
        if isinstance(storage, SqliteStorage):
            return SqliteStorage(storage.path, synchronous=storage.synchronous)
        assert isinstance(storage, MemoryStorage)
        return MemoryStorage(share_with=storage)
