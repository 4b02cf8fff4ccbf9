"""The worker process of the SIGKILL crash test (``python -m tests.workflow._crash_worker``).

It runs workflows of ``STEPS`` steps on a SQLite file with a short lease. Each step's effect
appends ``run_id:step:token`` to a side file (fsynced) before returning ``Link(token, prev)``:
``token`` is fresh for every execution of the effect, ``prev`` the token of the step before
as this execution saw it. The test reads both back to check at-least-once side effects and
exactly-once committed steps.
"""

from __future__ import annotations

import asyncio
import os
import sys
import uuid
from datetime import timedelta

import msgspec

from durable_effect import Effect, Gen
from durable_effect._jobs import create_durable_jobs
from durable_effect.workflow import Step, Workflow, WorkflowDefinition

STEPS = 4
LEASE_TTL = timedelta(milliseconds=500)


class Job(msgspec.Struct):
    """The input of a crash-test run."""

    n: int


class Link(msgspec.Struct):
    """A step's output: its execution's token and the previous step's token it saw."""

    token: str
    prev: str


def _record(side: str, run_id: str, name: str, prev: str) -> Link:
    token = uuid.uuid4().hex
    line = f"{run_id}:{name}:{token}\n".encode()
    fd = os.open(side, os.O_WRONLY | os.O_APPEND | os.O_CREAT, 0o644)
    try:
        os.write(fd, line)
        os.fsync(fd)
    finally:
        os.close(fd)
    return Link(token=token, prev=prev)


def _step_effect(side: str, run_id: str, name: str, prev: str) -> Effect[Link]:
    pause = Effect.promise(lambda: asyncio.sleep(0.002))
    return pause.flat_map(lambda _: Effect.sync(lambda: _record(side, run_id, name, prev)))


@Effect.gen
def linked_steps(step: Step, side: str, prefix: str, count: int) -> Gen[list[str], Exception]:
    """``count`` steps named ``<prefix>0``…, each linked to the previous one's token; the
    tokens in order."""
    prev = ""
    tokens: list[str] = []
    for i in range(count):
        name = f"{prefix}{i}"
        link = yield from step.run(name, _step_effect(side, step.run_id, name, prev), schema=Link)
        prev = link.token
        tokens.append(link.token)
    return tokens


def crash_workflow(side: str) -> WorkflowDefinition[Job, list[str]]:
    """The workflow: ``STEPS`` steps, each a tiny real pause and a side effect."""

    def run(step: Step, job: Job) -> Effect[list[str], Exception]:
        return linked_steps(step, side, "s", STEPS)

    return Workflow.make(Job, run)


async def main(db: str, side: str) -> None:
    jobs = create_durable_jobs(
        {"crash": crash_workflow(side)}, storage=f"sqlite:///{db}", lease_ttl=LEASE_TTL
    )
    async with jobs:
        worker = jobs.worker(concurrency=8, poll_interval=0.05)
        print("ready", flush=True)
        await worker.run()


if __name__ == "__main__":
    # Link is given as the step's schema= (a class of this module, which runs as __main__
    # here): the replaying worker decodes with it and never needs a stored type name.
    asyncio.run(main(sys.argv[1], sys.argv[2]))
