"""The contexts of a Task job's handlers: `TaskContext[S]` and its subclasses.

Every handler of a Task (``on_event``, ``execute``, ``on_idle``, ``on_error``) gets a
``TaskContext[S]`` or a subclass of it:

* ``TaskEventContext[S]`` (``on_event``) adds ``is_first_event``;
* ``TaskIdleContext[S]`` (``on_idle``) adds ``idle_reason`` (``"on_event"``/``"execute"``);
* ``TaskErrorContext[S]`` (``on_error``) adds ``error_source`` (the handler that failed).

Whatever reads storage is an ``Effect`` (``state``, ``event_count``, ``execute_count``,
``created_at``, ``get_scheduled_time()``), and always gives the *live* value: what this
handler has written so far included (**fix**: the original returned the value loaded before
the handler). Identifiers and facts of the call are plain attributes.

``schedule(when)`` sets the instance's single alarm, which runs ``execute``; the last call of
a handler wins. ``when`` is a ``timedelta`` or a duration string (from now), an aware
``datetime`` (absolute), or a number: absolute epoch **milliseconds**, as in the original.

>>> from datetime import UTC, datetime, timedelta
>>> now = datetime(2026, 1, 1, tzinfo=UTC)
>>> resolve_when("90 s", now).isoformat()
'2026-01-01T00:01:30+00:00'
>>> resolve_when(timedelta(hours=1), now).isoformat()
'2026-01-01T01:00:00+00:00'
>>> resolve_when(1767225600000, now).isoformat()
'2026-01-01T00:00:00+00:00'
>>> resolve_when(datetime(2026, 1, 2), now)
Traceback (most recent call last):
    ...
durable_effect.errors.ValidationError: ValidationError: schedule at when: \
a datetime must be timezone-aware, got datetime.datetime(2026, 1, 2, 0, 0)
"""

from __future__ import annotations

import math
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Generic, Literal, Never, TypeAlias, TypeVar

from durable_effect._duration import Duration
from durable_effect._effect import Effect
from durable_effect.errors import ValidationError
from durable_effect.jobs._exec import Termination, validated
from durable_effect.jobs._instance import InstanceTx
from durable_effect.jobs._records import Record
from durable_effect.jobs._task_records import META, TaskMeta

__all__ = [
    "IdleReason",
    "Phase",
    "ScheduleInput",
    "TaskContext",
    "TaskErrorContext",
    "TaskEventContext",
    "TaskIdleContext",
    "TaskSession",
    "resolve_when",
]

S = TypeVar("S")

#: The handlers of a Task, as named in ``error_source`` (``task.scheduled.trigger`` names
#: them as the seed does: ``"event"``, ``"execute"``, ``"idle"``, ``"error"``).
Phase: TypeAlias = Literal["on_event", "execute", "on_idle", "on_error"]
#: Why ``on_idle`` runs: the handler after which nothing was scheduled.
IdleReason: TypeAlias = Literal["on_event", "execute"]
#: What ``ctx.schedule`` accepts (see the module docstring).
ScheduleInput: TypeAlias = timedelta | str | datetime | int | float

_EPOCH = datetime(1970, 1, 1, tzinfo=UTC)


def _bad_when(message: str) -> ValidationError:
    return ValidationError(schema="schedule", message=message, path="when")


def resolve_when(when: object, now: datetime) -> datetime:
    """The instant ``ctx.schedule(when)`` means at ``now`` (``ValidationError`` if invalid)."""
    if isinstance(when, datetime):
        if when.tzinfo is None or when.utcoffset() is None:
            raise _bad_when(f"a datetime must be timezone-aware, got {when!r}")
        return when.astimezone(UTC)
    if isinstance(when, bool) or not isinstance(when, timedelta | str | int | float):
        raise _bad_when(
            "expected a timedelta, a duration string, an aware datetime or epoch milliseconds, "
            f"got {type(when).__name__}"
        )
    if isinstance(when, int | float):
        if isinstance(when, float) and not math.isfinite(when):
            raise _bad_when(f"epoch milliseconds must be finite, got {when!r}")
        try:
            return _EPOCH + timedelta(milliseconds=when)
        except OverflowError:
            raise _bad_when(f"epoch milliseconds out of range: {when!r}") from None
    if isinstance(when, timedelta) and when < timedelta(0):
        raise _bad_when(f"a delay must not be negative, got {when!r}")
    try:
        delay = Duration.parse(when)
        return now + delay
    except (ValueError, OverflowError) as exc:
        raise _bad_when(str(exc)) from None


class TaskSession(Generic[S]):
    """One handler run's view of the instance, shared by the context it is given.

    The job reads what the handler did here after it ends: whether it touched the schedule
    (``schedule_touched``) and whether it terminated the instance (``termination``).
    """

    __slots__ = ("phase", "schedule_touched", "state", "termination", "tx")

    def __init__(self, tx: InstanceTx, state: Record[S], phase: Phase) -> None:
        self.tx = tx
        self.state = state
        self.phase: Phase = phase
        self.schedule_touched = False
        self.termination = Termination()

    def read_state(self) -> S | None:
        return self.state.load(self.tx)

    def write_state(self, state: S) -> Effect[None, ValidationError]:
        """Replace the state when the effect runs (``ValidationError`` if it does not fit)."""
        return validated(lambda: self.state.save(self.tx, state))

    def meta(self) -> TaskMeta:
        meta = META.load(self.tx)
        if meta is None:  # pragma: no cover - a handler always runs on an existing instance
            raise ValidationError(
                schema="TaskMeta", message="the instance has no metadata", path="$"
            )
        return meta


