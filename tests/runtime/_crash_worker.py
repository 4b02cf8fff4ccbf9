"""The worker process of ``test_crash``: a counter job on a SQLite file, killed at random.

Run as ``python -m tests.runtime._crash_worker DB_PATH TARGET LEASE_MS``. It opens the
store, prints ``ready``, then runs a ``Worker`` forever. After every commit that returned it
writes ``commit <instance_id> <value> <token>`` to stdout with one unbuffered ``write``, so
the parent knows which writes were acknowledged before it killed the process.

Each alarm of an instance makes one step, in one commit: counter record ``n`` goes from
``v`` to ``v + 1`` and an intent record ``log:<token>`` (a fresh token per execution) holds
``[instance_id, v + 1]``; the alarm is re-armed at once until ``n`` reaches ``TARGET``.
A step applied twice would leave two intent records with the same value.
"""

from __future__ import annotations

import asyncio
import json
import os
import sys
import uuid
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import ClassVar, Never

from durable_effect import Effect
from durable_effect._jobs import create_durable_jobs
from durable_effect.jobs._base import JobDefinition
from durable_effect.jobs._instance import InstanceRef, InstanceTx
from durable_effect.storage import InstanceWrite, Lease, SqliteStorage

JOB_TYPE = "counter"
JOB_NAME = "crash"
LOG_PREFIX = "log:"


def instance_ref(n: int) -> InstanceRef:
    return InstanceRef(job_type=JOB_TYPE, job_name=JOB_NAME, id=f"c{n:03d}")


class CrashCounter(JobDefinition):
    """One step per alarm (see the module docstring)."""

    job_type: ClassVar[str] = JOB_TYPE

    def __init__(self, target: int) -> None:
        self.target = target

    @property
    def log_level(self) -> int:
        return 40

    def on_alarm(self, tx: InstanceTx, due_at: datetime) -> Effect[None, Never]:
        def step() -> None:
            raw = tx.get("n")
            value = 0 if raw is None else int(raw)
            if value >= self.target:
                tx.set_alarm(None)
                return
            value += 1
            tx.put("n", str(value).encode())
            token = uuid.uuid4().hex
            tx.put(LOG_PREFIX + token, json.dumps([tx.instance_id, value]).encode())
            tx.set_alarm(tx.now() if value < self.target else None)

        return Effect.sync(step)


class ReportingStorage(SqliteStorage):
    """Writes one ``commit`` line to stdout for every step whose commit returned."""

    async def commit(
        self,
        leases: Sequence[Lease],
        writes: Sequence[InstanceWrite],
        *,
        release: bool = True,
        unless_present: Sequence[tuple[str, str]] = (),
        feed: Sequence[bytes] = (),
    ) -> None:
        await super().commit(
            leases, writes, release=release, unless_present=unless_present, feed=feed
        )
        lines = []
        for write in writes:
            tokens = [k[len(LOG_PREFIX) :] for k in write.puts if k.startswith(LOG_PREFIX)]
            if tokens and "n" in write.puts:
                value = int(write.puts["n"])
                lines.append(f"commit {write.instance_id} {value} {tokens[0]}\n")
        if lines:
            os.write(1, "".join(lines).encode())


async def main(path: str, target: int, lease_ms: int) -> None:
    storage = ReportingStorage(path, synchronous="full")
    jobs = create_durable_jobs(
        {JOB_NAME: CrashCounter(target)},
        storage=storage,
        lease_ttl=timedelta(milliseconds=lease_ms),
    )
    async with jobs:
        os.write(1, b"ready\n")
        await jobs.worker(concurrency=8, poll_interval=0.05).run()


if __name__ == "__main__":
    asyncio.run(main(sys.argv[1], int(sys.argv[2]), int(sys.argv[3])))
