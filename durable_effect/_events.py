"""Telemetry event values: what jobs and workflows emit, and their wire form.

Events are frozen objects with snake_case attributes (``event.type``,
``event.instance_id``, ``event.run_count``…). ``to_wire()`` gives the JSON object the
original systems sent, with camelCase keys (``instanceId``, ``runCount``…) and ISO
timestamps. Timestamps come from the runtime clock.

>>> from datetime import datetime, timezone
>>> ev = JobExecuted(event_id="e1", timestamp=datetime(2026, 1, 1, tzinfo=timezone.utc),
...     instance_id="continuous:tick:a", id="a", job_type="continuous", job_name="tick",
...     run_count=1, attempt=1, duration_ms=3)
>>> ev.type, ev.to_wire()["instanceId"], ev.to_wire()["timestamp"]
('job.executed', 'continuous:tick:a', '2026-01-01T00:00:00.000Z')
"""

from __future__ import annotations

import operator
import os
from collections.abc import Callable
from datetime import UTC, datetime
from typing import ClassVar, Final, Literal, Protocol, TypeAlias

import attrs

__all__ = [
    "DebounceFlushed",
    "DebounceStarted",
    "ErrorInfo",
    "Event",
    "ExhaustedBy",
    "JobEvent",
    "JobExecuted",
    "JobFailed",
    "JobRetryExhausted",
    "JobStarted",
    "JobTerminated",
    "ScheduleTrigger",
    "TaskScheduled",
    "Tracker",
    "new_event_id",
    "to_camel",
]


#: Why retries stopped (``job.retryExhausted.reason``): the limit of the `Retry` policy reached.
ExhaustedBy: TypeAlias = Literal["max_attempts", "max_duration"]
#: Which Task handler scheduled the execution (``task.scheduled.trigger``).
ScheduleTrigger: TypeAlias = Literal["event", "execute", "idle", "error"]


#: The bits ``uuid.uuid4`` fixes: the version (4) and the RFC 4122 variant.
_UUID4_CLEAR = ~((0xF000 << 64) | (0xC000 << 48))
_UUID4_SET = (0x4000 << 64) | (0x8000 << 48)


def new_event_id() -> str:
    """A fresh unique event id: a random (version 4) UUID in hex, as ``uuid.uuid4().hex``.

    Built from the random bits directly (one per event: a ``UUID`` object costs twice as much).

    >>> import uuid
    >>> uuid.UUID(hex=new_event_id()).version
    4
    """
    return f"{int.from_bytes(os.urandom(16)) & _UUID4_CLEAR | _UUID4_SET:032x}"


def to_camel(name: str) -> str:
    """``run_count`` → ``runCount``.

    >>> to_camel("pre_execution_state")
    'preExecutionState'
    """
    head, *rest = name.split("_")
    return head + "".join(part[:1].upper() + part[1:] for part in rest)


def iso(ts: datetime) -> str:
    """An aware instant as ISO-8601 UTC with milliseconds and a ``Z``.

    >>> from datetime import timedelta, timezone
    >>> iso(datetime(2026, 1, 1, 1, 2, 3, 456789, tzinfo=timezone(timedelta(hours=1))))
    '2026-01-01T00:02:03.456Z'
    """
    utc = ts.astimezone(UTC).replace(tzinfo=None)
    return utc.isoformat(timespec="milliseconds") + "Z"


#: Values ``to_wire`` passes through as they are (the common case, checked first).
_PLAIN: Final = frozenset({str, int, float, bool, type(None)})


#: Field annotations whose values are always JSON scalars (``to_wire`` copies them as they are).
_PLAIN_TYPES: Final = frozenset(
    {"str", "int", "bool", "float", "str | None", "int | None", "bool | None", "float | None"}
)


_WirePlan = tuple[tuple[str, ...], Callable[[object], tuple[object, ...]], tuple[int, ...]]
_PLANS: dict[type, _WirePlan] = {}


def _wire_plan(cls: type) -> _WirePlan:
    """For one event class, once: the camelCase keys of its fields, a getter of all their
    values at once, and the positions of the fields that may need converting."""
    plan = _PLANS.get(cls)
    if plan is not None:
        return plan
    fields = attrs.fields(cls)
    names = [field.name for field in fields]
    keys = tuple(to_camel(name) for name in names)
    getter: Callable[[object], tuple[object, ...]]
    if len(names) == 1:
        only = names[0]

        def getter(event: object) -> tuple[object, ...]:
            return (getattr(event, only),)
    else:
        getter = operator.attrgetter(*names)
    special = tuple(i for i, f in enumerate(fields) if str(f.type) not in _PLAIN_TYPES)
    plan = _PLANS[cls] = (keys, getter, special)
    return plan