class TaskContext(Generic[S]):
    """What every Task handler sees (``execute`` gets exactly this class).

    ``on_event``, ``on_idle`` and ``on_error`` get subclasses, so a handler annotated with
    ``TaskContext[S]`` fits any of them.
    """

    __slots__ = ("_session", "id", "instance_id", "job_name")

    #: The storage id, ``task:<job name>:<id>``.
    instance_id: str
    #: The id the client used.
    id: str
    #: The registered job name.
    job_name: str

    def __init__(self, session: TaskSession[S]) -> None:
        self._session = session
        ref = session.tx.ref
        self.instance_id = ref.instance_id
        self.id = ref.id
        self.job_name = ref.job_name

    # -- state -----------------------------------------------------------------------------

    @property
    def state(self) -> Effect[S | None]:
        """The current state, or ``None`` before anything set it; live within the handler."""
        return Effect.sync(self._session.read_state)

    def set_state(self, state: S) -> Effect[None, ValidationError]:
        """Replace the state; fails with ``ValidationError`` if ``state`` does not fit."""
        return self._session.write_state(state)

    def update_state(self, fn: Callable[[S], S]) -> Effect[None, ValidationError]:
        """Replace the state with ``fn(current)``; does nothing while the state is ``None``."""
        session = self._session

        def update() -> Effect[None, ValidationError]:
            current = session.read_state()
            if current is None:
                return Effect.succeed(None)
            return session.write_state(fn(current))

        return Effect.suspend(update)

    # -- schedule ----------------------------------------------------------------------------

    def schedule(self, when: ScheduleInput) -> Effect[None, ValidationError]:
        """Run ``execute`` at ``when`` (replacing any earlier schedule; the last call wins).

        ``timedelta``/duration string: from now; aware ``datetime``: that instant; a number:
        absolute epoch milliseconds. Anything else fails with ``ValidationError``.
        """
        session = self._session

        def set_it() -> None:
            session.tx.set_alarm(resolve_when(when, session.tx.now()))
            session.schedule_touched = True

        return validated(set_it)

    def cancel_schedule(self) -> Effect[None]:
        """Cancel the scheduled execution, if any."""
        session = self._session

        def cancel() -> None:
            session.tx.set_alarm(None)
            session.schedule_touched = True

        return Effect.sync(cancel)

    def get_scheduled_time(self) -> Effect[datetime | None]:
        """When ``execute`` is scheduled to run (``None`` if it is not)."""
        session = self._session
        return Effect.sync(lambda: session.tx.alarm_at)

    # -- lifecycle -------------------------------------------------------------------------

    def terminate(self, reason: str | None = None) -> Effect[Never]:
        """End the handler here and delete the instance: state, counters and schedule."""
        session = self._session

        return Effect.sync(lambda: session.termination.request(reason))

    # -- counters --------------------------------------------------------------------------

    @property
    def event_count(self) -> Effect[int]:
        """How many events the instance has received (the current one included)."""
        session = self._session
        return Effect.sync(lambda: session.meta().event_count)

    @property
    def execute_count(self) -> Effect[int]:
        """How many times ``execute`` has run (the current run included; not retries)."""
        session = self._session
        return Effect.sync(lambda: session.meta().execute_count)

    @property
    def created_at(self) -> Effect[datetime]:
        """When the instance was created (by its first event)."""
        session = self._session
        return Effect.sync(lambda: session.meta().created_at)


class TaskEventContext(TaskContext[S]):
    """The context of ``on_event``: adds ``is_first_event``."""

    __slots__ = ("is_first_event",)

    #: Whether this event created the instance.
    is_first_event: bool

    def __init__(self, session: TaskSession[S], *, is_first_event: bool) -> None:
        super().__init__(session)
        self.is_first_event = is_first_event


class TaskIdleContext(TaskContext[S]):
    """The context of ``on_idle``: adds ``idle_reason``."""

    __slots__ = ("idle_reason",)

    #: The handler after which nothing was scheduled: ``"on_event"`` or ``"execute"``.
    idle_reason: IdleReason

    def __init__(self, session: TaskSession[S], *, idle_reason: IdleReason) -> None:
        super().__init__(session)
        self.idle_reason = idle_reason


class TaskErrorContext(TaskContext[S]):
    """The context of ``on_error``: adds ``error_source``."""

    __slots__ = ("error_source",)

    #: The handler that failed: ``"on_event"``, ``"execute"`` or ``"on_idle"``.
    error_source: Phase

    def __init__(self, session: TaskSession[S], *, error_source: Phase) -> None:
        super().__init__(session)
        self.error_source = error_source
