"""Making sure every registered job's index entries exist: the back-fill of older stores.

Index entries are committed with the records they describe (``InstanceTx.to_write``), so a
store written by this release always has them. A store written before indexes existed (or
before a job's entries changed shape: a workflow's ``retain`` is part of them) has
instances without them. A job's entries are complete at its current version
(`JobDefinition.index_version`) when its bookkeeping instance (``jobmeta:{name}:{job_type}``,
`job_meta_ref`) has the one entry of the index ``jobmeta:{name}:{job_type}:v{version}`` — an
index entry, not a record, so the bookkeeping instance does not "exist" for
``list_instances`` unless it has an alarm.

`IndexBuild.ensure` is called before a query reads an index (and by workers when they
start): it counts those marker entries — one storage call, nothing at all once this
process has seen them complete — and builds what is missing. Building reads the job's
instances page by page (their snapshots and their stored entries, without leases), and
only where the stored entries differ from what the records give — every instance of a
store from before indexes, none of a store this release wrote — leases those instances
(waiting, bounded, for those a handler holds) and writes their entries; then the marker.
Several processes may build at once: the work is idempotent. ``ensure`` also gives the
bookkeeping instance the alarm its job wants (`JobDefinition.meta_alarm`: a workflow's
retention sweep).
"""

from __future__ import annotations

import asyncio
import logging
from collections.abc import Mapping, Sequence
from typing import TYPE_CHECKING, Final

from durable_effect.jobs._base import JobDefinition
from durable_effect.jobs._index_keys import JOB_META_TYPE, job_meta_ref
from durable_effect.jobs._instance import Indexer, InstanceRef
from durable_effect.storage._port import Acquired, InstanceSnapshot, InstanceWrite

if TYPE_CHECKING:
    from durable_effect._runtime._engine import Engine

__all__ = ["IndexBuild"]

_LOG = logging.getLogger("durable_effect")
#: Instances read and written per transaction while building.
_PAGE: Final = 256


class IndexBuild:
    """Which jobs' entries are known complete in this process, and the building of others."""

    def __init__(self, engine: Engine) -> None:
        self._engine = engine
        self._done: set[str] = set()
        self._lock: asyncio.Lock | None = None

    async def ensure(self, names: Sequence[str]) -> None:
        """Make sure the entries of the jobs ``names`` are complete (building them if not).

        ``StorageError`` if storage fails, or if another process keeps building longer
        than the engine waits for a lease.
        """
        missing = [n for n in names if n not in self._done]
        if not missing:
            return
        jobs = self._jobs(missing)
        for name in await self._complete(jobs):
            self._done.add(name)
        todo = [name for name in jobs if name not in self._done]
        if not todo:
            return
        if self._lock is None:
            self._lock = asyncio.Lock()
        async with self._lock:
            for name in todo:
                if name not in self._done:
                    await self._build(name, jobs[name])
                    self._done.add(name)

    async def ensure_all(self) -> None:
        """`ensure` for every registered job."""
        await self.ensure([name for name, _ in self._engine.registry])

    def _jobs(self, names: Sequence[str]) -> dict[str, JobDefinition]:
        registry = self._engine.registry
        return {n: d for n in names if (d := registry.named(n)) is not None}

    async def _complete(self, jobs: Mapping[str, JobDefinition]) -> list[str]:
        """The jobs among ``jobs`` whose entries are complete, with the alarm they want."""
        storage = self._engine.storage
        markers = {name: _marker(name, d) for name, d in jobs.items()}
        counts = await storage.count_index(list(markers.values()))
        built = [name for name in jobs if counts.get(markers[name], 0) == 1]
        now = self._engine.clock.now()
        alarmed = [name for name in built if jobs[name].meta_alarm(now) is not None]
        if alarmed:
            refs = {name: job_meta_ref(name, jobs[name].job_type).instance_id for name in alarmed}
            snapshots = await storage.load(list(refs.values()))
            armed = {name for name, iid in refs.items() if snapshots[iid].alarm_at is not None}
            built = [name for name in built if name not in alarmed or name in armed]
        return built

    async def _build(self, name: str, definition: JobDefinition) -> None:
        engine = self._engine
        indexer = engine.registry.indexer_for(
            InstanceRef(job_type=definition.job_type, job_name=name, id="-")
        )
        if indexer is not None:
            await self._fill(f"{definition.job_type}:{name}:", indexer)
        ref = job_meta_ref(name, definition.job_type)
        acquired = await engine.acquire([ref.instance_id])
        snapshot = acquired.snapshots[ref.instance_id]
        wanted = definition.meta_alarm(engine.clock.now())
        alarm = snapshot.alarm_at if wanted is not None and snapshot.alarm_at else wanted
        write = InstanceWrite(
            instance_id=ref.instance_id, alarm=alarm, index={_marker(name, definition): ""}
        )
        try:
            await engine.storage.commit(acquired.leases, [write])
        except BaseException:
            await engine.release_quietly(acquired.leases)
            raise

    async def _fill(self, prefix: str, indexer: Indexer) -> None:
        """Make the entries of every instance under ``prefix`` what its records give: read
        without leases, and written (under the instance's lease) only where they differ."""
        storage = self._engine.storage
        after: str | None = None
        rewritten = 0
        while True:
            ids = list(await storage.list_instances(prefix, after=after, limit=_PAGE))
            if ids:
                snapshots = await storage.load(ids)
                stored = await storage.load_index(ids)
                stale = [
                    i
                    for i in ids
                    if dict(_entries(indexer, i, snapshots[i])) != dict(stored.get(i, {}))
                ]
                if stale:
                    await self._reindex(stale, indexer)
                    rewritten += len(stale)
            if len(ids) < _PAGE:
                break
            after = ids[-1]
        if rewritten:
            _LOG.info("wrote the index entries of %d instance(s) under %r", rewritten, prefix)

    async def _reindex(self, ids: Sequence[str], indexer: Indexer) -> None:
        """Write the entries of ``ids`` from their snapshots, read under their leases."""
        engine = self._engine
        acquired = await engine.try_acquire(ids)
        if acquired is not None:
            await self._write(acquired, indexer)
            return
        for instance_id in ids:  # some are held: one at a time, waiting for each
            await self._write(await engine.acquire([instance_id]), indexer)

    async def _write(self, acquired: Acquired, indexer: Indexer) -> None:
        writes = [
            InstanceWrite(instance_id=i, index=dict(_entries(indexer, i, snap)))
            for i, snap in acquired.snapshots.items()
        ]
        await self._engine.storage.commit(acquired.leases, writes)


def _entries(indexer: Indexer, instance_id: str, snapshot: InstanceSnapshot) -> Mapping[str, str]:
    """The entries an instance's committed snapshot gives."""
    return indexer.entries(InstanceRef.parse(instance_id), snapshot.records.get, snapshot.alarm_at)


def _marker(name: str, definition: JobDefinition) -> str:
    """The index whose one entry (the bookkeeping instance's) says the job's entries are
    complete at its current index version."""
    return f"{JOB_META_TYPE}:{name}:{definition.job_type}:v{definition.index_version()}"
