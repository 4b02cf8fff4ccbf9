"""Shared pieces of the Task tests: schemas, a typed failure, runtime and storage helpers."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import ClassVar, Literal, TypeVar

import attrs
import msgspec

from durable_effect import Effect, TaggedError
from durable_effect._events import Event
from durable_effect.jobs._base import JobDefinition
from durable_effect.storage import InstanceSnapshot, Storage
from durable_effect.testing._runtime import TestRuntime
from tests.jobs.conftest import POSTGRES, storage_for

EventT = TypeVar("EventT", bound=Event)

T0 = datetime(2026, 1, 1, tzinfo=UTC)
STORAGES = ("memory", "sqlite", POSTGRES)


def at(*, minutes: float = 0, seconds: float = 0, hours: float = 0) -> datetime:
    """``T0`` plus an offset."""
    return T0 + timedelta(hours=hours, minutes=minutes, seconds=seconds)


def storage_url(kind: str, tmp_path: Path) -> str | Storage:
    """``memory://``, a fresh SQLite file under ``tmp_path``, or a PostgreSQL schema of its own."""
    return storage_for(kind, tmp_path, "task.db")


class Box(msgspec.Struct):
    """A small state: a number and a log of what the handlers did."""

    n: int
    log: list[str] = msgspec.field(default_factory=list)


class Add(msgspec.Struct, tag=True):
    """Add ``n`` to the state (creating it at 0)."""

    n: int


class Ping(msgspec.Struct, tag=True):
    """An event that carries nothing."""


Ev = Add | Ping


@attrs.frozen(kw_only=True, eq=False)
class Boom(TaggedError):
    """A typed failure of a handler."""

    tag: ClassVar[Literal["Boom"]] = "Boom"
    code: int


def noop(*_: object) -> Effect[None]:
    """A handler that does nothing."""
    return Effect.succeed(None)


def runtime(kind: str, tmp_path: Path, **defs: JobDefinition) -> TestRuntime:
    """A ``TestRuntime`` over ``defs`` on memory or SQLite storage."""
    return TestRuntime(dict(defs), storage=storage_url(kind, tmp_path))


async def snapshot(rt: TestRuntime, instance_id: str) -> InstanceSnapshot:
    """The committed records and alarm of an instance."""
    snapshots = await rt.jobs.storage.load([instance_id])
    return snapshots[instance_id]


def of_type(events: Sequence[Event], cls: type[EventT]) -> list[EventT]:
    """The events of one class, in order."""
    return [e for e in events if isinstance(e, cls)]


def types_of(events: Sequence[Event]) -> list[str]:
    """The ``type`` of every event, in order."""
    return [e.type for e in events]
