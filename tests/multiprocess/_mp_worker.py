"""A worker process of ``test_multiprocess``, and the jobs it runs (the test imports them).

Run as ``python -m tests.multiprocess._mp_worker URL SCHEMA LEASE_MS FENCE_FILE``. It opens
the PostgreSQL store, prints ``ready``, then runs a ``Worker`` (real `SystemClock`) until
SIGTERM, when it stops gracefully and prints ``stopped``.

The jobs record, in the state they commit, which process ran which tick:

* ``ticker`` — Continuous, every `TICK_EVERY`, ``misfire="run_all"`` (a late worker runs
  every missed tick, so the executed ticks of an instance are exactly the schedule's ticks
  from its first one on: no gap and no repeat are allowed);
* ``chain`` — Task: ``Begin`` sets the plan and schedules the first alarm; each ``execute``
  appends its run and schedules the next one, `CHAIN_EVERY` after the previous *planned*
  instant, until ``count`` runs are done.

Every execution appends a `Tick` (its number, the instant it was scheduled for, the pid and
the wall-clock instant it ran) in the same commit as the state change.

**Fencing assertion.** While a handler's user code runs, it holds an exclusive POSIX record
lock (``lockf``, non-blocking) on one byte of a shared ``FENCE_FILE``, one byte per instance.
The kernel owns these locks, not PostgreSQL: they cannot be lost by a server restart, and
they are released the instant their process dies (SIGKILL included). A handler that finds
its byte locked knows that a live handler of the same instance runs in another process right
now — the one thing leases must prevent — and reports ``FENCE <instance> <pid> <holder>`` on
stdout (the test fails on any such line). Within one process a set of running instances does
the same check. The lock is held for `HOLD_S`, so an overlap would not go unnoticed.

After every commit that returned, the process writes ``ack <instance_id> <n> <pid>`` (the
newest tick of that commit) to stdout with one unbuffered ``write``: the test checks that each
acknowledged tick is in the final committed state (nothing committed is lost, across the
SIGKILL and the server restart).
"""

from __future__ import annotations

import asyncio
import contextlib
import fcntl
import os
import signal
import struct
import sys
from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from typing import Any

import msgspec

from durable_effect import Continuous, Effect, Gen, Task, ValidationError, create_durable_jobs
from durable_effect.jobs._base import JobDefinition
from durable_effect.jobs._continuous import ContinuousContext
from durable_effect.jobs._task_context import TaskContext, TaskEventContext
from durable_effect.storage import InstanceWrite, Lease
from durable_effect.storage._postgres import PostgresStorage

TICK_EVERY = timedelta(seconds=4)
CHAIN_EVERY = timedelta(seconds=4)
HOLD_S = 0.01
CONCURRENCY = 32
POOL_SIZE = 8
#: Byte offsets of the fence file: continuous ``c<n>`` at ``n``, task ``t<n>`` at this + n.
TASK_OFFSET = 1_000_000
PID = os.getpid()


class Tick(msgspec.Struct, array_like=True):
    """One execution: its number, the instant it was due, who ran it, and when."""

    n: int
    scheduled_at: datetime
    pid: int
    ran_at: datetime


class TickerState(msgspec.Struct):
    """The Continuous state: every tick executed, in order."""

    ticks: list[Tick] = msgspec.field(default_factory=list)


class Begin(msgspec.Struct):
    """Start a chain: ``count`` runs, the first at ``first_at``, then every `CHAIN_EVERY`."""

    first_at: datetime
    count: int


class ChainState(msgspec.Struct):
    """The Task state: the plan and every run executed, in order."""

    count: int
    next_at: datetime
    runs: list[Tick] = msgspec.field(default_factory=list)


# -- the fence -----------------------------------------------------------------------------