def _wire_value(value: object) -> object:
    if isinstance(value, datetime):
        return iso(value)
    if isinstance(value, ErrorInfo):
        return {"message": value.message, "stack": value.stack}
    if isinstance(value, dict):
        return {str(k): _wire_value(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [_wire_value(v) for v in value]
    return value


@attrs.frozen(kw_only=True)
class ErrorInfo:
    """An error as telemetry carries it."""

    message: str
    stack: str | None = None


@attrs.frozen(kw_only=True)
class Event:
    """Base of every event: ``type``, ``event_id``, ``timestamp`` (runtime clock)."""

    type: ClassVar[str] = "event"
    event_id: str
    timestamp: datetime

    def to_wire(self) -> dict[str, object]:
        """The JSON object sent to trackers (camelCase keys)."""
        keys, getter, special = _wire_plan(type(self))
        values = getter(self)
        out: dict[str, object] = {"type": self.type}
        out.update(zip(keys, values, strict=True))
        for i in special:
            value = values[i]
            if type(value) not in _PLAIN:
                out[keys[i]] = _wire_value(value)
        return out


@attrs.frozen(kw_only=True)
class JobEvent(Event):
    """An event of a Continuous, Debounce or Task instance."""

    source: str = "job"
    instance_id: str
    id: str
    job_type: str
    job_name: str


@attrs.frozen(kw_only=True)
class JobStarted(JobEvent):
    """A job instance was created; ``input`` is what created it, as JSON builtins (a
    Continuous start's input, a Task's first event)."""

    type: ClassVar[str] = "job.started"
    input: object = None


@attrs.frozen(kw_only=True)
class JobExecuted(JobEvent):
    """``execute`` completed successfully."""

    type: ClassVar[str] = "job.executed"
    run_count: int | None = None
    attempt: int = 1
    duration_ms: int = 0
    pre_execution_state: object = None


@attrs.frozen(kw_only=True)
class JobFailed(JobEvent):
    """``execute`` (or another handler) failed."""

    type: ClassVar[str] = "job.failed"
    run_count: int | None = None
    attempt: int = 1
    error: ErrorInfo
    will_retry: bool = False
    pre_execution_state: object = None


@attrs.frozen(kw_only=True)
class JobRetryExhausted(JobEvent):
    """Every retry attempt failed: ``reason`` is the limit that ended them
    (``"max_attempts"`` or ``"max_duration"``), ``error`` the last attempt's error."""

    type: ClassVar[str] = "job.retryExhausted"
    attempts: int
    reason: ExhaustedBy
    error: ErrorInfo


@attrs.frozen(kw_only=True)
class JobTerminated(JobEvent):
    """The instance was terminated (state purged, alarm cancelled)."""

    type: ClassVar[str] = "job.terminated"
    reason: str | None = None
    run_count: int | None = None


@attrs.frozen(kw_only=True)
class DebounceStarted(JobEvent):
    """The first event of a batch arrived."""

    type: ClassVar[str] = "debounce.started"
    flush_at: datetime | None = None


@attrs.frozen(kw_only=True)
class DebounceFlushed(JobEvent):
    """A batch was processed."""

    type: ClassVar[str] = "debounce.flushed"
    event_count: int
    reason: str
    duration_ms: int = 0


@attrs.frozen(kw_only=True)
class TaskScheduled(JobEvent):
    """A task scheduled its execution with ``ctx.schedule``; ``trigger`` names the handler
    that did: ``"event"`` (``on_event``), ``"execute"``, ``"idle"`` (``on_idle``) or
    ``"error"`` (``on_error``)."""

    type: ClassVar[str] = "task.scheduled"
    scheduled_at: datetime
    trigger: ScheduleTrigger


class Tracker(Protocol):
    """Receives every event. ``handle`` must return at once and never raise into a job."""

    def handle(self, event: Event) -> None:
        """Take one event (buffer it, send it later)."""
        ...

    async def aclose(self) -> None:
        """Deliver what is buffered and stop."""
        ...
