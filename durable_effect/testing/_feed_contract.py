"""The feed part of the storage contract: ``commit(..., feed=)``, ``read_feed``, ``feed_head``.

Mixed into `StorageContract`. The feed is an append-only log written in the same transaction
as a commit; its sequence numbers grow in commit order (a reader that saw ``n`` never sees a
smaller one appear later), and the backend keeps at least the newest ``feed_retain``.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest

from durable_effect.errors import LeaseLostError
from durable_effect.storage._port import (
    FEED_ENTRY_MAX,
    FeedEntry,
    GuardFailed,
    InstanceWrite,
    Lease,
    Storage,
)

__all__ = ["FeedContract"]

_T0 = datetime(2030, 1, 1, tzinfo=UTC)
_TTL = timedelta(seconds=30)


async def _lease(storage: Storage, instance_id: str, owner: str = "feed-owner") -> Lease:
    got = await storage.acquire([instance_id], owner=owner, now=_T0, ttl=_TTL)
    assert got is not None, f"{instance_id!r} should be free"
    return got.leases[0]


async def _commit(storage: Storage, instance_id: str, feed: Sequence[bytes]) -> None:
    lease = await _lease(storage, instance_id)
    write = InstanceWrite(instance_id=instance_id, puts={"k": b"v"})
    await storage.commit([lease], [write], feed=feed)


async def _read_all(storage: Storage, after: int = 0, page: int = 1000) -> list[FeedEntry]:
    out: list[FeedEntry] = []
    while True:
        got = list(await storage.read_feed(after=after, limit=page))
        if not got:
            return out
        out.extend(got)
        after = got[-1].seq


class FeedContract:
    """Feed tests of the storage contract (see the module docstring)."""

    __test__: ClassVar[bool] = False

    def peer(self, storage: Storage) -> Storage | None:
        """A second, unopened backend object on the same store (``StorageContract.peer``)."""
        return None

    async def test_a_commit_appends_its_feed_entries_in_order(self, storage: Storage) -> None:
        assert await storage.feed_head() == 0
        assert list(await storage.read_feed(after=0, limit=10)) == []
        await _commit(storage, "a", [b"a1", b"a2", b"a3"])
        await _commit(storage, "b", [b"b1"])
        entries = await _read_all(storage)
        assert [e.data for e in entries] == [b"a1", b"a2", b"a3", b"b1"]
        seqs = [e.seq for e in entries]
        assert seqs == sorted(set(seqs))
        assert seqs[0] >= 1
        assert await storage.feed_head() == seqs[-1]
        assert [e.data for e in await storage.read_feed(after=seqs[1], limit=1)] == [b"a3"]
        assert list(await storage.read_feed(after=seqs[-1], limit=10)) == []

    async def test_a_multi_instance_commit_appends_too(self, storage: Storage) -> None:
        got = await storage.acquire(["m1", "m2"], owner="w", now=_T0, ttl=_TTL)
        assert got is not None
        writes = [InstanceWrite(instance_id=i, puts={"k": b"v"}) for i in ("m1", "m2")]
        await storage.commit(got.leases, writes, feed=[b"x", b"y"], unless_present=[("z", "k")])
        assert [e.data for e in await _read_all(storage)] == [b"x", b"y"]

    async def test_entries_round_trip_as_bytes(self, storage: Storage) -> None:
        values = [b"", b"\x00\xff", bytes(range(256)), b"x" * FEED_ENTRY_MAX]
        await _commit(storage, "bytes", values)
        got = [e.data for e in await _read_all(storage)]
        assert got == values
        assert all(type(d) is bytes for d in got)

    async def test_a_commit_that_applies_nothing_appends_nothing(self, storage: Storage) -> None:
        stale = await _lease(storage, "fenced")
        await storage.release([stale])
        await _lease(storage, "fenced", owner="other")
        with pytest.raises(LeaseLostError):
            await storage.commit([stale], [], feed=[b"lost"])
        await storage.commit([], [], feed=[b"no lease"])
        await _commit(storage, "flag", [])
        lease = await _lease(storage, "guarded")
        with pytest.raises(GuardFailed):
            await storage.commit([lease], [], feed=[b"guarded"], unless_present=[("flag", "k")])
        assert await _read_all(storage) == []
        assert await storage.feed_head() == 0

    async def test_bad_entries_are_refused_and_nothing_is_written(self, storage: Storage) -> None:
        bad: list[Sequence[object]] = [["text"], [b"x" * (FEED_ENTRY_MAX + 1)], [None]]
        for feed in bad:
            lease = await _lease(storage, "bad")
            write = InstanceWrite(instance_id="bad", puts={"k": b"v"})
            with pytest.raises(ValueError, match="feed"):
                await storage.commit([lease], [write], feed=feed)  # type: ignore[arg-type]
            await storage.release([lease])
        assert (await storage.load(["bad"]))["bad"].records == {}
        assert await _read_all(storage) == []

    async def test_read_feed_refuses_bad_arguments(self, storage: Storage) -> None:
        for after, limit in ((-1, 1), (0, 0), (0, -5), (True, 1)):
            with pytest.raises(ValueError, match=r"after|limit"):
                await storage.read_feed(after=after, limit=limit)

    async def test_the_newest_entries_are_retained_and_older_ones_trimmed(
        self, storage: Storage
    ) -> None:
        storage.feed_retain = 50
        try:
            for n in range(60):
                await _commit(storage, f"r{n % 3}", [f"{n}:{i}".encode() for i in range(7)])
            entries = await _read_all(storage)
            expected = [f"{n}:{i}".encode() for n in range(60) for i in range(7)]
            data = [e.data for e in entries]
            assert len(data) >= 50
            assert data == expected[-len(data) :]  # a contiguous tail, nothing missing in it
            assert len(data) <= 50 + 2 * 5 + 7  # trimmed by bounded steps
            assert await storage.feed_head() == entries[-1].seq
            # a reader past the trimmed part resumes from what is retained
            older = await storage.read_feed(after=0, limit=5)
            assert [e.data for e in older] == data[:5]
            # one commit larger than the retention keeps its newest entries
            await _commit(storage, "big", [f"big:{i}".encode() for i in range(120)])
            tail = [e.data for e in await _read_all(storage, after=entries[-1].seq)]
            assert tail == [f"big:{i}".encode() for i in range(70, 120)]
        finally:
            storage.feed_retain = type(storage).feed_retain

    async def test_concurrent_readers_never_see_a_smaller_seq_appear(
        self, storage: Storage
    ) -> None:
        """Commits race on many instances while a reader polls: each entry is seen once, in
        an order that never goes back, and each commit's entries keep their order."""
        counter = itertools.count()

        async def writer(name: str) -> None:
            for _ in range(15):
                k = next(counter)
                await _commit(storage, f"{name}-{k % 2}", [f"{k}:0".encode(), f"{k}:1".encode()])

        done = asyncio.Event()
        seen: list[FeedEntry] = []

        async def reader() -> None:
            after = 0
            while True:
                finished = done.is_set()
                got = list(await storage.read_feed(after=after, limit=7))
                seen.extend(got)
                if got:
                    after = got[-1].seq
                elif finished:
                    return
                await asyncio.sleep(0)

        reading = asyncio.ensure_future(reader())
        await asyncio.gather(*(writer(f"w{n}") for n in range(4)))
        done.set()
        await asyncio.wait_for(reading, 30)
        seqs = [e.seq for e in seen]
        assert seqs == sorted(set(seqs)), "a seq went back or repeated"
        data = [e.data.decode() for e in seen]
        assert sorted(data) == sorted(f"{k}:{i}" for k in range(60) for i in range(2))
        for k in range(60):  # (entries of concurrent commits may interleave)
            assert data.index(f"{k}:0") < data.index(f"{k}:1")

    async def test_another_object_on_the_store_reads_the_feed(self, storage: Storage) -> None:
        other = self.peer(storage)
        if other is None:
            pytest.skip("the backend cannot open its store from two objects")
        await other.open()
        try:
            head = await other.feed_head()
            await _commit(storage, "p", [b"from the first"])
            got = await other.read_feed(after=head, limit=10)
            assert [e.data for e in got] == [b"from the first"]
            assert await other.feed_head() == got[0].seq
        finally:
            await other.close()
