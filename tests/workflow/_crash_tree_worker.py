"""The worker process of the parent-and-children crash test
(``python -m tests.workflow._crash_tree_worker KIND TARGET SCHEMA SIDE``).

It runs ``parent`` runs, each starting three ``child`` runs (one with ``start_workflow``,
two waited for with ``run_workflow``), on a SQLite file (``KIND`` ``sqlite``, ``TARGET`` its
path) or a PostgreSQL schema (``postgres``, ``TARGET`` the URL, ``SCHEMA``), with a short
lease. Every step's effect appends ``run_id:step:token`` to the side file ``SIDE`` (fsynced)
before returning ``Link(token, prev)`` — as in ``_crash_worker``.
"""

from __future__ import annotations

import asyncio
import sys
from datetime import timedelta

from durable_effect import Effect, Gen
from durable_effect._jobs import create_durable_jobs
from durable_effect.storage import Storage
from durable_effect.storage._postgres import PostgresStorage
from durable_effect.workflow import Step, Workflow, WorkflowDefinition
from tests.workflow._crash_worker import Job, Link, _step_effect, linked_steps

LEASE_TTL = timedelta(seconds=1)
CHILD_STEPS = 2


def tree_workflows(
    side: str,
) -> tuple[WorkflowDefinition[Job, list[object]], WorkflowDefinition[int, list[str]]]:
    """``parent`` and ``child``: register them as ``"parent"`` and ``"child"``."""

    def child(step: Step, n: int) -> Effect[list[str], Exception]:
        return linked_steps(step, side, "c", CHILD_STEPS)

    child_wf = Workflow.make(int, child)

    @Effect.gen
    def parent(step: Step, job: Job) -> Gen[list[object], Exception]:
        yield from step.run("p0", _step_effect(side, step.run_id, "p0", ""), schema=Link)
        fired = yield from step.start_workflow("fire", child_wf, job.n * 3)
        a = yield from step.run_workflow("a", child_wf, job.n * 3 + 1)
        b = yield from step.run_workflow("b", "child", job.n * 3 + 2)
        return [fired, a, b]

    return Workflow.make(Job, parent), child_wf


def storage_of(kind: str, target: str, schema: str) -> str | Storage:
    """The storage the test process and its workers share."""
    if kind == "sqlite":
        return f"sqlite:///{target}"
    return PostgresStorage(target, max_size=4, schema=schema, notify_channel=schema)


async def main(kind: str, target: str, schema: str, side: str) -> None:
    parent, child = tree_workflows(side)
    jobs = create_durable_jobs(
        {"parent": parent, "child": child},
        storage=storage_of(kind, target, schema),
        lease_ttl=LEASE_TTL,
    )
    async with jobs:
        worker = jobs.worker(concurrency=8, poll_interval=0.05)
        print("ready", flush=True)
        await worker.run()


if __name__ == "__main__":
    asyncio.run(main(*sys.argv[1:5]))
