"""``list_runs`` and ``count_runs`` of a workflow, on its runs' index entries.

What each reads (see ``workflow._index`` for the indexes):

* no label filter — the status indexes of the statuses asked for (all six without a
  filter), merged newest first: a page costs the page;
* one label pair — that pair's indexes, one per status: the same;
* several pairs — the indexes of the *rarest* pair (fewest runs, from the counts), each run
  then checked for the other pairs: the cost is bounded by the runs carrying that pair.

``count_runs`` reads the index counts (one storage call) — with several pairs it counts
the rarest pair's runs that carry the others. Runs past their retention that the sweep has
not purged yet are hidden from both (found through the purge-time index: as many as are
waiting to be purged, normally none).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Final, Protocol, cast

from durable_effect._clock import Clock
from durable_effect.errors import ValidationError
from durable_effect.jobs._index_keys import instant_key
from durable_effect.jobs._pager import IndexReader, bad, check_limit, decode_cursor, fill_page
from durable_effect.storage._port import IndexHit, InstanceSnapshot
from durable_effect.workflow._definition import WorkflowDefinition
from durable_effect.workflow._index import (
    RUN_STATUSES,
    expiry_indexes,
    label_indexes,
    status_indexes,
)
from durable_effect.workflow._pages import RunPage
from durable_effect.workflow._records import JOB_TYPE, META
from durable_effect.workflow._records import check_labels as check_run_labels
from durable_effect.workflow._results import FINISHED, Run, RunStatus

__all__ = ["ListingRuntime", "check_labels", "check_statuses", "count_runs", "list_runs"]


class ListingRuntime(IndexReader, Protocol):
    """What listing and counting need of the runtime (the engine gives exactly this)."""

    @property
    def clock(self) -> Clock:
        """The runtime clock (a run past its retention is hidden)."""
        ...

    async def count_index(self, indexes: Sequence[str]) -> Mapping[str, int]:
        """``Storage.count_index``."""
        ...

    async def ensure_indexes(self, names: Sequence[str]) -> None:
        """Make sure the index entries of the jobs ``names`` are complete."""
        ...


_CURSOR_KIND: Final = "r"
_COUNT_PAGE: Final = 500


def check_statuses(status: object) -> tuple[str, ...]:
    """The statuses asked for (one or several; all when ``None``), in `RUN_STATUSES` order."""
    if status is None:
        return RUN_STATUSES
    given = [status] if isinstance(status, str) else status
    if not isinstance(given, Sequence | frozenset | set) or not all(
        isinstance(s, str) for s in given
    ):
        raise bad("status", f"must be a run status or a sequence of them, got {status!r}")
    wanted = {str(s) for s in given}
    unknown = wanted.difference(RUN_STATUSES)
    if unknown:
        raise bad("status", f"unknown run status {sorted(unknown)}; one of {list(RUN_STATUSES)}")
    return tuple(s for s in RUN_STATUSES if s in wanted)


def check_labels(labels: object) -> dict[str, str]:
    """A label filter (``None``: none), checked as run labels are (SPEC 10.1)."""
    if labels is None:
        return {}
    return check_run_labels(labels)


async def _indexes(
    runtime: ListingRuntime, name: str, statuses: Sequence[str], labels: Mapping[str, str]
) -> list[str]:
    """The indexes to read: by status, or by the (rarest) label pair's statuses."""
    if not labels:
        return status_indexes(name, statuses)
    pairs = [label_indexes(name, k, v, RUN_STATUSES) for k, v in labels.items()]
    if len(pairs) > 1:
        counts = await runtime.count_index([i for pair in pairs for i in pair])
        pairs.sort(key=lambda pair: sum(counts.get(i, 0) for i in pair))
    wanted = {s: n for n, s in enumerate(RUN_STATUSES)}
    return [pairs[0][wanted[s]] for s in statuses]


