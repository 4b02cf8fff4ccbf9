"""Shared definitions for the Debounce tests: event/state schemas, a recording sink, jobs."""

from __future__ import annotations

import asyncio
from collections.abc import Callable
from datetime import UTC, datetime
from pathlib import Path
from typing import ClassVar, Literal, TypeVar

import attrs
import msgspec

from durable_effect import (
    Debounce,
    DebounceContext,
    DebounceDefinition,
    DebounceEventContext,
    Effect,
    Gen,
    Retry,
    TaggedError,
)
from durable_effect.jobs._debounce import FlushReason
from durable_effect.storage import Storage
from durable_effect.testing import TestRuntime
from tests.jobs.conftest import POSTGRES, storage_for

S = TypeVar("S")

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STORAGES = ("memory", "sqlite", POSTGRES)


def storage_url(kind: str, tmp_path: object) -> str | Storage:
    """``memory://``, a fresh SQLite file under ``tmp_path``, or a PostgreSQL schema of its own."""
    return storage_for(kind, Path(str(tmp_path)), "debounce.db")


class Hook(msgspec.Struct, frozen=True):
    """A webhook event."""

    kind: str
    n: int


class Batch(msgspec.Struct):
    """The reduced state: every event of the batch, in order."""

    events: list[Hook]
    total: int


@attrs.frozen(kw_only=True, eq=False)
class Downstream(TaggedError):
    """A typed failure of ``execute``."""

    tag: ClassVar[Literal["Downstream"]] = "Downstream"
    status: int


@attrs.frozen(kw_only=True)
class Flush:
    """One run of ``execute`` as it saw its context."""

    reason: FlushReason
    count: int
    state: object
    attempt: int
    is_retry: bool
    started_at: datetime
    instance_id: str
    id: str
    job_name: str
    ok: bool


@attrs.define
class Sink:
    """What ``execute`` saw; ``fail`` makes it fail (``"typed"`` or ``"defect"``)."""

    runs: list[Flush] = attrs.field(factory=list)
    fail: Literal["typed", "defect"] | None = None
    gate: asyncio.Event | None = None
    entered: asyncio.Event | None = None

    @property
    def ok_runs(self) -> list[Flush]:
        """The runs that succeeded."""
        return [r for r in self.runs if r.ok]

    def execute(self) -> Callable[[DebounceContext[S]], Effect[None, Downstream]]:
        """An ``execute`` recording into this sink."""
        sink = self

        @Effect.gen
        def run(ctx: DebounceContext[S]) -> Gen[None, Downstream]:
            state = yield from ctx.state
            count = yield from ctx.event_count
            started = yield from ctx.debounce_started_at
            if sink.entered is not None:
                sink.entered.set()
            if sink.gate is not None:
                gate = sink.gate
                yield from Effect.promise(gate.wait)
            ok = sink.fail is None
            sink.runs.append(
                Flush(
                    reason=ctx.flush_reason,
                    count=count,
                    state=state,
                    attempt=ctx.attempt,
                    is_retry=ctx.is_retry,
                    started_at=started,
                    instance_id=ctx.instance_id,
                    id=ctx.id,
                    job_name=ctx.job_name,
                    ok=ok,
                )
            )
            if sink.fail == "typed":
                yield from Downstream(status=503)
            if sink.fail == "defect":
                raise RuntimeError("downstream exploded")
            return None

        return run


def append_hook(ctx: DebounceEventContext[Batch, Hook]) -> Effect[Batch]:
    """The reducer: append the event to the batch's list."""
    prev = ctx.state if ctx.state is not None else Batch(events=[], total=0)
    return Effect.succeed(Batch(events=[*prev.events, ctx.event], total=prev.total + ctx.event.n))


def batcher(
    sink: Sink,
    *,
    flush_after: str = "5 s",
    max_events: int | None = None,
    idle_after: str | None = None,
    retry: Retry | None = None,
    dedupe_window: str = "24 hours",
) -> DebounceDefinition[Batch, Hook]:
    """A Debounce job reducing ``Hook`` events into a ``Batch``."""
    return Debounce.make(
        Hook,
        sink.execute(),
        flush_after,
        state_schema=Batch,
        max_events=max_events,
        idle_after=idle_after,
        on_event=append_hook,
        retry=retry,
        dedupe_window=dedupe_window,
    )


def hooks(*ns: int) -> list[Hook]:
    """``Hook("h", n)`` for each n."""
    return [Hook(kind="h", n=n) for n in ns]


async def alarm_of(rt: TestRuntime, instance_id: str) -> datetime | None:
    """The instance's committed alarm."""
    snapshots = await rt.jobs.storage.load([instance_id])
    return snapshots[instance_id].alarm_at


async def exists(rt: TestRuntime, instance_id: str) -> bool:
    """Whether storage holds any record or alarm of the instance."""
    snapshots = await rt.jobs.storage.load([instance_id])
    return snapshots[instance_id].exists
