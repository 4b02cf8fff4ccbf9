"""``client.instances(...)``: job instances newest first, on their index entries.

Each registered Continuous, Debounce or Task job lists its instances in one index per
status (``jobs._index_keys``), keyed by creation time: a page is a descending scan of the
indexes of the jobs and statuses asked for, merged, each entry checked against the
instance's snapshot (its status, alarm and creation time come from there). Its cost is the
page, whatever the number of instances.
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from durable_effect._runtime._engine import Engine
from durable_effect.errors import JobNotFoundError
from durable_effect.jobs._base import JobDefinition
from durable_effect.jobs._index_keys import INSTANCE_STATUSES, instance_index, key_instant
from durable_effect.jobs._instance import InstanceRef
from durable_effect.jobs._instances import InstanceInfo, InstancePage
from durable_effect.jobs._pager import bad, check_limit, decode_cursor, fill_page
from durable_effect.storage._port import IndexHit, InstanceSnapshot

__all__ = ["count_instances", "list_instances"]

_CURSOR_KIND: Final = "i"
_ALL_STATUSES: Final = tuple(dict.fromkeys(s for ss in INSTANCE_STATUSES.values() for s in ss))


def _jobs(engine: Engine, job: object) -> list[tuple[str, JobDefinition]]:
    """The (name, definition) of the jobs to list: one, or every job with instances."""
    registry = engine.registry
    if job is None:
        return [(n, d) for n, d in registry if d.job_type in INSTANCE_STATUSES]
    if isinstance(job, JobDefinition):
        names = [n for n, d in registry if d is job]
        if len(names) > 1:
            raise bad("job", f"this definition is registered as {sorted(names)}: pass the name")
        if not names:
            raise JobNotFoundError(
                job_type=job.job_type, job_name=f"<unregistered {job.job_type} definition>"
            )
        name = names[0]
    elif isinstance(job, str):
        name = job
    else:
        raise bad("job", f"must be a job name or a definition, got {type(job).__name__}")
    definition = registry.named(name)
    if definition is None:
        raise JobNotFoundError(job_type="job", job_name=name)
    if definition.job_type not in INSTANCE_STATUSES:
        raise bad("job", f"{name!r} is a {definition.job_type}: list its runs with list_runs")
    return [(name, definition)]


def _statuses(status: object, jobs: Sequence[tuple[str, JobDefinition]]) -> set[str]:
    if status is None:
        return set(_ALL_STATUSES)
    given = [status] if isinstance(status, str) else status
    if not isinstance(given, Sequence | set | frozenset) or not all(
        isinstance(s, str) for s in given
    ):
        raise bad("status", f"must be an instance status or a sequence of them, got {status!r}")
    wanted = {str(s) for s in given}
    known = {s for _, d in jobs for s in INSTANCE_STATUSES[d.job_type]}
    unknown = wanted - known
    if unknown:
        raise bad("status", f"unknown instance status {sorted(unknown)}; one of {sorted(known)}")
    return wanted


async def list_instances(
    engine: Engine,
    *,
    job: object,
    status: object,
    limit: object,
    after: object,
    names: Sequence[str] | None = None,
) -> InstancePage:
    """See ``JobsClient.instances``; ``ValidationError`` naming the bad argument.

    ``names`` (with ``job=None``): only these registered jobs (the CLI's ``--type``).
    """
    jobs = _jobs(engine, job)
    if names is not None:
        jobs = [(n, d) for n, d in jobs if n in names]
    statuses = _statuses(status, jobs)
    count = check_limit(limit)
    prefix = "" if job is None else f"{jobs[0][1].job_type}:{jobs[0][0]}:"
    position = None if after is None else decode_cursor(_CURSOR_KIND, after, prefix)
    indexes = [
        instance_index(name, s)
        for name, d in jobs
        for s in INSTANCE_STATUSES[d.job_type]
        if s in statuses
    ]
    if not indexes:
        return InstancePage()
    await engine.ensure_indexes([name for name, _ in jobs])
    registry = engine.registry

    def read(hit: IndexHit, snapshot: InstanceSnapshot) -> InstanceInfo | None:
        ref = InstanceRef.parse(hit.instance_id)
        indexer = registry.indexer_for(ref)
        if indexer is None:
            return None
        entries = indexer.entries(ref, snapshot.records.get, snapshot.alarm_at)
        for index, key in entries.items():
            status_name = index.rsplit(":", 1)[1]
            if status_name in statuses:
                return InstanceInfo(
                    instance_id=hit.instance_id,
                    id=ref.id,
                    job_type=ref.job_type,
                    job_name=ref.job_name,
                    status=status_name,
                    next_alarm_at=snapshot.alarm_at,
                    created_at=key_instant(key),
                )
        return None  # gone, or moved to a status not asked for since the scan

    page = await fill_page(engine, indexes, limit=count, after=position, read=read)
    return InstancePage(page, next_cursor=page.next_cursor(_CURSOR_KIND))


async def count_instances(engine: Engine, names: Sequence[str]) -> dict[str, int]:
    """How many instances of the registered jobs ``names`` have each status (the kept
    index counts: one storage call)."""
    jobs = [(n, d) for n, d in _jobs(engine, None) if n in names]
    await engine.ensure_indexes([n for n, _ in jobs])
    wanted = [(s, instance_index(n, s)) for n, d in jobs for s in INSTANCE_STATUSES[d.job_type]]
    found = await engine.count_index([i for _, i in wanted]) if wanted else {}
    counts: dict[str, int] = {}
    for status_name, index in wanted:
        counts[status_name] = counts.get(status_name, 0) + found.get(index, 0)
    return counts
