"""The index part of the storage contract suite: entries, ordered scans, counts.

`StorageContract` includes these tests (`IndexContract` is its base class). They check that
index entries are written in the same commit as the records they go with (all or nothing,
fenced and guarded alike), that a write's ``index`` replaces the instance's entries and a
purge drops them, that ``scan_index`` orders by ``(key, instance_id)`` (code point order)
and pages by keyset without gaps or repeats while entries are written, and that
``count_index`` agrees with what is there — checked against a model with Hypothesis.
"""

from __future__ import annotations

import asyncio
import itertools
from collections.abc import Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import ClassVar

import pytest

from durable_effect.errors import LeaseLostError
from durable_effect.storage._port import KEEP, GuardFailed, IndexHit, InstanceWrite, Keep, Storage

__all__ = ["IndexContract"]

T0 = datetime(2030, 1, 1, tzinfo=UTC)
TTL = timedelta(seconds=30)

#: Index names and keys that trip naive SQL, collation or encoding handling.
TRICKY_TEXT = (
    "",
    "%",
    "_",
    "a_b",
    "'; DROP TABLE index_entries; --",
    '"q"',
    "caf\u00e9",
    "cafe\u0301",
    "\U0001f600",
    "tab\tnew\nline",
    "\uffff",
    "\U0010ffff",
    "Z",
    "a",
)


async def set_index(
    storage: Storage,
    instance_id: str,
    index: Mapping[str, str] | Keep,
    *,
    purge: bool = False,
    puts: Mapping[str, bytes] | None = None,
) -> None:
    """Commit one write setting ``instance_id``'s index entries, under a fresh lease."""
    got = await storage.acquire([instance_id], owner="ix", now=T0, ttl=TTL)
    assert got is not None, f"{instance_id!r} should be free"
    write = InstanceWrite(instance_id=instance_id, puts=puts or {}, purge=purge, index=index)
    await storage.commit(got.leases, [write])


def hits(found: Sequence[IndexHit]) -> list[tuple[str, str, str]]:
    """Scan results as ``(index, key, instance_id)`` tuples."""
    return [(h.index, h.key, h.instance_id) for h in found]


async def scan_all(
    storage: Storage, indexes: Sequence[str], *, page: int, descending: bool = False
) -> list[tuple[str, str]]:
    """Every ``(key, instance_id)`` of ``indexes``, read page by page with ``after``."""
    out: list[tuple[str, str]] = []
    after: tuple[str, str] | None = None
    while True:
        found = await storage.scan_index(indexes, limit=page, after=after, descending=descending)
        out.extend((h.key, h.instance_id) for h in found)
        if len(found) < page:
            return out
        after = (found[-1].key, found[-1].instance_id)


