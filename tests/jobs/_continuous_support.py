"""Shared definitions for the Continuous tests: a counter state, a scripted probe, helpers."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar, Literal, TypeVar, cast

import attrs
import msgspec

from durable_effect import Effect, Gen, TaggedError, ValidationError
from durable_effect._backoff import Retry
from durable_effect._events import Event
from durable_effect.jobs._continuous import (
    Continuous,
    ContinuousContext,
    ContinuousDefinition,
    Misfire,
    Schedule,
)
from durable_effect.storage import Storage
from durable_effect.testing._runtime import TestRuntime
from tests.jobs.conftest import POSTGRES, storage_for

EventT = TypeVar("EventT", bound=Event)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STORAGES = ("memory", "sqlite", POSTGRES)


def at(minutes: float = 0, *, seconds: float = 0) -> datetime:
    """``T0`` plus some minutes (and seconds)."""
    return T0 + timedelta(minutes=minutes, seconds=seconds)


def storage_url(kind: str, tmp_path: Path) -> str | Storage:
    """``memory://``, a fresh SQLite file under ``tmp_path``, or a PostgreSQL schema of its own."""
    return storage_for(kind, tmp_path, "continuous.db")


class Counter(msgspec.Struct):
    """The state: successful runs (``n``) and attempts that wrote before finishing."""

    n: int
    tries: int = 0


@attrs.frozen(kw_only=True, eq=False)
class Boom(TaggedError):
    """A typed failure of ``execute``."""

    tag: ClassVar[Literal["Boom"]] = "Boom"
    code: int


Action = Literal["ok", "fail", "defect", "terminate", "bad_state"]


@attrs.frozen
class Call:
    """One attempt of ``execute`` as its context described it."""

    run_count: int
    attempt: int
    is_retry: bool
    scheduled_at: datetime


@attrs.define
class Probe:
    """Records every attempt; ``script[(run_count, attempt)]`` (or ``default``) decides it.

    Every attempt first bumps ``tries`` in the state (so discarded writes are visible), then
    does its action: ``ok`` bumps ``n``; ``fail`` fails with ``Boom``; ``defect`` raises;
    ``terminate`` calls ``ctx.terminate("done")``; ``bad_state`` sets an invalid state.
    """

    calls: list[Call] = attrs.field(factory=list)
    script: dict[tuple[int, int], Action] = attrs.field(factory=dict)
    default: Action = "ok"
    ids: list[tuple[str, str, str]] = attrs.field(factory=list)

    def action(self, ctx: ContinuousContext[Counter]) -> Action:
        """What this attempt does."""
        return self.script.get((ctx.run_count, ctx.attempt), self.default)

    @property
    def scheduled(self) -> list[datetime]:
        """``scheduled_at`` of every attempt, in order."""
        return [c.scheduled_at for c in self.calls]

    def execute(
        self,
    ) -> Callable[[ContinuousContext[Counter]], Effect[None, Boom | ValidationError]]:
        """An ``execute`` driven by this probe."""
        probe = self

        @Effect.gen
        def run(ctx: ContinuousContext[Counter]) -> Gen[None, Boom | ValidationError]:
            probe.calls.append(Call(ctx.run_count, ctx.attempt, ctx.is_retry, ctx.scheduled_at))
            probe.ids.append((ctx.instance_id, ctx.id, ctx.job_name))
            yield from ctx.update_state(lambda s: Counter(n=s.n, tries=s.tries + 1))
            action = probe.action(ctx)
            if action == "fail":
                yield from Boom(code=ctx.run_count)
            elif action == "defect":
                raise RuntimeError("kaput")
            elif action == "terminate":
                yield from ctx.terminate("done")
            elif action == "bad_state":
                yield from ctx.set_state(Counter(n=cast(int, "not a number")))
            state = yield from ctx.state
            yield from ctx.set_state(Counter(n=state.n + 1, tries=state.tries))

        return run


def counter_job(
    probe: Probe,
    *,
    schedule: Schedule | None = None,
    start_immediately: bool = True,
    retry: Retry | None = None,
    misfire: Misfire = "run_once",
    logging: bool | int = False,
) -> ContinuousDefinition[Counter]:
    """A Continuous job over ``Counter`` driven by ``probe`` (every 10 minutes by default)."""
    return Continuous.make(
        Counter,
        Continuous.every("10 minutes") if schedule is None else schedule,
        probe.execute(),
        start_immediately=start_immediately,
        retry=retry,
        logging=logging,
        misfire=misfire,
    )


def of_type(events: Sequence[Event], cls: type[EventT]) -> list[EventT]:
    """The events of one class, in order."""
    return [e for e in events if isinstance(e, cls)]


def types_of(events: Sequence[Event]) -> list[str]:
    """The ``type`` of every event, in order."""
    return [e.type for e in events]


async def alarm_of(rt: TestRuntime, instance_id: str) -> datetime | None:
    """The instance's committed alarm."""
    snapshots = await rt.jobs.storage.load([instance_id])
    return snapshots[instance_id].alarm_at


async def exists(rt: TestRuntime, instance_id: str) -> bool:
    """Whether storage holds any record or alarm of the instance."""
    snapshots = await rt.jobs.storage.load([instance_id])
    return snapshots[instance_id].exists
