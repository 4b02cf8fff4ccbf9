"""The list queries the web API pages through: runs of a workflow, their counts, job instances.

One place that knows how the client lists things, so the routes stay the same whichever way
it does: the client's cursors (``RunPage.next_cursor``, ``InstancePage.next_cursor``) pass
through opaque to HTTP clients (``next_cursor`` is ``None`` exactly at the end), counts come
from ``count_runs`` (kept with the commits, not read run by run).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any, Final

from durable_effect._jobs import DurableJobs
from durable_effect.web._http import call

__all__ = ["RUN_STATUSES", "instance_page", "run_counts", "run_page"]

RUN_STATUSES: Final = ("pending", "leased", "sleeping", "completed", "failed", "cancelled")


async def run_page(
    handle: Any,
    *,
    statuses: Sequence[str],
    labels: Mapping[str, str],
    limit: int,
    after: str | None,
) -> tuple[list[Any], str | None]:
    """One page of runs, newest first, and the cursor of the next (``None`` at the end)."""
    page = await call(
        handle.list_runs(
            status=list(statuses) or None, labels=dict(labels) or None, limit=limit, after=after
        )
    )
    return list(page), page.next_cursor


async def run_counts(handle: Any) -> dict[str, int]:
    """How many runs the workflow has in each status (every status a key)."""
    counts: dict[str, int] = await call(handle.count_runs())
    return counts


async def instance_page(
    jobs: DurableJobs,
    name: str,
    *,
    status: str | None,
    limit: int,
    after: str | None,
) -> tuple[list[Any], str | None]:
    """One page of a job's instances (newest first) and the cursor of the next."""
    page = await call(jobs.client.instances(name, status=status, limit=limit, after=after))
    return list(page), page.next_cursor