class Fence:
    """Exclusive per-instance byte locks in a file shared by the worker processes."""

    def __init__(self, path: str) -> None:
        # Opened once for the life of the process: closing any descriptor of the file would
        # drop every lock this process holds on it.
        self.fd = os.open(path, os.O_RDWR | os.O_CREAT, 0o600)
        self.running: set[str] = set()
        self.violations = 0

    @staticmethod
    def offset(instance_id: str) -> int:
        """``continuous:ticker:c12`` → 12, ``task:chain:t12`` → TASK_OFFSET + 12."""
        user_id = instance_id.rsplit(":", 1)[1]
        number = int(user_id[1:])
        return number if user_id[0] == "c" else TASK_OFFSET + number

    async def hold(self, instance_id: str) -> None:
        """Hold the instance's fence for `HOLD_S`; report (never raise) an overlap."""
        offset = self.offset(instance_id)
        if instance_id in self.running:
            self._report(instance_id, f"{PID}(same process)")
        self.running.add(instance_id)
        locked = False
        try:
            try:
                fcntl.lockf(self.fd, fcntl.LOCK_EX | fcntl.LOCK_NB, 1, offset)
                locked = True
            except OSError:
                self._report(instance_id, str(self._holder(offset)))
            await asyncio.sleep(HOLD_S)
        finally:
            if locked:
                fcntl.lockf(self.fd, fcntl.LOCK_UN, 1, offset)
            self.running.discard(instance_id)

    def _holder(self, offset: int) -> int | str:
        """The pid holding the byte (diagnostics only)."""
        try:
            query = struct.pack("hhqqi4x", fcntl.F_WRLCK, 0, offset, 1, 0)
            answer = fcntl.fcntl(self.fd, fcntl.F_GETLK, query)
            pid: int = struct.unpack("hhqqi4x", answer)[4]
            return pid
        except OSError as exc:
            return f"unknown({exc})"

    def _report(self, instance_id: str, holder: str) -> None:
        self.violations += 1
        os.write(1, f"FENCE {instance_id} {PID} {holder}\n".encode())


_FENCE: list[Fence] = []


def _fence() -> Fence:
    if not _FENCE:
        raise RuntimeError("the fence is set up by main() (only workers run handlers)")
    return _FENCE[0]


def _now() -> datetime:
    return datetime.now(UTC)


# -- the jobs --------------------------------------------------------------------------------


@Effect.gen
def tick(ctx: ContinuousContext[TickerState]) -> Gen[None, ValidationError]:
    state = yield from ctx.state
    instance_id = ctx.instance_id
    yield from Effect.promise(lambda: _fence().hold(instance_id))
    done = Tick(n=ctx.run_count, scheduled_at=ctx.scheduled_at, pid=PID, ran_at=_now())
    yield from ctx.set_state(TickerState(ticks=[*state.ticks, done]))


@Effect.gen
def begin(event: Begin, ctx: TaskEventContext[ChainState]) -> Gen[None, ValidationError]:
    yield from ctx.set_state(ChainState(count=event.count, next_at=event.first_at))
    yield from ctx.schedule(event.first_at)


@Effect.gen
def run_chain(ctx: TaskContext[ChainState]) -> Gen[None, ValidationError]:
    state = yield from ctx.state
    assert state is not None
    instance_id = ctx.instance_id
    yield from Effect.promise(lambda: _fence().hold(instance_id))
    done = Tick(n=len(state.runs) + 1, scheduled_at=state.next_at, pid=PID, ran_at=_now())
    runs = [*state.runs, done]
    next_at = state.next_at + CHAIN_EVERY
    yield from ctx.set_state(ChainState(count=state.count, next_at=next_at, runs=runs))
    if len(runs) < state.count:
        yield from ctx.schedule(next_at)


def definitions() -> dict[str, JobDefinition]:
    """The jobs of the test, by name (the parent registers the same ones)."""
    return {
        "ticker": Continuous.make(
            TickerState,
            Continuous.every(TICK_EVERY),
            tick,
            start_immediately=False,
            misfire="run_all",
        ),
        "chain": Task.make(ChainState, Begin, begin, run_chain),
    }


# -- the process -----------------------------------------------------------------------------


class AckingStorage(PostgresStorage):
    """Writes ``ack <instance_id> <n> <pid>`` for the newest tick of every commit that returned."""

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
            data = write.puts.get("state")
            if data is None:
                continue
            state: dict[str, Any] = msgspec.json.decode(data)
            done = state.get("ticks") or state.get("runs")
            if done:
                lines.append(f"ack {write.instance_id} {done[-1][0]} {done[-1][2]}\n")
        if lines:
            os.write(1, "".join(lines).encode())


async def main(url: str, schema: str, lease_ms: int, fence_path: str) -> None:
    _FENCE.append(Fence(fence_path))
    storage = AckingStorage(url, max_size=POOL_SIZE, schema=schema, notify_channel=schema)
    jobs = create_durable_jobs(
        definitions(), storage=storage, lease_ttl=timedelta(milliseconds=lease_ms)
    )
    async with jobs:
        worker = jobs.worker(concurrency=CONCURRENCY, poll_interval=0.25)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(worker.stop()))
        os.write(1, f"ready {jobs.engine.owner}\n".encode())
        await worker.run()
    os.write(1, f"stopped {worker.fired}\n".encode())


if __name__ == "__main__":
    with contextlib.suppress(KeyboardInterrupt):
        asyncio.run(main(sys.argv[1], sys.argv[2], int(sys.argv[3]), sys.argv[4]))
