"""The storage contract suite: the invariants of the `Storage` port, as pytest tests.

Shipped so that a third-party backend can prove it keeps the port's promises. This module
imports pytest (and hypothesis): it is the one part of ``durable_effect.testing`` that
needs them, so it is imported on its own, never by ``import durable_effect.testing``. Subclass
`StorageContract`, set ``__test__ = True`` and provide a fixture named ``storage`` that yields
an *opened*, fresh backend (the tests are ``async def`` methods; run them with an asyncio
pytest plugin, e.g. pytest-asyncio in auto mode)::

    import pytest
    from durable_effect.testing.contract import StorageContract

    class TestMyStorage(StorageContract):
        __test__ = True

        @pytest.fixture
        async def storage(self, tmp_path):
            async with MyStorage(tmp_path / "db") as backend:
                yield backend

        def peer(self, storage):
            # optional: a second, unopened object on the same store
            return MyStorage(storage.path)

The suite needs ``hypothesis`` for its property tests and takes a few seconds per backend.
It reads "ascending order" (``list_instances``, ties in ``claim_due``) as Python's ``str``
order, i.e. by code point: a SQL backend compares ids bytewise (SQLite's BINARY collation,
PostgreSQL's ``COLLATE "C"``) and must not use a locale-aware collation.
"""

from __future__ import annotations

import asyncio
import itertools
import random
from datetime import UTC, datetime, timedelta, timezone
from typing import ClassVar

import pytest

from durable_effect.errors import LeaseLostError
from durable_effect.storage._port import (
    KEEP,
    AlarmChange,
    GuardFailed,
    InstanceWrite,
    Lease,
    Storage,
)
from durable_effect.testing._feed_contract import FeedContract
from durable_effect.testing._index_contract import IndexContract

__all__ = ["CALLER_CLOCK_TESTS", "ServerClockStorageContract", "StorageContract"]

T0 = datetime(2030, 1, 1, tzinfo=UTC)
TTL = timedelta(seconds=30)
US = timedelta(microseconds=1)

#: Ids that trip naive SQL, URL or path handling.
TRICKY_IDS = (
    "%",
    "_",
    "100%",
    "100%x",
    "1000",
    "a_b",
    "axb",
    "a_",
    "a\\b",
    "'; DROP TABLE records; --",
    '"quoted"',
    "job:order/1",
    "caf\u00e9",
    "\U0001f600 emoji",
    "tab\tnew\nline",
    "\uffff",
    "\U0010ffff",
    "x" * 512,
    "\u00e9" * 1024,  # the longest id the port allows
)


async def lease_of(
    storage: Storage,
    instance_id: str,
    *,
    owner: str = "owner-a",
    now: datetime = T0,
    ttl: timedelta = TTL,
) -> Lease:
    """Acquire one instance, failing the test if it is held."""
    got = await storage.acquire([instance_id], owner=owner, now=now, ttl=ttl)
    assert got is not None, f"{instance_id!r} should be free"
    return got.leases[0]


async def put(
    storage: Storage,
    instance_id: str,
    records: dict[str, bytes] | None = None,
    *,
    alarm: AlarmChange = KEEP,
    now: datetime = T0,
) -> None:
    """Commit one write to ``instance_id`` under a fresh lease (released after)."""
    lease = await lease_of(storage, instance_id, now=now)
    write = InstanceWrite(instance_id=instance_id, puts=records or {}, alarm=alarm)
    await storage.commit([lease], [write])


async def _guarded_commit(storage: Storage, lease: Lease, flag: str) -> bool:
    """Commit ``done`` unless ``flag`` has ``stop``; whether it applied."""
    write = InstanceWrite(instance_id=lease.instance_id, puts={"done": b"1"})
    try:
        await storage.commit([lease], [write], unless_present=[(flag, "stop")])
    except GuardFailed:
        return False
    return True


async def _write_flag_then_look(storage: Storage, lease: Lease, target: str) -> bool:
    """Commit ``stop``, then whether ``target`` has ``done``."""
    await storage.commit(
        [lease], [InstanceWrite(instance_id=lease.instance_id, puts={"stop": b""})]
    )
    return "done" in (await storage.load([target]))[target].records


