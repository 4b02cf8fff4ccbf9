"""Crash test: a worker process killed with SIGKILL at random points, again and again.

Setup: ``INSTANCES`` counter instances on one SQLite file (``synchronous=full``), each with
an alarm due now. A worker runs in a subprocess (``tests/runtime/_crash_worker.py``, lease
TTL 0.3 s); each alarm makes one step in ONE commit — counter ``n`` from ``v`` to ``v + 1``
plus an intent record ``log:<fresh token>`` = ``[instance_id, v + 1]`` — and re-arms the
alarm at once until ``n == TARGET``. After each commit returns, the child reports
``(instance, value, token)`` on stdout.

The parent kills the worker with SIGKILL ``KILLS`` times at random instants 20-150 ms after
it is ready (plus a few kills during start-up, before it is ready), and starts a fresh worker
each time; it takes over the dead worker's leases once they expire. Finally one worker runs
until every instance is done.

Checked against the model after every kill and at the end, per instance:

* the intent records' values are exactly ``1..n`` — no gap (no step lost from a commit that
  kept its counter) and no duplicate (no step applied twice, e.g. by two workers or by
  re-running an alarm whose commit had landed), and they all name the instance;
* every step the worker acknowledged (its commit returned) is in the file with its token —
  no committed write lost;
* ``n <= TARGET``; at the end ``n == TARGET`` and the alarm is cleared.
"""

from __future__ import annotations

import asyncio
import itertools
import json
import os
import random
import signal
import sys
from collections.abc import Sequence
from pathlib import Path
from typing import Never

import attrs
import pytest
from returns.result import Success

from durable_effect import Effect
from durable_effect._jobs import create_durable_jobs
from durable_effect.jobs._instance import InstanceTx
from durable_effect.storage import SqliteStorage
from tests.runtime._crash_worker import LOG_PREFIX, CrashCounter, instance_ref

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[2]
INSTANCES = 12
TARGET = 800
KILLS = 55
EARLY_KILLS = 8
LEASE_MS = 300


@attrs.define
class Model:
    """What the workers acknowledged: instance id -> [(value, token)]."""

    acknowledged: dict[str, list[tuple[int, str]]] = attrs.field(factory=dict)
    kills: int = 0

    def absorb(self, output: bytes) -> int:
        count = 0
        for line in output.decode().splitlines():
            if not line.startswith("commit "):
                continue
            _, instance_id, value, token = line.split()
            self.acknowledged.setdefault(instance_id, []).append((int(value), token))
            count += 1
        return count


async def check(storage: SqliteStorage, ids: Sequence[str], model: Model, *, final: bool) -> int:
    """Assert the invariants of the module docstring; the total number of steps committed."""
    snaps = await storage.load(ids)
    total = 0
    for instance_id in ids:
        snap = snaps[instance_id]
        n = int(snap.records.get("n", b"0"))
        intents = {
            key[len(LOG_PREFIX) :]: json.loads(value)
            for key, value in snap.records.items()
            if key.startswith(LOG_PREFIX)
        }
        assert all(owner == instance_id for owner, _ in intents.values())
        values = sorted(value for _, value in intents.values())
        assert values == list(range(1, n + 1)), (
            f"{instance_id}: counter {n} but intents {_summary(values)} (kill {model.kills})"
        )
        for value, token in model.acknowledged.get(instance_id, []):
            assert intents.get(token) == [instance_id, value], (
                f"{instance_id}: acknowledged step {value} ({token}) lost (kill {model.kills})"
            )
        assert n <= TARGET
        if final:
            assert n == TARGET, f"{instance_id} stopped at {n}"
            assert snap.alarm_at is None
        total += n
    return total


def _summary(values: list[int]) -> str:
    dupes = sorted({v for v in values if values.count(v) > 1})
    gaps = sorted(set(range(1, max(values, default=0) + 1)) - set(values))
    return f"(len {len(values)}, duplicates {dupes[:10]}, gaps {gaps[:10]})"


