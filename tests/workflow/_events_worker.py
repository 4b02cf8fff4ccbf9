"""The worker process of the events crash and multi-process tests.

``python -m tests.workflow._events_worker STORAGE SCHEMA POLL_S SIDE_FILE`` — ``STORAGE`` a
SQLite or PostgreSQL URL, ``SCHEMA`` the PostgreSQL schema (``-`` for SQLite). It runs the
``inbox`` workflow with a short lease and prints ``ready`` once its storage is open.

A run of ``inbox`` waits ``Job.waits`` times for a ``Ping``; after each wait a step appends
``run_id:w<i>:<k>`` (the ping it got) to the side file, fsynced, and returns it. The test
reads both back: every event a run took is taken once, in the order sent.
"""

from __future__ import annotations

import asyncio
import os
import sys
from datetime import timedelta

import msgspec

from durable_effect import Effect, Gen, create_durable_jobs
from durable_effect.storage import Storage
from durable_effect.storage._postgres import PostgresStorage
from durable_effect.workflow import Step, Workflow, WorkflowDefinition

LEASE_TTL = timedelta(milliseconds=500)


class Job(msgspec.Struct):
    """A run's input: how many events it waits for."""

    waits: int


class Ping(msgspec.Struct):
    """An event: its number in the run's sequence of sends."""

    k: int


def _record(side: str, run_id: str, name: str, k: int) -> int:
    line = f"{run_id}:{name}:{k}\n".encode()
    fd = os.open(side, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return k


def _step_effect(side: str, run_id: str, name: str, k: int) -> Effect[int]:
    pause = Effect.promise(lambda: asyncio.sleep(0.001))
    return pause.flat_map(lambda _: Effect.sync(lambda: _record(side, run_id, name, k)))


def inbox_workflow(side: str) -> WorkflowDefinition[Job, list[int]]:
    """The workflow (see the module docstring)."""

    @Effect.gen
    def run(step: Step, job: Job) -> Gen[list[int], Exception]:
        got: list[int] = []
        for i in range(job.waits):
            ping = yield from step.wait_for_event(f"w{i}", Ping)
            effect = _step_effect(side, step.run_id, f"w{i}", ping.k)
            got.append((yield from step.run(f"s{i}", effect)))
        return got

    return Workflow.make(Job, run, event_schema=Ping)


def storage_of(url: str, schema: str) -> str | Storage:
    """The storage the worker and the test share."""
    if schema == "-":
        return url
    return PostgresStorage(url, max_size=8, schema=schema, notify_channel=schema)


async def main(url: str, schema: str, poll: float, side: str) -> None:
    jobs = create_durable_jobs(
        {"inbox": inbox_workflow(side)}, storage=storage_of(url, schema), lease_ttl=LEASE_TTL
    )
    async with jobs:
        worker = jobs.worker(concurrency=16, poll_interval=poll)
        print("ready", flush=True)
        await worker.run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], sys.argv[2], float(sys.argv[3]), sys.argv[4]))