class IndexContract:
    """Index tests of the storage contract (mixed into `StorageContract`)."""

    __test__: ClassVar[bool] = False

    def peer(self, storage: Storage) -> Storage | None:
        """A second, unopened object on the same store (see `StorageContract.peer`)."""
        return None

    # -- written with the commit ---------------------------------------------------------

    async def test_entries_are_committed_with_the_records(self, storage: Storage) -> None:
        got = await storage.acquire(["a", "b"], owner="w", now=T0, ttl=TTL)
        assert got is not None
        writes = [
            InstanceWrite(instance_id="a", puts={"k": b"1"}, index={"all": "2", "odd": "x"}),
            InstanceWrite(instance_id="b", puts={"k": b"2"}, index={"all": "1"}),
        ]
        await storage.commit(got.leases, writes)
        found = await storage.scan_index(["all"], limit=10)
        assert hits(found) == [("all", "1", "b"), ("all", "2", "a")]
        assert await storage.count_index(["all", "odd", "none"]) == {"all": 2, "odd": 1, "none": 0}
        assert (await storage.load(["a"]))["a"].records == {"k": b"1"}
        assert await storage.load_index(["a", "b", "none"]) == {
            "a": {"all": "2", "odd": "x"},
            "b": {"all": "1"},
            "none": {},
        }

    async def test_a_fenced_commit_writes_no_entries(self, storage: Storage) -> None:
        got = await storage.acquire(["a", "b"], owner="w", now=T0, ttl=TTL)
        assert got is not None
        await storage.release([got.leases[1]])
        taken = await storage.acquire(["b"], owner="other", now=T0, ttl=TTL)
        assert taken is not None
        writes = [
            InstanceWrite(instance_id="a", index={"i": "a"}),
            InstanceWrite(instance_id="b", index={"i": "b"}),
        ]
        with pytest.raises(LeaseLostError):
            await storage.commit(got.leases, writes)
        assert await storage.scan_index(["i"], limit=10) == []
        assert await storage.count_index(["i"]) == {"i": 0}

    async def test_a_guarded_commit_writes_no_entries(self, storage: Storage) -> None:
        await set_index(storage, "flag", KEEP, puts={"stop": b""})
        got = await storage.acquire(["a"], owner="w", now=T0, ttl=TTL)
        assert got is not None
        with pytest.raises(GuardFailed):
            await storage.commit(
                got.leases,
                [InstanceWrite(instance_id="a", puts={"k": b""}, index={"i": ""})],
                unless_present=[("flag", "stop")],
            )
        assert await storage.count_index(["i"]) == {"i": 0}
        await storage.commit(got.leases, [InstanceWrite(instance_id="a", index={"i": ""})])
        assert hits(await storage.scan_index(["i"], limit=10)) == [("i", "", "a")]

    async def test_a_bad_write_leaves_every_entry_of_the_commit_out(self, storage: Storage) -> None:
        got = await storage.acquire(["a", "b"], owner="w", now=T0, ttl=TTL)
        assert got is not None
        for bad in ({"": "k"}, {"i": "\x00"}, {"n\x00": ""}, {"i": "k" * 129}, {"x" * 257: ""}):
            writes = [
                InstanceWrite(instance_id="a", index={"i": "a"}),
                InstanceWrite(instance_id="b", index=bad),
            ]
            with pytest.raises(ValueError, match="index"):
                await storage.commit(got.leases, writes, release=False)
        too_many = {f"n{n}": "" for n in range(1025)}
        with pytest.raises(ValueError, match="index entries"):
            await storage.commit(
                got.leases, [InstanceWrite(instance_id="a", index=too_many)], release=False
            )
        assert await storage.count_index(["i"]) == {"i": 0}
        assert await storage.scan_index(["i"], limit=10) == []

    async def test_a_bad_commit_among_concurrent_ones_fails_alone(self, storage: Storage) -> None:
        leases = []
        for n in range(8):
            got = await storage.acquire([f"c{n}"], owner="w", now=T0, ttl=TTL)
            assert got is not None
            leases.append(got.leases[0])
        writes = [
            InstanceWrite(instance_id=f"c{n}", index={"i": "" if n != 3 else "\x00"})
            for n in range(8)
        ]
        outcomes = await asyncio.gather(
            *(storage.commit([lease], [w]) for lease, w in zip(leases, writes, strict=True)),
            return_exceptions=True,
        )
        assert [isinstance(o, ValueError) for o in outcomes] == [n == 3 for n in range(8)]
        expected = [f"c{n}" for n in range(8) if n != 3]
        assert [h.instance_id for h in await storage.scan_index(["i"], limit=20)] == expected
        assert await storage.count_index(["i"]) == {"i": 7}

    # -- replace, keep, purge ------------------------------------------------------------

    async def test_a_write_replaces_the_whole_set_and_keep_leaves_it(
        self, storage: Storage
    ) -> None:
        await set_index(storage, "a", {"s:pending": "", "l:x": "5"})
        await set_index(storage, "a", {"s:leased": "", "l:x": "6"})
        assert await storage.count_index(["s:pending", "s:leased", "l:x"]) == {
            "s:pending": 0,
            "s:leased": 1,
            "l:x": 1,
        }
        assert hits(await storage.scan_index(["l:x"], limit=5)) == [("l:x", "6", "a")]
        await set_index(storage, "a", KEEP, puts={"k": b"v"})
        assert hits(await storage.scan_index(["s:leased"], limit=5)) == [("s:leased", "", "a")]
        assert await storage.load_index(["a"]) == {"a": {"s:leased": "", "l:x": "6"}}
        await set_index(storage, "a", {})
        assert await storage.count_index(["s:leased", "l:x"]) == {"s:leased": 0, "l:x": 0}
        assert (await storage.load(["a"]))["a"].records == {"k": b"v"}
        assert await storage.load_index(["a"]) == {"a": {}}

    async def test_a_purge_drops_the_entries_unless_it_sets_new_ones(
        self, storage: Storage
    ) -> None:
        await set_index(storage, "a", {"i": "1"}, puts={"k": b""})
        await set_index(storage, "b", {"i": "2"}, puts={"k": b""})
        await set_index(storage, "a", KEEP, purge=True)
        await set_index(storage, "b", {"j": "3"}, purge=True)
        assert hits(await storage.scan_index(["i", "j"], limit=5)) == [("j", "3", "b")]
        assert await storage.count_index(["i", "j"]) == {"i": 0, "j": 1}
        assert await storage.load_index(["a", "b"]) == {"a": {}, "b": {"j": "3"}}
        assert not (await storage.load(["a"]))["a"].exists

    async def test_entries_need_no_records(self, storage: Storage) -> None:
        await set_index(storage, "bare", {"i": "k"})
        assert hits(await storage.scan_index(["i"], limit=5)) == [("i", "k", "bare")]
        assert not (await storage.load(["bare"]))["bare"].exists

    async def test_several_writes_to_one_instance_apply_in_order(self, storage: Storage) -> None:
        got = await storage.acquire(["a"], owner="w", now=T0, ttl=TTL)
        assert got is not None
        writes = [
            InstanceWrite(instance_id="a", index={"first": ""}),
            InstanceWrite(instance_id="a", puts={"k": b""}),
            InstanceWrite(instance_id="a", index={"second": ""}),
            InstanceWrite(instance_id="a", purge=True, puts={"j": b""}),
        ]
        await storage.commit(got.leases, writes)
        assert await storage.count_index(["first", "second"]) == {"first": 0, "second": 0}
        got = await storage.acquire(["a"], owner="w", now=T0, ttl=TTL)
        assert got is not None
        writes = [
            InstanceWrite(instance_id="a", purge=True),
            InstanceWrite(instance_id="a", index={"third": "t"}),
        ]
        await storage.commit(got.leases, writes)
        assert await storage.count_index(["third"]) == {"third": 1}

    # -- ordering and paging -------------------------------------------------------------

    async def test_scans_order_by_key_then_instance_in_either_direction(
        self, storage: Storage
    ) -> None:
        entries = {"e": "2", "d": "1", "c": "2", "b": "", "a": "10"}
        for instance_id, key in entries.items():
            await set_index(storage, instance_id, {"i": key})
        ascending = [("", "b"), ("1", "d"), ("10", "a"), ("2", "c"), ("2", "e")]
        found = await storage.scan_index(["i"], limit=10)
        assert [(h.key, h.instance_id) for h in found] == ascending
        found = await storage.scan_index(["i"], limit=10, descending=True)
        assert [(h.key, h.instance_id) for h in found] == ascending[::-1]
        found = await storage.scan_index(["i"], limit=2, after=("10", "a"))
        assert [(h.key, h.instance_id) for h in found] == [("2", "c"), ("2", "e")]
        found = await storage.scan_index(["i"], limit=9, after=("2", "e"), descending=True)
        assert [(h.key, h.instance_id) for h in found] == ascending[3::-1]
        found = await storage.scan_index(["i"], limit=9, after=("2", "c"), descending=True)
        assert [(h.key, h.instance_id) for h in found] == ascending[2::-1]
        found = await storage.scan_index(["i"], limit=9, until="10")
        assert [(h.key, h.instance_id) for h in found] == ascending[:3]
        found = await storage.scan_index(["i"], limit=9, until="10", descending=True)
        assert [(h.key, h.instance_id) for h in found] == ascending[:1:-1]
        found = await storage.scan_index(["i"], limit=9, after=("", "b"), until="1")
        assert [(h.key, h.instance_id) for h in found] == [("1", "d")]
        assert await storage.scan_index(["i"], limit=0) == []
        assert await storage.scan_index([], limit=5) == []
        assert await storage.scan_index(["unknown"], limit=5) == []

    async def test_scans_merge_several_indexes(self, storage: Storage) -> None:
        for n in range(9):
            await set_index(storage, f"r{n}", {f"s{n % 3}": "", f"l{n % 2}": f"{n}"})
        found = await storage.scan_index(["s0", "s2"], limit=4, descending=True)
        newest = [("s2", "", "r8"), ("s0", "", "r6"), ("s2", "", "r5"), ("s0", "", "r3")]
        assert hits(found) == newest
        found = await storage.scan_index(["s2", "s0"], limit=9, after=("", "r3"), descending=True)
        assert hits(found) == [("s2", "", "r2"), ("s0", "", "r0")]
        found = await storage.scan_index(["l1", "l0", "l1"], limit=3, after=("2", "r2"))
        assert hits(found) == [("l1", "3", "r3"), ("l0", "4", "r4"), ("l1", "5", "r5")]
        assert await storage.count_index(["s0", "s1", "l0", "s0"]) == {"s0": 3, "s1": 3, "l0": 5}
        await set_index(storage, "twice", {"s0": "k", "s1": "k", "s2": "j"})
        found = await storage.scan_index(["s2", "s1", "s0"], limit=2, until="k", after=("", "r8"))
        assert hits(found) == [("s2", "j", "twice"), ("s0", "k", "twice")]
        found = await storage.scan_index(["s1", "s0"], limit=1, descending=True)
        assert hits(found) == [("s0", "k", "twice")]

    async def test_paging_while_entries_are_written_has_no_gaps_or_repeats(
        self, storage: Storage
    ) -> None:
        for n in range(40):
            await set_index(storage, f"run:{n:03d}", {"s:a" if n % 2 else "s:b": ""})
        removed = {"run:013", "run:020", "run:002"}
        seen: list[str] = []
        after: tuple[str, str] | None = None
        fresh = itertools.count(100)
        while True:
            page = await storage.scan_index(["s:a", "s:b"], limit=7, after=after, descending=True)
            seen.extend(h.instance_id for h in page)
            if len(page) < 7:
                break
            after = (page[-1].key, page[-1].instance_id)
            # Newer entries arrive (ahead of the cursor), old ones move between the indexes
            # or go away (behind or ahead of it): none of it may shift the next page.
            await set_index(storage, f"run:{next(fresh):03d}", {"s:a": ""})
            moved = f"run:{len(seen) % 40:03d}"
            if moved not in removed:
                await set_index(storage, moved, {"s:b": ""})
            if removed:
                await set_index(storage, removed.pop(), {})
        assert len(seen) == len(set(seen)), "an entry came twice"
        assert seen == sorted(seen, reverse=True)
        gone = {"run:013", "run:020", "run:002"}
        for n in range(40):
            instance_id = f"run:{n:03d}"
            assert instance_id in seen or instance_id in gone, f"{instance_id} was skipped"
        assert not any(i >= "run:100" for i in seen)

    async def test_unicode_names_keys_and_ids_round_trip_in_code_point_order(
        self, storage: Storage
    ) -> None:
        ids = [f"id{text}" for text in TRICKY_TEXT] + ["\u00e9" * 1024]
        for n, instance_id in enumerate(ids):
            key = TRICKY_TEXT[n % len(TRICKY_TEXT)]
            name = f"ix{TRICKY_TEXT[(n + 3) % len(TRICKY_TEXT)]}"
            await set_index(storage, instance_id, {name: key, "all": key})
        found = await storage.scan_index(["all"], limit=100)
        expected = sorted(
            (TRICKY_TEXT[n % len(TRICKY_TEXT)], instance_id) for n, instance_id in enumerate(ids)
        )
        assert [(h.key, h.instance_id) for h in found] == expected
        for n, instance_id in enumerate(ids):
            name = f"ix{TRICKY_TEXT[(n + 3) % len(TRICKY_TEXT)]}"
            listed = await storage.scan_index([name], limit=100)
            assert (name, TRICKY_TEXT[n % len(TRICKY_TEXT)], instance_id) in hits(listed)
        loaded = await storage.load_index(ids)
        for n, instance_id in enumerate(ids):
            key = TRICKY_TEXT[n % len(TRICKY_TEXT)]
            name = f"ix{TRICKY_TEXT[(n + 3) % len(TRICKY_TEXT)]}"
            assert loaded[instance_id] == {name: key, "all": key}
        names = [f"ix{text}" for text in TRICKY_TEXT]
        counts = await storage.count_index(names)
        assert sum(counts.values()) == len(ids)
        assert set(counts) == set(names)
        name = "ix" + "\U0001f600" * 254
        await set_index(storage, "long", {name: "\U0010ffff" * 128})
        assert hits(await storage.scan_index([name], limit=2)) == [
            (name, "\U0010ffff" * 128, "long")
        ]

    async def test_scan_and_count_refuse_bad_arguments_alike(self, storage: Storage) -> None:
        bad = "lone \ud800 surrogate"
        with pytest.raises(ValueError, match="limit"):
            await storage.scan_index(["i"], limit=-1)
        with pytest.raises(ValueError, match="index name"):
            await storage.scan_index([bad], limit=1)
        with pytest.raises(ValueError, match="index names"):
            await storage.scan_index([""], limit=1)
        with pytest.raises(ValueError, match="index names"):
            await storage.scan_index("i", limit=1)
        with pytest.raises(ValueError, match="index key"):
            await storage.scan_index(["i"], limit=1, after=(bad, "x"))
        with pytest.raises(ValueError, match="instance id"):
            await storage.scan_index(["i"], limit=1, after=("", ""))
        with pytest.raises(ValueError, match="after"):
            await storage.scan_index(["i"], limit=1, after=("k",))  # type: ignore[arg-type]
        with pytest.raises(ValueError, match="index key"):
            await storage.scan_index(["i"], limit=1, until="x" * 129)
        with pytest.raises(ValueError, match="at most 256"):
            await storage.scan_index([f"i{n}" for n in range(257)], limit=1)
        with pytest.raises(ValueError, match="index name"):
            await storage.count_index([bad])

    # -- counts --------------------------------------------------------------------------

    async def test_counts_follow_concurrent_commits(self, storage: Storage) -> None:
        async def move(n: int) -> None:
            await set_index(storage, f"i{n}", {"pending": ""})
            await set_index(storage, f"i{n}", {"leased": ""})
            await set_index(storage, f"i{n}", {"done": ""} if n % 4 else {})

        await asyncio.gather(*(move(n) for n in range(24)))
        counts = await storage.count_index(["pending", "leased", "done"])
        assert counts == {"pending": 0, "leased": 0, "done": 18}

    async def test_model_agreement(self, storage: Storage) -> None:
        """Random replaces and purges: scans and counts agree with a dict model."""
        from hypothesis import HealthCheck, given, settings
        from hypothesis import strategies as st

        loop = asyncio.get_running_loop()
        rounds = itertools.count()
        names = st.sampled_from(["s:a", "s:b", "l:\U0001f600", "l:%"])
        keys = st.sampled_from(["", "1", "10", "2", "\u00e9"])
        entry_sets = st.dictionaries(names, keys, max_size=3)
        ops = st.lists(
            st.tuples(st.integers(0, 5), st.one_of(entry_sets, st.just(None))), max_size=12
        )

        async def check(steps: list[tuple[int, dict[str, str] | None]]) -> None:
            prefix = f"m{next(rounds)}:"
            model: dict[str, dict[str, str]] = {}
            try:
                for n, entries in steps:
                    instance_id = f"{prefix}{n}"
                    if entries is None:
                        await set_index(storage, instance_id, KEEP, purge=True)
                        model.pop(instance_id, None)
                    else:
                        await set_index(storage, instance_id, entries)
                        model[instance_id] = entries
                mine = [f"{prefix}{n}" for n in range(6)]
                assert await storage.load_index(mine) == {i: model.get(i, {}) for i in mine}
                for name in ("s:a", "s:b", "l:\U0001f600", "l:%"):
                    expected = sorted((e[name], i) for i, e in model.items() if name in e)
                    got = await scan_all(storage, [name], page=2)
                    assert [x for x in got if x[1].startswith(prefix)] == expected
                    down = await scan_all(storage, [name], page=3, descending=True)
                    assert [x for x in down if x[1].startswith(prefix)] == expected[::-1]
                # a position in both indexes comes once
                both = sorted(
                    {(e[n], i) for i, e in model.items() for n in ("s:a", "s:b") if n in e}
                )
                got = await scan_all(storage, ["s:a", "s:b"], page=2)
                assert [x for x in got if x[1].startswith(prefix)] == both
            finally:
                for n in range(6):
                    await set_index(storage, f"{prefix}{n}", {})
            counts = await storage.count_index(["s:a", "s:b", "l:\U0001f600", "l:%"])
            assert set(counts.values()) == {0}

        @settings(
            max_examples=30,
            deadline=None,
            database=None,
            suppress_health_check=[HealthCheck.too_slow],
        )
        @given(steps=ops)
        def prop(steps: list[tuple[int, dict[str, str] | None]]) -> None:
            asyncio.run_coroutine_threadsafe(check(steps), loop).result(timeout=60)

        await asyncio.to_thread(prop)

    # -- sharing and reopening -----------------------------------------------------------

    async def test_entries_survive_reopening(self, storage: Storage) -> None:
        await set_index(storage, "kept", {"i": "k"})
        await storage.close()
        await storage.open()
        assert hits(await storage.scan_index(["i"], limit=5)) == [("i", "k", "kept")]
        assert await storage.count_index(["i"]) == {"i": 1}

    async def test_another_object_on_the_store_sees_the_same_entries(
        self, storage: Storage
    ) -> None:
        other = self.peer(storage)
        if other is None:
            pytest.skip("the backend cannot open its store from two objects")
        await other.open()
        try:
            await asyncio.gather(
                *(set_index(s, f"{n}", {"i": ""}) for n, s in enumerate([storage, other] * 6))
            )
            await set_index(other, "0", {})
            assert await storage.count_index(["i"]) == {"i": 11}
            assert await other.count_index(["i"]) == {"i": 11}
            mine = await storage.scan_index(["i"], limit=20)
            assert hits(mine) == hits(await other.scan_index(["i"], limit=20))
            assert [h.instance_id for h in mine] == sorted(str(n) for n in range(1, 12))
        finally:
            await other.close()
