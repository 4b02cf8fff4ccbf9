"""The list queries the web API pages through: runs of a workflow, their counts, job instances.

One place that knows how the client lists things, so the routes stay the same whichever way
it does: cursors are opaque to HTTP clients (``next_cursor`` is ``None`` exactly at the end).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from datetime import datetime
from typing import Any, Final

from durable_effect._jobs import DurableJobs
from durable_effect.web._http import ApiError, call

__all__ = ["RUN_STATUSES", "instance_page", "run_counts", "run_page"]

RUN_STATUSES: Final = ("pending", "leased", "sleeping", "completed", "failed", "cancelled")
_CURSOR_PREFIX: Final = "o"
#: Runs read per count page.
_COUNT_PAGE: Final = 500


def _offset(after: str | None) -> int:
    if after is None:
        return 0
    digits = after[len(_CURSOR_PREFIX) :]
    if not after.startswith(_CURSOR_PREFIX) or not digits.isdigit():
        raise ApiError.invalid("after", "after is not a cursor this API gave")
    return int(digits)


async def run_page(
    handle: Any,
    *,
    statuses: Sequence[str],
    labels: Mapping[str, str],
    limit: int,
    after: str | None,
) -> tuple[list[Any], str | None]:
    """One page of runs, newest first, and the cursor of the next (``None`` at the end)."""
    offset = _offset(after)
    runs = await call(
        handle.list_runs(
            status=list(statuses) or None,
            labels=dict(labels) or None,
            limit=limit + 1,
            offset=offset,
        )
    )
    page = list(runs[:limit])
    more = len(runs) > limit
    return page, f"{_CURSOR_PREFIX}{offset + limit}" if more else None


async def run_counts(handle: Any) -> dict[str, int]:
    """How many runs the workflow has in each status (every status a key)."""
    counts = dict.fromkeys(RUN_STATUSES, 0)
    offset = 0
    while True:
        runs = await call(handle.list_runs(limit=_COUNT_PAGE, offset=offset))
        for run in runs:
            counts[run.status] = counts.get(run.status, 0) + 1
        if len(runs) < _COUNT_PAGE:
            return counts
        offset += _COUNT_PAGE


async def instance_page(
    jobs: DurableJobs,
    name: str,
    job_type: str,
    *,
    status: str | None,
    limit: int,
    after: str | None,
) -> tuple[list[dict[str, object]], str | None]:
    """One page of a job's instances (id order) with their status, and the next cursor."""
    client: Any = jobs.client
    handle = getattr(client, job_type)(name)
    prefix = f"{job_type}:{name}:"
    await jobs.open()
    cursor = None if after is None else f"{prefix}{after}"
    out: list[dict[str, object]] = []
    while len(out) <= limit:
        ids = list(await jobs.engine.list_instances(prefix, after=cursor, limit=limit + 1))
        if not ids:
            break
        snapshots = await jobs.engine.load(ids)
        for instance_id in ids:
            cursor = instance_id
            result = await call(handle.status(instance_id[len(prefix) :]))
            if result.status == "not_found" or (status is not None and result.status != status):
                continue
            out.append(
                {
                    "instance_id": instance_id,
                    "id": instance_id[len(prefix) :],
                    "job_type": job_type,
                    "job_name": name,
                    "status": result.status,
                    "next_alarm_at": snapshots[instance_id].alarm_at,
                    "created_at": _created_at(result),
                }
            )
            if len(out) > limit:
                break
        if len(ids) <= limit:
            break
    more = len(out) > limit
    page = out[:limit]
    return page, str(page[-1]["id"]) if more and page else None


def _created_at(result: object) -> datetime | None:
    value = getattr(result, "created_at", None) or getattr(result, "started_at", None)
    return value if isinstance(value, datetime) else None
