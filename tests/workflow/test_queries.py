"""list_runs and count_runs on index entries: filters, keyset cursors, counts, what they read.

Every test runs on memory, SQLite and PostgreSQL, with time moved only by the test. Runs are
made in three shapes by their input's ``qty``: 0 fails, 1 completes, 2 sleeps for an hour.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import timedelta
from pathlib import Path
from typing import Any

import pytest

from durable_effect import ConflictError, Effect, Gen, RunPage, TriggerRequest, ValidationError
from durable_effect.storage import IndexHit, InstanceSnapshot, Storage, open_storage
from durable_effect.testing import TestRuntime
from durable_effect.workflow import Step, Workflow, WorkflowDefinition
from durable_effect.workflow._index import RUN_STATUSES
from tests.workflow._support import (
    STORAGES,
    Boom,
    CrashableStorage,
    Order,
    runtime,
    storage_url,
)

pytestmark = pytest.mark.parametrize("kind", STORAGES)


@Effect.gen
def shaped(step: Step, order: Order) -> Gen[str, Boom]:
    if order.qty == 0:
        yield from step.run("fail", Effect.fail(Boom(code=1)))
    if order.qty == 2:
        yield from step.sleep("nap", "1 hour")
    return order.order_id


WF: WorkflowDefinition[Order, str] = Workflow.make(Order, shaped)
KEPT: WorkflowDefinition[Order, str] = Workflow.make(Order, shaped, retain="1 hour")


async def trigger_all(
    rt: TestRuntime, wf: WorkflowDefinition[Order, str], shapes: Sequence[int], **labels: str
) -> list[str]:
    """Trigger one run per shape, one clock tick apart; run them (no clock move)."""
    h = rt.client.workflow(wf)
    ids = []
    for n, qty in enumerate(shapes):
        got = await h.trigger(Order(order_id=f"o{n}", qty=qty), labels=labels or None)
        ids.append(got.run_id)
        await rt.advance("1 ms")
    await rt.run_until_idle()
    return ids


async def every_page(
    rt: TestRuntime, wf: WorkflowDefinition[Order, str], limit: int, **filters: Any
) -> list[list[str]]:
    """The ids of every page of a listing, following ``next_cursor``."""
    h = rt.client.workflow(wf)
    pages: list[list[str]] = []
    after = None
    while True:
        page = await h.list_runs(limit=limit, after=after, **filters)
        pages.append([r.id for r in page])
        if page.next_cursor is None:
            return pages
        after = page.next_cursor


# -- listing ----------------------------------------------------------------------------------


async def test_cursor_pages_cover_every_run_once_newest_first(kind: str, tmp_path: Path) -> None:
    async with runtime(kind, tmp_path, wf=WF) as rt:
        ids = await trigger_all(rt, WF, [1, 2, 0] * 7)
        newest = ids[::-1]
        pages = await every_page(rt, WF, 5)
        assert [len(p) for p in pages] == [5, 5, 5, 5, 1]
        assert [i for p in pages for i in p] == newest
        # a last page that is exactly full has no next cursor
        pages = await every_page(rt, WF, 7)
        assert [len(p) for p in pages] == [7, 7, 7]
        page = await rt.client.workflow(WF).list_runs(limit=21)
        assert isinstance(page, RunPage)
        assert page.next_cursor is None
        assert [r.id for r in page] == newest


async def test_status_filters_are_or_ed_and_page_alike(kind: str, tmp_path: Path) -> None:
    async with runtime(kind, tmp_path, wf=WF) as rt:
        shapes = [1, 2, 0, 1, 2, 0, 1, 2, 0, 1]
        ids = await trigger_all(rt, WF, shapes)

        def newest(*wanted: int) -> list[str]:
            return [i for i, q in zip(ids, shapes, strict=True) if q in wanted][::-1]

        h = rt.client.workflow(WF)
        done = await h.list_runs(status="completed")
        assert [r.id for r in done] == newest(1)
        assert {r.status for r in done} == {"completed"}
        pages = await every_page(rt, WF, 2, status=["failed", "sleeping"])
        assert [i for p in pages for i in p] == newest(0, 2)
        nothing = await h.list_runs(status=["pending", "cancelled"])
        assert nothing == []
        assert nothing.next_cursor is None


async def test_label_filters_one_pair_and_several(kind: str, tmp_path: Path) -> None:
    async with runtime(kind, tmp_path, wf=WF) as rt:
        h = rt.client.workflow(WF)
        made: list[tuple[str, dict[str, str]]] = []
        for n in range(12):
            labels = {"org": "a" if n % 2 else "b", "tier": "gold" if n % 3 == 0 else "free"}
            if n == 5:
                labels["rare"] = "\U0001f600 %_'"
            got = await h.trigger(Order(order_id=f"o{n}", qty=1 if n % 4 else 2), labels=labels)
            made.append((got.run_id, labels))
            await rt.advance("1 ms")
        await rt.run_until_idle()

        def expect(**wanted: str) -> list[str]:
            return [i for i, ls in made[::-1] if all(ls.get(k) == v for k, v in wanted.items())]

        assert [r.id for r in await h.list_runs(labels={"org": "a"})] == expect(org="a")
        pages = await every_page(rt, WF, 2, labels={"org": "b", "tier": "free"})
        assert [i for p in pages for i in p] == expect(org="b", tier="free")
        rare = await h.list_runs(labels={"rare": "\U0001f600 %_'", "org": "a"})
        assert [r.id for r in rare] == expect(org="a", rare="\U0001f600 %_'")
        sleeping_gold = await h.list_runs(status="sleeping", labels={"tier": "gold"})
        assert [r.id for r in sleeping_gold] == [
            i for i, ls in made[::-1] if ls["tier"] == "gold" and made.index((i, ls)) % 4 == 0
        ]
        assert await h.list_runs(labels={"org": "nobody"}) == []


async def test_offset_still_works_but_not_with_a_cursor(kind: str, tmp_path: Path) -> None:
    async with runtime(kind, tmp_path, wf=WF) as rt:
        ids = await trigger_all(rt, WF, [1] * 6)
        h = rt.client.workflow(WF)
        page = await h.list_runs(limit=2, offset=3)
        assert [r.id for r in page] == [ids[2], ids[1]]
        rest = await h.list_runs(limit=5, after=page.next_cursor)
        assert [r.id for r in rest] == [ids[0]]
        with pytest.raises(ValidationError) as caught:
            await h.list_runs(offset=1, after=page.next_cursor)
        assert caught.value.path == "after"
        empty = await h.list_runs(limit=0)
        assert empty == []
        assert empty.next_cursor is not None  # runs follow
        assert [r.id for r in await h.list_runs(limit=1, after=empty.next_cursor)] == [ids[5]]


async def test_bad_arguments_are_validation_errors_naming_the_field(
    kind: str, tmp_path: Path
) -> None:
    other = Workflow.make(Order, shaped)
    async with runtime(kind, tmp_path, wf=WF, other=other) as rt:
        await trigger_all(rt, WF, [1, 1, 1])
        await trigger_all(rt, other, [1, 1])
        h = rt.client.workflow(WF)
        theirs = (await rt.client.workflow(other).list_runs(limit=1)).next_cursor
        cases: list[tuple[dict[str, Any], str]] = [
            ({"status": "running"}, "status"),
            ({"status": ["completed", 3]}, "status"),
            ({"labels": {"a": 1}}, "labels['a']"),
            ({"labels": {"": "x"}}, "labels"),
            ({"labels": {f"k{n}": "v" for n in range(65)}}, "labels"),
            ({"labels": {"k": "v" * 1025}}, "labels['k']"),
            ({"limit": -1}, "limit"),
            ({"limit": 1001}, "limit"),
            ({"limit": True}, "limit"),
            ({"offset": -2}, "offset"),
            ({"after": "garbage"}, "after"),
            ({"after": "r1.!!!"}, "after"),
            ({"after": "r1.WzFd"}, "after"),  # base64 of [1]
            ({"after": 7}, "after"),
            ({"after": theirs}, "after"),
        ]
        for bad, field in cases:
            with pytest.raises(ValidationError) as caught:
                await h.list_runs(**bad)
            assert caught.value.path == field, bad
        with pytest.raises(ValidationError) as caught:
            await h.count_runs(status="sleepy")  # type: ignore[arg-type]
        assert caught.value.path == "status"


async def test_pages_neither_skip_nor_repeat_while_runs_are_written(
    kind: str, tmp_path: Path
) -> None:
    async with runtime(kind, tmp_path, wf=WF) as rt:
        h = rt.client.workflow(WF)
        ids = await trigger_all(rt, WF, [2] * 15)  # all sleeping
        seen: list[str] = []
        after = None
        while True:
            page = await h.list_runs(limit=4, after=after)
            seen.extend(r.id for r in page)
            if page.next_cursor is None:
                break
            after = page.next_cursor
            await h.trigger(Order(order_id="new"))  # newer: ahead of the cursor
            await h.cancel(ids[len(seen) % 15])  # moves between status indexes
            await rt.run_until_idle()
        assert seen == sorted(seen, reverse=True)
        assert len(seen) == len(set(seen))
        assert seen == ids[::-1]


# -- counting ---------------------------------------------------------------------------------


async def test_count_runs_has_every_status_and_follows_filters(kind: str, tmp_path: Path) -> None:
    async with runtime(kind, tmp_path, wf=WF) as rt:
        h = rt.client.workflow(WF)
        assert await h.count_runs() == dict.fromkeys(RUN_STATUSES, 0)
        await trigger_all(rt, WF, [1, 1, 2, 0, 2, 1], team="x")
        await trigger_all(rt, WF, [1, 0], team="y")
        pending = await h.trigger(Order(order_id="p"), labels={"team": "x", "vip": "1"})
        counts = await h.count_runs()
        assert counts == {
            "pending": 1,
            "leased": 0,
            "sleeping": 2,
            "completed": 4,
            "failed": 2,
            "cancelled": 0,
        }
        assert list(counts) == list(RUN_STATUSES)
        some = await h.count_runs(status=["failed", "pending"])
        assert some == {**dict.fromkeys(RUN_STATUSES, 0), "failed": 2, "pending": 1}
        x = await h.count_runs(labels={"team": "x"})
        assert x == {
            **dict.fromkeys(RUN_STATUSES, 0),
            "pending": 1,
            "sleeping": 2,
            "completed": 3,
            "failed": 1,
        }
        vip = await h.count_runs(labels={"team": "x", "vip": "1"})
        assert vip == {**dict.fromkeys(RUN_STATUSES, 0), "pending": 1}
        await h.cancel(pending.run_id)
        await h.cancel((await h.list_runs(status="sleeping", limit=1))[0].id)
        counts = await h.count_runs()
        assert (counts["pending"], counts["sleeping"], counts["cancelled"]) == (0, 1, 2)
        done = (await h.list_runs(status="completed", limit=1))[0].id
        await h.delete_run(done)
        assert (await h.count_runs(status="completed"))["completed"] == 3


async def test_runs_past_retention_are_hidden_before_the_sweep(kind: str, tmp_path: Path) -> None:
    async with runtime(kind, tmp_path, kept=KEPT) as rt:
        h = rt.client.workflow(KEPT)
        ids = await trigger_all(rt, KEPT, [1, 0, 2, 1])
        # Past the retention of the finished runs, without firing anything (no sweep yet).
        rt.clock.set(rt.clock.now() + timedelta(hours=1, seconds=1))
        assert [r.id for r in await h.list_runs()] == [ids[2]]
        assert await h.count_runs() == {**dict.fromkeys(RUN_STATUSES, 0), "sleeping": 1}
        assert await h.count_runs(labels={"x": "y"}) == dict.fromkeys(RUN_STATUSES, 0)
        assert len(await rt.jobs.storage.list_instances("workflow:kept:")) == 4
        await rt.run_until_idle()  # the sweep purges them; the sleeper wakes and completes
        assert len(await rt.jobs.storage.list_instances("workflow:kept:")) == 1
        assert (await h.count_runs())["completed"] == 1


# -- what a query reads -------------------------------------------------------------------------


class ReadCounting(CrashableStorage):
    """Counts the snapshots ``load`` reads and the entries ``scan_index`` returns."""

    def __init__(self, inner: Storage) -> None:
        super().__init__(inner)
        self.loaded = 0
        self.scanned = 0

    async def load(self, instance_ids: Sequence[str]) -> Mapping[str, InstanceSnapshot]:
        self.loaded += len(instance_ids)
        return await super().load(instance_ids)

    async def scan_index(
        self,
        indexes: Sequence[str],
        *,
        limit: int,
        after: tuple[str, str] | None = None,
        until: str | None = None,
        descending: bool = False,
    ) -> Sequence[IndexHit]:
        found = await super().scan_index(
            indexes, limit=limit, after=after, until=until, descending=descending
        )
        self.scanned += len(found)
        return found


async def test_a_page_reads_the_page_not_every_run(kind: str, tmp_path: Path) -> None:
    target = storage_url(kind, tmp_path)
    storage = ReadCounting(open_storage(target) if isinstance(target, str) else target)
    async with TestRuntime({"wf": WF}, storage=storage) as rt:
        h = rt.client.workflow(WF)
        await h.batch_trigger([Order(order_id=f"o{n}", qty=1) for n in range(300)])
        await h.batch_trigger([Order(order_id=f"s{n}", qty=2) for n in range(3)])
        await rt.run_until_idle()
        await h.list_runs(limit=1)  # the index is known complete from now on
        for query, most in (
            (h.list_runs(limit=10), 16),
            (h.list_runs(limit=10, status="sleeping"), 3),
            (h.list_runs(status=["pending", "failed"]), 0),
            (h.list_runs(limit=5, labels={"nobody": "x"}), 0),
        ):
            storage.loaded = storage.scanned = 0
            await query
            assert storage.loaded <= most
            assert storage.scanned <= most
        storage.loaded = storage.scanned = 0
        assert (await h.count_runs())["completed"] == 300
        assert storage.loaded == storage.scanned == 0
        deep = await h.list_runs(limit=3, offset=0, after=None)
        for _ in range(20):
            deep = await h.list_runs(limit=10, after=deep.next_cursor)
        storage.loaded = storage.scanned = 0
        page = await h.list_runs(limit=10, after=deep.next_cursor)
        assert len(page) == 10
        assert storage.loaded <= 16
        assert storage.scanned <= 16


async def test_entries_commit_with_the_run_and_a_refused_trigger_writes_none(
    kind: str, tmp_path: Path
) -> None:
    async with runtime(kind, tmp_path, wf=WF) as rt:
        h = rt.client.workflow(WF)
        first = await h.trigger(Order(order_id="a"), concurrency_key="k", labels={"l": "1"})
        conflicting = TriggerRequest(
            input=Order(order_id="c"), concurrency_key="k", labels={"l": "1"}
        )
        with pytest.raises(ConflictError):
            await h.batch_trigger([Order(order_id="b"), conflicting])
        assert await h.count_runs() == {**dict.fromkeys(RUN_STATUSES, 0), "pending": 1}
        assert [r.id for r in await h.list_runs(labels={"l": "1"})] == [first.run_id]
        await rt.run_until_idle()
        storage = rt.jobs.storage
        found = await storage.scan_index(["wf:wf:s:completed"], limit=5)
        assert [hit.instance_id for hit in found] == [f"workflow:wf:{first.run_id}"]
        assert await storage.count_index(["wf:wf:s:pending", "wf:wf:s:completed"]) == {
            "wf:wf:s:pending": 0,
            "wf:wf:s:completed": 1,
        }
