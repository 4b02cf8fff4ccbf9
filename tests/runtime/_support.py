"""Tiny job definitions and helpers for the runtime tests (no Continuous/Debounce/Task).

``CounterJob`` is the whole job model the runtime needs: its alarm handler bumps an integer
record ``n``, remembers what it saw, and re-arms (or clears) its alarm. Client-like
operations are plain handlers run through ``Engine.call``.
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable, Sequence
from datetime import UTC, datetime, timedelta
from typing import ClassVar, Literal, Never

import attrs
from returns.result import Success

from durable_effect import Effect, TaggedError
from durable_effect._events import Event
from durable_effect._runtime._engine import Engine
from durable_effect.jobs._base import JobDefinition
from durable_effect.jobs._instance import InstanceRef, InstanceTx

T0 = datetime(2026, 1, 1, tzinfo=UTC)
TTL = timedelta(seconds=30)
JOB_TYPE = "counter"

AlarmHook = Callable[[InstanceTx, datetime], Awaitable[None]]


def ref(id_: str, name: str = "tick") -> InstanceRef:
    """The ref of a ``CounterJob`` instance registered as ``name``."""
    return InstanceRef(job_type=JOB_TYPE, job_name=name, id=id_)


def read_int(tx: InstanceTx, key: str = "n") -> int:
    raw = tx.get(key)
    return 0 if raw is None else int(raw)


def put_int(tx: InstanceTx, value: int, key: str = "n") -> None:
    tx.put(key, str(value).encode())


@attrs.frozen
class Fired:
    """One alarm as the handler saw it."""

    instance_id: str
    now: datetime
    due_at: datetime
    value: int


@attrs.frozen(kw_only=True, eq=False)
class Boom(TaggedError):
    """A typed failure of a handler."""

    tag: ClassVar[Literal["Boom"]] = "Boom"
    code: int


@attrs.frozen(kw_only=True)
class Ping(Event):
    """A telemetry event a test handler emits."""

    type: ClassVar[str] = "test.ping"
    instance_id: str


class CounterJob(JobDefinition):
    """On each alarm: await ``hook`` (if any), bump ``n``, record it, re-arm or clear.

    The next alarm is ``tx.now() + every`` while ``n < until`` (``every=None``: no next
    alarm; ``every=timedelta(0)``: the current instant again).
    """

    job_type: ClassVar[str] = JOB_TYPE

    def __init__(
        self,
        *,
        every: timedelta | None = None,
        until: int | None = None,
        hook: AlarmHook | None = None,
        level: int = logging.ERROR,
    ) -> None:
        self.every = every
        self.until = until
        self.hook = hook
        self.level = level
        self.fired: list[Fired] = []

    @property
    def log_level(self) -> int:
        return self.level

    def on_alarm(self, tx: InstanceTx, due_at: datetime) -> Effect[None, Never]:
        async def run() -> None:
            if self.hook is not None:
                await self.hook(tx, due_at)
            value = read_int(tx) + 1
            put_int(tx, value)
            self.fired.append(Fired(tx.instance_id, tx.now(), due_at, value))
            done = self.until is not None and value >= self.until
            tx.set_alarm(None if done or self.every is None else tx.now() + self.every)

        return Effect.promise(run)


def set_alarm(when: datetime | None) -> Callable[[Sequence[InstanceTx]], Effect[None, Never]]:
    """A client-like handler: set (or clear) the alarm of every instance of the call."""

    def handler(txs: Sequence[InstanceTx]) -> Effect[None, Never]:
        def body() -> None:
            for tx in txs:
                tx.set_alarm(when)

        return Effect.sync(body)

    return handler


async def schedule(engine: Engine, refs: Sequence[InstanceRef], when: datetime) -> None:
    """Set the alarm of ``refs`` to ``when`` through ``Engine.call`` (must succeed)."""
    outcome = await engine.call(refs, set_alarm(when))
    assert Effect.run_sync(outcome) == Success(None)