class Child:
    """One worker subprocess; its output is drained from the moment it is ready."""

    def __init__(self, proc: asyncio.subprocess.Process) -> None:
        self.proc = proc
        self._drains: tuple[asyncio.Task[bytes], asyncio.Task[bytes]] | None = None

    @classmethod
    async def start(cls, db: Path) -> Child:
        proc = await asyncio.create_subprocess_exec(
            sys.executable,
            "-m",
            "tests.runtime._crash_worker",
            str(db),
            str(TARGET),
            str(LEASE_MS),
            cwd=ROOT,
            stdout=asyncio.subprocess.PIPE,
            stderr=asyncio.subprocess.PIPE,
        )
        return cls(proc)

    def _drain(self) -> tuple[asyncio.Task[bytes], asyncio.Task[bytes]]:
        if self._drains is None:
            assert self.proc.stdout is not None
            assert self.proc.stderr is not None
            self._drains = (
                asyncio.create_task(self.proc.stdout.read()),
                asyncio.create_task(self.proc.stderr.read()),
            )
        return self._drains

    async def ready(self) -> None:
        """Wait (bounded) for the child's ``ready`` line, then keep draining its output."""
        assert self.proc.stdout is not None
        line = await asyncio.wait_for(self.proc.stdout.readline(), timeout=20)
        if line != b"ready\n":
            _, err = await self.kill()
            raise AssertionError(f"the crash worker did not start: {err.decode()[-2000:]}")
        self._drain()

    async def kill(self) -> tuple[bytes, bytes]:
        drains = self._drain()
        if self.proc.returncode is None:
            self.proc.send_signal(signal.SIGKILL)
        out, err = await asyncio.gather(*drains)
        code = await self.proc.wait()
        assert code == -signal.SIGKILL, (code, err.decode()[-2000:])
        return out, err


async def test_sigkilled_workers_lose_no_committed_step_and_apply_none_twice(
    tmp_path: Path,
) -> None:
    seed = int.from_bytes(os.urandom(4), "big")
    print(f"crash test seed {seed}")
    rng = random.Random(seed)
    db = tmp_path / "crash.db"
    refs = [instance_ref(n) for n in range(INSTANCES)]
    ids = [r.instance_id for r in refs]

    def arm(txs: Sequence[InstanceTx]) -> Effect[None, Never]:
        def body() -> None:
            for tx in txs:
                tx.set_alarm(tx.now())

        return Effect.sync(body)

    async with create_durable_jobs(
        {"crash": CrashCounter(TARGET)}, storage=f"sqlite:///{db}?synchronous=full"
    ) as jobs:
        assert Effect.run_sync(await jobs.engine.call(refs, arm)) == Success(None)

    model = Model()
    plan = ["early"] * EARLY_KILLS + ["ready"] * KILLS
    rng.shuffle(plan)
    async with SqliteStorage(db) as storage:
        progress = [0]
        for kind in plan:
            child = await Child.start(db)
            if kind == "ready":
                await child.ready()
                await asyncio.sleep(rng.uniform(0.02, 0.15))
            else:
                await asyncio.sleep(rng.uniform(0.0, 0.35))
            out, _ = await child.kill()
            model.kills += 1
            model.absorb(out)
            progress.append(await check(storage, ids, model, final=False))
        assert progress == sorted(progress)
        # Most kills landed mid-work: that worker had made steps and work was left.
        total = INSTANCES * TARGET
        mid_work = sum(1 for a, b in itertools.pairwise(progress) if a < b < total)
        print(f"steps committed after each kill: {progress}")
        assert mid_work >= 25, progress

        child = await Child.start(db)
        await child.ready()
        loop = asyncio.get_running_loop()
        deadline = loop.time() + 30
        while await storage.next_alarm_at() is not None:
            assert loop.time() < deadline, "the last worker did not finish"
            await asyncio.sleep(0.05)
        out, _ = await child.kill()
        model.absorb(out)

        assert await check(storage, ids, model, final=True) == total
    acknowledged = sum(len(v) for v in model.acknowledged.values())
    assert acknowledged <= total
    print(f"{model.kills} kills ({mid_work} mid-work), {acknowledged} of {total} steps acked")