class StorageContract(IndexContract, FeedContract):
    """Tests every `Storage` backend must pass; subclass with a ``storage`` fixture.

    Subclasses set ``__test__ = True`` and may override `peer`. The index tests come from
    `IndexContract` (``durable_effect.testing._index_contract``), the feed tests from
    `FeedContract` (``durable_effect.testing._feed_contract``).
    """

    __test__: ClassVar[bool] = False

    def peer(self, storage: Storage) -> Storage | None:
        """A second, unopened backend object on the same store as ``storage``.

        ``None`` (the default) when the backend cannot share a store between objects; the
        tests that need two objects (like two processes would have) are then skipped.
        """
        return None

    # -- commit: atomicity, rollback, order ------------------------------------------------

    async def test_commit_applies_every_instance(self, storage: Storage) -> None:
        got = await storage.acquire(["a", "b"], owner="w", now=T0, ttl=TTL)
        assert got is not None
        await storage.commit(
            got.leases,
            [
                InstanceWrite(instance_id="a", puts={"k": b"1"}),
                InstanceWrite(instance_id="b", puts={"k": b"2"}, alarm=T0),
            ],
        )
        snaps = await storage.load(["a", "b"])
        assert snaps["a"].records == {"k": b"1"}
        assert snaps["b"].records == {"k": b"2"}
        assert snaps["b"].alarm_at == T0

    async def test_commit_is_all_or_nothing_when_one_lease_is_fenced(
        self, storage: Storage
    ) -> None:
        await put(storage, "b", {"k": b"old"})
        got = await storage.acquire(["a", "b"], owner="w1", now=T0, ttl=TTL)
        assert got is not None
        la, lb = got.leases
        await lease_of(storage, "b", owner="w2", now=T0 + TTL)  # takes b over
        writes = [
            InstanceWrite(instance_id="a", puts={"k": b"new"}, alarm=T0),
            InstanceWrite(instance_id="b", puts={"k": b"new"}),
        ]
        with pytest.raises(LeaseLostError) as caught:
            await storage.commit([la, lb], writes)
        assert caught.value.instance_id == "b"
        assert caught.value.generation == lb.generation
        snaps = await storage.load(["a", "b"])
        assert not snaps["a"].exists
        assert snaps["b"].records == {"k": b"old"}
        # Nothing was released either: the lease on a still commits.
        await storage.commit([la], [InstanceWrite(instance_id="a", puts={"k": b"ok"})])
        assert (await storage.load(["a"]))["a"].records == {"k": b"ok"}

    async def test_commit_of_an_uncovered_write_raises_value_error(self, storage: Storage) -> None:
        la = await lease_of(storage, "a")
        writes = [
            InstanceWrite(instance_id="a", puts={"k": b"1"}),
            InstanceWrite(instance_id="not-leased", puts={"k": b"1"}),
        ]
        with pytest.raises(ValueError, match="not-leased"):
            await storage.commit([la], writes)
        snaps = await storage.load(["a", "not-leased"])
        assert not snaps["a"].exists
        assert not snaps["not-leased"].exists
        await storage.commit([la], writes[:1])
        assert (await storage.load(["a"]))["a"].records == {"k": b"1"}

    async def test_a_bad_commit_among_concurrent_ones_fails_alone(self, storage: Storage) -> None:
        ids = [f"b{n}" for n in range(8)]
        leases = [await lease_of(storage, i) for i in ids]
        bad_key = "lone \ud800 surrogate"

        def write(lease: Lease) -> InstanceWrite:
            puts = {"ok": b"1"}
            if lease.instance_id == "b3":
                puts[bad_key] = b"x"  # cannot be stored: not valid unicode text
            return InstanceWrite(instance_id=lease.instance_id, puts=puts, alarm=T0)

        results = await asyncio.gather(
            *(storage.commit([lease], [write(lease)]) for lease in leases),
            return_exceptions=True,
        )
        assert isinstance(results[3], ValueError)
        assert [r for n, r in enumerate(results) if n != 3] == [None] * 7
        snaps = await storage.load(ids)
        assert not snaps["b3"].exists
        assert all(snaps[i].records == {"ok": b"1"} for i in ids if i != "b3")
        # Nothing was applied for b3, its lease included: it is still held and still commits.
        assert await storage.acquire(["b3"], owner="other", now=T0, ttl=TTL) is None
        await storage.commit([leases[3]], [InstanceWrite(instance_id="b3", puts={"ok": b"2"})])
        assert (await storage.load(["b3"]))["b3"].records == {"ok": b"2"}

    # -- commit guards ---------------------------------------------------------------------

    async def test_a_guarded_commit_applies_when_the_guard_is_absent(
        self, storage: Storage
    ) -> None:
        await put(storage, "flag", {"other": b"x"})  # the instance exists, the key does not
        la = await lease_of(storage, "a")
        write = InstanceWrite(instance_id="a", puts={"k": b"1"}, alarm=T0)
        await storage.commit([la], [write], unless_present=[("flag", "stop"), ("nowhere", "stop")])
        snap = (await storage.load(["a"]))["a"]
        assert (snap.records, snap.alarm_at) == ({"k": b"1"}, T0)
        assert await storage.acquire(["a"], owner="w2", now=T0, ttl=TTL) is not None

    async def test_a_guarded_commit_applies_nothing_when_the_guard_is_present(
        self, storage: Storage
    ) -> None:
        await put(storage, "a", {"k": b"old"})
        await put(storage, "flag", {"stop": b""})
        got = await storage.acquire(["a", "b"], owner="w1", now=T0, ttl=TTL)
        assert got is not None
        writes = [
            InstanceWrite(instance_id="a", puts={"k": b"new"}, deletes=frozenset({"k2"})),
            InstanceWrite(instance_id="b", puts={"k": b"new"}, alarm=T0),
        ]
        for release in (True, False):
            with pytest.raises(GuardFailed) as caught:
                await storage.commit(
                    got.leases,
                    writes,
                    release=release,
                    unless_present=[("flag", "absent"), ("flag", "stop")],
                )
            assert (caught.value.instance_id, caught.value.key) == ("flag", "stop")
        snaps = await storage.load(["a", "b"])
        assert snaps["a"].records == {"k": b"old"}
        assert not snaps["b"].exists
        # The leases were kept: still held, and they still commit.
        assert await storage.acquire(["a"], owner="w2", now=T0, ttl=TTL) is None
        await storage.commit(got.leases, writes)
        assert (await storage.load(["b"]))["b"].records == {"k": b"new"}

    async def test_a_guarded_commit_is_fenced_like_any_other(self, storage: Storage) -> None:
        la = await lease_of(storage, "a")
        await lease_of(storage, "a", owner="w2", now=T0 + TTL)  # takes a over
        write = InstanceWrite(instance_id="a", puts={"k": b"1"})
        with pytest.raises(LeaseLostError):
            await storage.commit([la], [write], unless_present=[("flag", "stop")])
        assert not (await storage.load(["a"]))["a"].exists

    async def test_a_guard_on_an_instance_leased_by_another_owner(self, storage: Storage) -> None:
        held = await lease_of(storage, "flag", owner="holder")
        la = await lease_of(storage, "a")
        write = InstanceWrite(instance_id="a", puts={"k": b"1"})
        await storage.commit([la], [write], release=False, unless_present=[("flag", "stop")])
        await storage.commit(
            [held], [InstanceWrite(instance_id="flag", puts={"stop": b""})], release=False
        )
        with pytest.raises(GuardFailed):
            await storage.commit(
                [la],
                [InstanceWrite(instance_id="a", puts={"k": b"2"})],
                unless_present=[("flag", "stop")],
            )
        assert (await storage.load(["a"]))["a"].records == {"k": b"1"}
        # The guard neither needed nor touched the other owner's lease.
        await storage.commit(
            [held], [InstanceWrite(instance_id="flag", deletes=frozenset({"stop"}))]
        )
        await storage.commit(
            [la],
            [InstanceWrite(instance_id="a", puts={"k": b"3"})],
            unless_present=[("flag", "stop")],
        )
        assert (await storage.load(["a"]))["a"].records == {"k": b"3"}

    async def test_a_guard_and_a_writer_of_its_record_are_serialized(
        self, storage: Storage
    ) -> None:
        """Racing, either the guarded commit applied while the record was absent, or it failed.

        The writer reads the guarded commit's instance right after its own commit returned:
        if the guarded commit applied, it did so before the record existed, so the writer
        must see its result then (never a guarded commit landing after the record).
        """
        for round_ in range(12):
            flag, target = f"flag{round_}", f"target{round_}"
            guarded = await lease_of(storage, target)
            writer = await lease_of(storage, flag)
            racers = [
                _guarded_commit(storage, guarded, flag),
                _write_flag_then_look(storage, writer, target),
            ]
            if round_ % 2:
                racers.reverse()
            results = await asyncio.gather(*racers)
            applied, seen = results if not round_ % 2 else results[::-1]
            # Applied <=> the writer saw it right after its own commit: one order, never both.
            assert seen is applied
            assert ("done" in (await storage.load([target]))[target].records) is applied

    # -- commit_new -------------------------------------------------------------------------

    async def test_commit_new_writes_an_absent_instance_and_leaves_it_free(
        self, storage: Storage
    ) -> None:
        head = await storage.feed_head()
        write = InstanceWrite(instance_id="new", puts={"k": b"1"}, alarm=T0)
        assert await storage.commit_new(write, owner="w1", now=T0, ttl=TTL, feed=[b"made"])
        snap = (await storage.load(["new"]))["new"]
        assert (snap.records, snap.alarm_at) == ({"k": b"1"}, T0)
        assert [e.data for e in await storage.read_feed(after=head, limit=10)] == [b"made"]
        # Not left leased: another owner takes it at once, and its alarm is claimable.
        (claimed,) = await storage.claim_due(now=T0, owner="w2", ttl=TTL, limit=5)
        assert claimed.lease.instance_id == "new"

    async def test_commit_new_refuses_an_instance_that_exists(self, storage: Storage) -> None:
        await put(storage, "old", {"k": b"old"})
        await put(storage, "alarmed", alarm=T0)
        for instance_id in ("old", "alarmed"):
            write = InstanceWrite(instance_id=instance_id, puts={"k": b"new"})
            assert not await storage.commit_new(write, owner="w1", now=T0, ttl=TTL)
        snaps = await storage.load(["old", "alarmed"])
        assert snaps["old"].records == {"k": b"old"}
        assert (snaps["alarmed"].records, snaps["alarmed"].alarm_at) == ({}, T0)

    async def test_commit_new_refuses_an_instance_another_owner_holds(
        self, storage: Storage
    ) -> None:
        held = await lease_of(storage, "held", owner="holder")
        write = InstanceWrite(instance_id="held", puts={"k": b"1"})
        assert not await storage.commit_new(write, owner="w1", now=T0, ttl=TTL, feed=[b"x"])
        assert not (await storage.load(["held"]))["held"].exists
        # The holder's lease is untouched: it still commits.
        await storage.commit([held], [InstanceWrite(instance_id="held", puts={"k": b"h"})])
        assert (await storage.load(["held"]))["held"].records == {"k": b"h"}

    async def test_commit_new_never_lets_a_stale_holder_commit_over_it(
        self, storage: Storage
    ) -> None:
        """An expired lease nobody took still commits (``extend`` and ``commit`` fence by
        generation only): ``commit_new`` must refuse, or take the row over."""
        stale = await lease_of(storage, "run", owner="stale")
        write = InstanceWrite(instance_id="run", puts={"k": b"new"})
        written = await storage.commit_new(write, owner="w1", now=T0 + 2 * TTL, ttl=TTL)
        if written:
            with pytest.raises(LeaseLostError):
                await storage.commit([stale], [InstanceWrite(instance_id="run", puts={"k": b"s"})])
            assert (await storage.load(["run"]))["run"].records == {"k": b"new"}
        else:
            assert not (await storage.load(["run"]))["run"].exists

    async def test_writes_apply_purge_then_deletes_then_puts(self, storage: Storage) -> None:
        await put(storage, "i", {"a": b"1", "b": b"2", "c": b"3"}, alarm=T0)
        lease = await lease_of(storage, "i")
        write = InstanceWrite(
            instance_id="i", purge=True, deletes=frozenset({"zz"}), puts={"a": b"new"}
        )
        await storage.commit([lease], [write], release=False)
        snap = (await storage.load(["i"]))["i"]
        assert snap.records == {"a": b"new"}
        assert snap.alarm_at == T0
        again = InstanceWrite(instance_id="i", deletes=frozenset({"a", "b"}), puts={"b": b"x"})
        await storage.commit([lease], [again], release=False)
        assert (await storage.load(["i"]))["i"].records == {"b": b"x"}
        await storage.commit([lease], [InstanceWrite(instance_id="i", purge=True)])
        snap = (await storage.load(["i"]))["i"]
        assert snap.records == {}
        assert snap.alarm_at == T0
        assert snap.exists

    async def test_concurrent_commits_on_distinct_instances_all_apply(
        self, storage: Storage
    ) -> None:
        ids = [f"c{n:02d}" for n in range(32)]
        await asyncio.gather(*(put(storage, i, {"v": i.encode()}, alarm=T0) for i in ids))
        snaps = await storage.load(ids)
        assert all(snaps[i].records == {"v": i.encode()} for i in ids)
        assert list(await storage.list_instances("c")) == ids

    # -- alarms ----------------------------------------------------------------------------

    async def test_one_alarm_per_instance(self, storage: Storage) -> None:
        await put(storage, "i", alarm=T0 + timedelta(hours=1))
        await put(storage, "i", alarm=T0 + timedelta(minutes=5))
        snap = (await storage.load(["i"]))["i"]
        assert snap.alarm_at == T0 + timedelta(minutes=5)
        assert await storage.next_alarm_at() == T0 + timedelta(minutes=5)
        await put(storage, "i", {"k": b"v"})  # KEEP leaves it
        assert (await storage.load(["i"]))["i"].alarm_at == T0 + timedelta(minutes=5)
        await put(storage, "i", alarm=None)
        snap = (await storage.load(["i"]))["i"]
        assert snap.alarm_at is None
        assert await storage.next_alarm_at() is None
        assert snap.records == {"k": b"v"}

    async def test_next_alarm_at_is_the_earliest_leased_or_not(self, storage: Storage) -> None:
        assert await storage.next_alarm_at() is None
        await put(storage, "late", alarm=T0 + timedelta(days=1))
        await put(storage, "early", alarm=T0 - timedelta(days=1))
        claimed = await storage.claim_due(now=T0, owner="w", ttl=TTL, limit=10)
        assert [c.lease.instance_id for c in claimed] == ["early"]
        assert await storage.next_alarm_at() == T0 - timedelta(days=1)

    async def test_claim_takes_the_oldest_due_first_and_never_early(self, storage: Storage) -> None:
        alarms = {
            "b": T0 - timedelta(seconds=3),
            "c": T0 - timedelta(seconds=1),
            "a": T0 - timedelta(seconds=1),
            "d": T0,
            "e": T0 + US,
        }
        for instance_id, at in alarms.items():
            await put(storage, instance_id, {"id": instance_id.encode()}, alarm=at)
        first = await storage.claim_due(now=T0, owner="w", ttl=TTL, limit=2)
        assert [c.lease.instance_id for c in first] == ["b", "a"]
        assert [c.due_at for c in first] == [alarms["b"], alarms["a"]]
        rest = await storage.claim_due(now=T0, owner="w", ttl=TTL, limit=10)
        assert [c.lease.instance_id for c in rest] == ["c", "d"]
        for claimed in (*first, *rest):
            assert claimed.lease.owner == "w"
            assert claimed.lease.expires_at == T0 + TTL
            assert claimed.snapshot.alarm_at == claimed.due_at
            assert claimed.snapshot.records == {"id": claimed.lease.instance_id.encode()}
        assert await storage.claim_due(now=T0, owner="w", ttl=TTL, limit=10) == []
        later = await storage.claim_due(now=T0 + US, owner="w", ttl=TTL, limit=10)
        assert [c.lease.instance_id for c in later] == ["e"]
        assert await storage.claim_due(now=T0, owner="w", ttl=TTL, limit=0) == []

    async def test_claim_is_exclusive_between_owners(self, storage: Storage) -> None:
        await put(storage, "i", alarm=T0)
        first = await storage.claim_due(now=T0, owner="w1", ttl=TTL, limit=10)
        assert [c.lease.instance_id for c in first] == ["i"]
        assert await storage.claim_due(now=T0 + TTL - US, owner="w2", ttl=TTL, limit=10) == []
        assert await storage.acquire(["i"], owner="w2", now=T0, ttl=TTL) is None

    async def test_claim_skips_instances_held_by_acquire(self, storage: Storage) -> None:
        await put(storage, "held", alarm=T0)
        await put(storage, "free", alarm=T0)
        await lease_of(storage, "held", owner="w1")
        claimed = await storage.claim_due(now=T0, owner="w2", ttl=TTL, limit=10)
        assert [c.lease.instance_id for c in claimed] == ["free"]

    async def test_claimed_alarm_stays_until_committed_and_is_reclaimed_after_expiry(
        self, storage: Storage
    ) -> None:
        await put(storage, "i", alarm=T0)
        (first,) = await storage.claim_due(now=T0, owner="w1", ttl=TTL, limit=10)
        assert (await storage.load(["i"]))["i"].alarm_at == T0
        (second,) = await storage.claim_due(now=T0 + TTL, owner="w2", ttl=TTL, limit=10)
        assert second.lease.generation > first.lease.generation
        with pytest.raises(LeaseLostError):
            await storage.commit([first.lease], [InstanceWrite(instance_id="i", alarm=None)])
        assert (await storage.load(["i"]))["i"].alarm_at == T0
        moved = T0 + timedelta(hours=1)
        await storage.commit([second.lease], [InstanceWrite(instance_id="i", alarm=moved)])
        assert await storage.claim_due(now=T0 + TTL, owner="w3", ttl=TTL, limit=10) == []
        assert await storage.next_alarm_at() == moved

    # -- leases ----------------------------------------------------------------------------

    async def test_acquire_reads_snapshots_and_grants_fresh_generations(
        self, storage: Storage
    ) -> None:
        await put(storage, "old", {"k": b"v"}, alarm=T0)
        got = await storage.acquire(["old", "new"], owner="w", now=T0, ttl=TTL)
        assert got is not None
        assert [lease.instance_id for lease in got.leases] == ["old", "new"]
        assert all(lease.owner == "w" for lease in got.leases)
        assert all(lease.expires_at == T0 + TTL for lease in got.leases)
        assert got.snapshots["old"].records == {"k": b"v"}
        assert got.snapshots["old"].alarm_at == T0
        assert not got.snapshots["new"].exists
        generations = [lease.generation for lease in got.leases]
        for n in range(10):
            generations.append((await lease_of(storage, f"g{n}")).generation)
        assert generations == sorted(set(generations))

    async def test_acquire_is_all_or_none(self, storage: Storage) -> None:
        await lease_of(storage, "b", owner="w2")
        assert await storage.acquire(["a", "b", "c"], owner="w1", now=T0, ttl=TTL) is None
        got = await storage.acquire(["a", "c"], owner="w3", now=T0, ttl=TTL)
        assert got is not None
        assert await storage.acquire(["c", "d"], owner="w4", now=T0 + TTL - US, ttl=TTL) is None
        late = await storage.acquire(["a", "b", "c"], owner="w4", now=T0 + TTL, ttl=TTL)
        assert late is not None
        assert min(x.generation for x in late.leases) > max(x.generation for x in got.leases)
        assert await storage.acquire(["d"], owner="w5", now=T0 + TTL, ttl=TTL) is not None

    async def test_a_held_lease_refuses_even_its_owner(self, storage: Storage) -> None:
        await lease_of(storage, "i", owner="w")
        assert await storage.acquire(["i"], owner="w", now=T0, ttl=TTL) is None

    async def test_lease_expiry_and_takeover(self, storage: Storage) -> None:
        old = await lease_of(storage, "i", owner="w1", ttl=timedelta(seconds=10))
        before = T0 + timedelta(seconds=10) - US
        assert await storage.acquire(["i"], owner="w2", now=before, ttl=TTL) is None
        new = await lease_of(storage, "i", owner="w2", now=T0 + timedelta(seconds=10))
        assert new.generation > old.generation
        assert new.owner == "w2"

    async def test_an_expired_lease_nobody_took_still_commits_and_extends(
        self, storage: Storage
    ) -> None:
        lease = await lease_of(storage, "i", ttl=timedelta(seconds=1))
        later = T0 + timedelta(hours=1)
        renewed = await storage.extend(lease, now=later, ttl=TTL)
        assert renewed.generation == lease.generation
        assert renewed.expires_at == later + TTL
        await storage.commit([renewed], [InstanceWrite(instance_id="i", puts={"k": b"v"})])
        assert (await storage.load(["i"]))["i"].records == {"k": b"v"}

    async def test_extend_keeps_others_out_until_the_new_expiry(self, storage: Storage) -> None:
        lease = await lease_of(storage, "i", owner="w1", ttl=timedelta(seconds=10))
        await storage.extend(lease, now=T0 + timedelta(seconds=5), ttl=timedelta(seconds=10))
        until = T0 + timedelta(seconds=15)
        assert await storage.acquire(["i"], owner="w2", now=until - US, ttl=TTL) is None
        assert await storage.acquire(["i"], owner="w2", now=until, ttl=TTL) is not None

    async def test_a_stale_owner_is_fenced_and_changes_nothing(self, storage: Storage) -> None:
        await put(storage, "i", {"k": b"before"}, alarm=T0)
        stale = await lease_of(storage, "i", owner="w1")
        current = await lease_of(storage, "i", owner="w2", now=T0 + TTL, ttl=TTL)
        with pytest.raises(LeaseLostError) as caught:
            await storage.commit(
                [stale], [InstanceWrite(instance_id="i", purge=True, puts={"k": b"x"}, alarm=None)]
            )
        assert caught.value == LeaseLostError(
            instance_id="i", owner="w1", generation=stale.generation
        )
        with pytest.raises(LeaseLostError):
            await storage.extend(stale, now=T0 + TTL, ttl=timedelta(hours=1))
        await storage.release([stale])
        snap = (await storage.load(["i"]))["i"]
        assert snap.records == {"k": b"before"}
        assert snap.alarm_at == T0
        # The current lease is untouched: still held until its own expiry, and it commits.
        assert await storage.acquire(["i"], owner="w3", now=T0 + TTL, ttl=TTL) is None
        assert await storage.acquire(["i"], owner="w3", now=T0 + 2 * TTL - US, ttl=TTL) is None
        await storage.commit([current], [InstanceWrite(instance_id="i", puts={"k": b"after"})])
        assert (await storage.load(["i"]))["i"].records == {"k": b"after"}

    async def test_release_then_reacquire(self, storage: Storage) -> None:
        first = await lease_of(storage, "i", owner="w1")
        await storage.release([first])
        await storage.release([first])  # a second release does nothing
        second = await lease_of(storage, "i", owner="w1")
        assert second.generation > first.generation
        with pytest.raises(LeaseLostError):
            await storage.commit([first], [InstanceWrite(instance_id="i", puts={"k": b"v"})])
        await storage.release([first])  # releasing a fenced lease leaves the current one
        assert await storage.acquire(["i"], owner="w2", now=T0, ttl=TTL) is None

    async def test_commit_releases_unless_told_not_to(self, storage: Storage) -> None:
        lease = await lease_of(storage, "i", owner="w1")
        first = InstanceWrite(instance_id="i", puts={"n": b"1"})
        await storage.commit([lease], [first], release=False)
        assert await storage.acquire(["i"], owner="w2", now=T0, ttl=TTL) is None
        await storage.commit([lease], [InstanceWrite(instance_id="i", puts={"n": b"2"})])
        assert await storage.acquire(["i"], owner="w2", now=T0, ttl=TTL) is not None
        assert (await storage.load(["i"]))["i"].records == {"n": b"2"}

    # -- values: bytes, ids, instants --------------------------------------------------------

    async def test_bytes_round_trip_exactly(self, storage: Storage) -> None:
        values = {
            "all": bytes(range(256)),
            "empty": b"",
            "nul": b"\x00" * 7,
            "big": random.Random(7).randbytes(1 << 20),
            "cl\u00e9 \U0001f511": b"unicode key",
        }
        await put(storage, "bytes", values)
        assert dict((await storage.load(["bytes"]))["bytes"].records) == values
        got = await storage.acquire(["bytes"], owner="w", now=T0, ttl=TTL)
        assert got is not None
        assert dict(got.snapshots["bytes"].records) == values

    async def test_tricky_ids_round_trip_and_list_literally(self, storage: Storage) -> None:
        for instance_id in TRICKY_IDS:
            await put(storage, instance_id, {instance_id: instance_id.encode()}, alarm=T0)
        snaps = await storage.load(list(TRICKY_IDS))
        for instance_id in TRICKY_IDS:
            assert snaps[instance_id].records == {instance_id: instance_id.encode()}
        assert list(await storage.list_instances("")) == sorted(TRICKY_IDS)
        assert list(await storage.list_instances("100%")) == ["100%", "100%x"]
        assert list(await storage.list_instances("a_")) == ["a_", "a_b"]
        assert list(await storage.list_instances("%")) == ["%"]
        assert list(await storage.list_instances("_")) == ["_"]
        assert list(await storage.list_instances("a\\")) == ["a\\b"]
        assert list(await storage.list_instances("\U0010ffff")) == ["\U0010ffff"]
        assert list(await storage.list_instances("\uffff")) == ["\uffff"]

    async def test_arbitrary_unicode_ids(self, storage: Storage) -> None:
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st

        loop = asyncio.get_running_loop()
        clock = itertools.count(1)
        ids_strategy = st.one_of(
            st.text(min_size=1, max_size=512).filter(lambda s: "\x00" not in s),
            st.sampled_from(TRICKY_IDS),
        )

        async def check(ids: list[str], pick: int, cut: int) -> None:
            now = T0 + timedelta(hours=next(clock))
            try:
                got = await storage.acquire(ids, owner="h", now=now, ttl=TTL)
                assert got is not None
                writes = [
                    InstanceWrite(instance_id=i, puts={i: i.encode()}, alarm=now) for i in ids
                ]
                await storage.commit(got.leases, writes)
                snaps = await storage.load(ids)
                for i in ids:
                    assert snaps[i].records == {i: i.encode()}
                    assert snaps[i].alarm_at == now
                assert list(await storage.list_instances("")) == sorted(ids)
                chosen = ids[pick % len(ids)]
                prefix = chosen[: cut % (len(chosen) + 1)]
                expected = sorted(i for i in ids if i.startswith(prefix))
                assert list(await storage.list_instances(prefix)) == expected
                if len(expected) > 1:
                    page = await storage.list_instances(prefix, after=expected[0], limit=1)
                    assert list(page) == expected[1:2]
            finally:
                cleanup = await storage.acquire(ids, owner="h", now=now + TTL, ttl=TTL)
                assert cleanup is not None
                await storage.commit(
                    cleanup.leases,
                    [InstanceWrite(instance_id=i, purge=True, alarm=None) for i in ids],
                )

        @settings(
            max_examples=50,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(
            ids=st.lists(ids_strategy, min_size=1, max_size=6, unique=True),
            pick=st.integers(0, 5),
            cut=st.integers(0, 512),
        )
        def prop(ids: list[str], pick: int, cut: int) -> None:
            asyncio.run_coroutine_threadsafe(check(ids, pick, cut), loop).result(timeout=60)

        await asyncio.to_thread(prop)

    async def test_instants_round_trip_with_microseconds(self, storage: Storage) -> None:
        india = timezone(timedelta(hours=5, minutes=30))
        instants = {
            "micro": T0 + timedelta(microseconds=123457),
            "epoch": datetime(1970, 1, 1, tzinfo=UTC),
            "before-epoch": datetime(1969, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            "ancient": datetime(1, 1, 1, tzinfo=UTC),
            "far": datetime(9999, 12, 31, 23, 59, 59, 999999, tzinfo=UTC),
            "offset": datetime(2030, 6, 1, 12, 0, 0, 1, tzinfo=india),
        }
        for instance_id, at in instants.items():
            await put(storage, instance_id, alarm=at)
        snaps = await storage.load(list(instants))
        for instance_id, at in instants.items():
            got = snaps[instance_id].alarm_at
            assert got == at
            assert got is not None
            assert got.utcoffset() == timedelta(0)
            assert got.microsecond == at.astimezone(UTC).microsecond
        assert await storage.next_alarm_at() == instants["ancient"]
        now = T0 + timedelta(microseconds=999999)
        lease = await lease_of(storage, "lease", now=now, ttl=timedelta(microseconds=1))
        assert lease.expires_at == now + US
        assert lease.expires_at.utcoffset() == timedelta(0)
        claimed = await storage.claim_due(now=instants["micro"], owner="w", ttl=TTL, limit=10)
        assert [c.due_at for c in claimed] == sorted(
            at for at in instants.values() if at <= instants["micro"]
        )

    # -- reading ---------------------------------------------------------------------------

    async def test_snapshot_exists_while_a_record_or_an_alarm_is_there(
        self, storage: Storage
    ) -> None:
        empty = (await storage.load(["nothing"]))["nothing"]
        assert not empty.exists
        assert empty.records == {}
        assert empty.alarm_at is None
        await put(storage, "alarm-only", alarm=T0)
        await put(storage, "record-only", {"k": b""})
        await lease_of(storage, "lease-only")
        snaps = await storage.load(["alarm-only", "record-only", "lease-only"])
        assert snaps["alarm-only"].exists
        assert snaps["record-only"].exists
        assert not snaps["lease-only"].exists
        assert list(await storage.list_instances("")) == ["alarm-only", "record-only"]
        await put(storage, "alarm-only", alarm=None)
        await put(storage, "record-only", {})
        lease = await lease_of(storage, "record-only")
        await storage.commit([lease], [InstanceWrite(instance_id="record-only", purge=True)])
        assert not (await storage.load(["alarm-only"]))["alarm-only"].exists
        assert not (await storage.load(["record-only"]))["record-only"].exists
        assert list(await storage.list_instances("")) == []

    async def test_list_instances_orders_pages_and_filters(self, storage: Storage) -> None:
        for instance_id in ("b", "a/c", "ab", "a", "a/b"):
            await put(storage, instance_id, {"k": b"v"})
        await put(storage, "a/alarm", alarm=T0)
        assert list(await storage.list_instances("a")) == ["a", "a/alarm", "a/b", "a/c", "ab"]
        assert list(await storage.list_instances("a/")) == ["a/alarm", "a/b", "a/c"]
        assert list(await storage.list_instances("a", after="a/b")) == ["a/c", "ab"]
        assert list(await storage.list_instances("a", limit=2)) == ["a", "a/alarm"]
        assert list(await storage.list_instances("a", after="a", limit=2)) == ["a/alarm", "a/b"]
        assert list(await storage.list_instances("", after="ab")) == ["b"]
        assert list(await storage.list_instances("zzz")) == []
        assert list(await storage.list_instances("a", limit=0)) == []

    async def test_list_instances_refuses_bad_arguments_alike(self, storage: Storage) -> None:
        bad = "lone \ud800 surrogate"
        with pytest.raises(ValueError, match="limit"):
            await storage.list_instances("a", limit=-1)
        with pytest.raises(ValueError, match="prefix"):
            await storage.list_instances(bad)
        with pytest.raises(ValueError, match="after"):
            await storage.list_instances("a", after=bad)

    # -- change notification ---------------------------------------------------------------

    async def test_wait_for_change_wakes_after_a_commit_that_sets_an_alarm(
        self, storage: Storage
    ) -> None:
        await storage.wait_for_change(0)  # forget earlier changes
        lease = await lease_of(storage, "i")
        waiter = asyncio.ensure_future(storage.wait_for_change(60))
        await storage.commit([lease], [InstanceWrite(instance_id="i", alarm=T0)])
        await asyncio.wait_for(waiter, 2)

    async def test_wait_for_change_wakes_after_a_release(self, storage: Storage) -> None:
        lease = await lease_of(storage, "i")
        await storage.wait_for_change(0)
        waiter = asyncio.ensure_future(storage.wait_for_change(60))
        await storage.release([lease])
        await asyncio.wait_for(waiter, 2)

    async def test_close_wakes_waiters(self, storage: Storage) -> None:
        await storage.wait_for_change(0)
        try:  # gather starts the waiter first, then closes
            await asyncio.wait_for(asyncio.gather(storage.wait_for_change(60), storage.close()), 2)
        finally:
            await storage.open()

    async def test_wait_for_change_returns_after_its_timeout(self, storage: Storage) -> None:
        await asyncio.wait_for(storage.wait_for_change(0.01), 2)

    # -- lifecycle and migrations ------------------------------------------------------------

    async def test_reopen_keeps_committed_data(self, storage: Storage) -> None:
        await put(storage, "kept", {"k": b"v"}, alarm=T0)
        await storage.open()  # opening an open storage does nothing
        await storage.close()
        await storage.close()
        await storage.open()
        await storage.open()
        snap = (await storage.load(["kept"]))["kept"]
        assert snap.records == {"k": b"v"}
        assert snap.alarm_at == T0
        await put(storage, "after", {"k": b"v"})
        assert list(await storage.list_instances("")) == ["after", "kept"]

    async def test_two_objects_open_the_same_store_concurrently(self, storage: Storage) -> None:
        first, second = self.peer(storage), self.peer(storage)
        if first is None or second is None:
            pytest.skip("the backend cannot open its store from two objects")
        await put(storage, "shared", {"k": b"v"}, alarm=T0)
        await asyncio.gather(first.open(), second.open())
        try:
            assert (await first.load(["shared"]))["shared"].records == {"k": b"v"}
            claims = await asyncio.gather(
                first.claim_due(now=T0, owner="p1", ttl=TTL, limit=10),
                second.claim_due(now=T0, owner="p2", ttl=TTL, limit=10),
            )
            assert sorted(len(c) for c in claims) == [0, 1]
            assert await storage.acquire(["shared"], owner="p3", now=T0, ttl=TTL) is None
            (claimed,) = claims[0] or claims[1]
            await asyncio.gather(first.close(), second.close())
            await first.open()
            await first.commit([claimed.lease], [InstanceWrite(instance_id="shared", alarm=None)])
            assert await storage.next_alarm_at() is None
        finally:
            await asyncio.gather(first.close(), second.close())


#: The tests of `StorageContract` that move ``now`` past a lease's expiry and expect the lease
#: to be free (or still held a microsecond before). They hold for a backend whose leases
#: expire by the ``now`` callers pass (``lease_clock = "caller"``), not for one that judges
#: expiry by its own clock (``"server"``): no ``now`` makes a lease expire there.
CALLER_CLOCK_TESTS = (
    "test_commit_is_all_or_nothing_when_one_lease_is_fenced",
    "test_a_guarded_commit_is_fenced_like_any_other",
    "test_claimed_alarm_stays_until_committed_and_is_reclaimed_after_expiry",
    "test_acquire_is_all_or_none",
    "test_lease_expiry_and_takeover",
    "test_extend_keeps_others_out_until_the_new_expiry",
    "test_a_stale_owner_is_fenced_and_changes_nothing",
)


class ServerClockStorageContract(StorageContract):
    """`StorageContract` for a backend with ``lease_clock = "server"``: every test but
    `CALLER_CLOCK_TESTS` (such a backend must test its own expiry; run the whole suite on it
    in ``"caller"`` mode too, if it has one)."""


for _name in CALLER_CLOCK_TESTS:
    setattr(ServerClockStorageContract, _name, None)  # not collected by pytest