def _reader(
    definition: WorkflowDefinition[Any, Any, Any, Any],
    name: str,
    statuses: Sequence[str],
    labels: Mapping[str, str],
    runtime: ListingRuntime,
) -> Callable[[IndexHit, InstanceSnapshot], Run[Any, Any] | None]:
    prefix = f"{JOB_TYPE}:{name}:"
    now = runtime.clock.now()
    allowed = frozenset(statuses)

    def read(hit: IndexHit, snapshot: InstanceSnapshot) -> Run[Any, Any] | None:
        run = definition.read_run(snapshot.records, hit.instance_id[len(prefix) :], name, now)
        if run is None or run.status not in allowed:
            return None  # gone, past its retention, or moved on since the scan
        if any(run.labels.get(k) != v for k, v in labels.items()):
            return None
        return run

    return read


async def list_runs(
    definition: WorkflowDefinition[Any, Any, Any, Any],
    runtime: ListingRuntime,
    name: str,
    *,
    status: object,
    labels: object,
    limit: object,
    offset: object,
    after: object,
) -> RunPage[Any, Any]:
    """See ``WorkflowHandle.list_runs``; raises ``ValidationError`` naming a bad argument,
    ``StorageError`` when storage fails."""
    statuses = check_statuses(status)
    required = check_labels(labels)
    count = check_limit(limit)
    skip = check_limit(offset, "offset", most=None)
    prefix = f"{JOB_TYPE}:{name}:"
    if after is not None and skip:
        raise bad("after", "give offset or after, not both (after pages by cursor)")
    position = None if after is None else decode_cursor(_CURSOR_KIND, after, prefix)
    await runtime.ensure_indexes([name])
    indexes = await _indexes(runtime, name, statuses, required)
    page = await fill_page(
        runtime,
        indexes,
        limit=count,
        skip=skip,
        after=position,
        read=_reader(definition, name, statuses, required, runtime),
    )
    return RunPage(page, next_cursor=page.next_cursor(_CURSOR_KIND))


async def count_runs(
    definition: WorkflowDefinition[Any, Any, Any, Any],
    runtime: ListingRuntime,
    name: str,
    *,
    status: object,
    labels: object,
) -> dict[RunStatus, int]:
    """See ``WorkflowHandle.count_runs``; raises ``ValidationError`` naming a bad argument,
    ``StorageError`` when storage fails."""
    statuses = check_statuses(status)
    required = check_labels(labels)
    await runtime.ensure_indexes([name])
    counts = dict.fromkeys(RUN_STATUSES, 0)
    if len(required) > 1:
        read = _reader(definition, name, statuses, required, runtime)
        indexes = await _indexes(runtime, name, statuses, required)
        position: tuple[str, str] | None = None
        while True:
            page = await fill_page(runtime, indexes, limit=_COUNT_PAGE, after=position, read=read)
            for run in page:
                counts[run.status] += 1
            if not page.more:
                return cast("dict[RunStatus, int]", counts)
            position = page.resume
    indexes = await _indexes(runtime, name, statuses, required)
    found = await runtime.count_index(indexes)
    for status_name, index in zip(statuses, indexes, strict=True):
        counts[status_name] = found.get(index, 0)
    if definition.retain is not None:
        for status_name, gone in (await _expired(runtime, name, required)).items():
            if status_name in counts:
                counts[status_name] = max(0, counts[status_name] - gone)
    return cast("dict[RunStatus, int]", counts)


async def _expired(runtime: ListingRuntime, name: str, labels: Mapping[str, str]) -> dict[str, int]:
    """Runs past their retention that the sweep has not purged yet, by status (carrying
    ``labels``): the purge-time index up to now."""
    now = runtime.clock.now()
    until = instant_key(now)
    gone = dict.fromkeys(sorted(FINISHED), 0)
    position: tuple[str, str] | None = None
    while True:
        hits = await runtime.scan_index(
            expiry_indexes(name), limit=_COUNT_PAGE, after=position, until=until
        )
        snapshots = await runtime.load([h.instance_id for h in hits]) if labels and hits else {}
        for hit in hits:
            status_name = hit.index.rsplit(":", 1)[1]
            if labels:
                try:
                    meta = META.load(snapshots[hit.instance_id].records)
                except ValidationError:
                    continue  # unreadable: not counted either
                if meta is None or any(meta.labels.get(k) != v for k, v in labels.items()):
                    continue
            gone[status_name] += 1
        if len(hits) < _COUNT_PAGE:
            return gone
        position = (hits[-1].key, hits[-1].instance_id)
