"""Task jobs: user-controlled state machines driven by events and one durable alarm.

``Task.make(state_schema, event_schema, on_event, execute, on_idle=None, on_error=None,
retry=None, logging=False)`` builds a ``TaskDefinition[S, I]``. Its semantics:

* ``send(event)`` validates the event (nothing is written if it does not fit), counts it,
  runs ``on_event(event, ctx)``, then ``on_idle`` (``idle_reason="on_event"``) if nothing is
  scheduled afterwards. An ``event_id`` already applied to the instance (remembered for
  24 hours) fails with ``DuplicateEventError`` and nothing is applied.
* The alarm set with ``ctx.schedule`` runs ``execute``; the stored schedule is cleared
  *before* ``execute`` runs (**fix**), so if ``execute`` does not schedule again the task is
  idle and ``on_idle`` runs with ``idle_reason="execute"``.
* ``trigger`` runs ``execute`` at once (the schedule is kept unless ``execute`` changes it; a
  pending alarm retry is abandoned). Triggering an instance that does not exist does nothing
  and gives ``triggered=False``.
* A handler that fails has everything it did rolled back; ``on_error(error, ctx)`` then runs
  and what it does commits. Unhandled (no ``on_error``, or ``on_error`` failed too), a client
  ``send``/``trigger`` fails with ``ExecutionError`` and writes nothing; an alarm is retried
  like a Durable Object alarm (exponential from 2 s, 6 retries — or ``retry``), then
  ``job.retryExhausted`` is emitted and the alarm dropped, the state kept.
* ``terminate`` (client or ``ctx.terminate()``) deletes the instance; the id starts afresh.

Records: ``meta`` (:class:`TaskMeta`), ``state`` (the user's schema, validated on every read
and write), ``event_ids`` (recent ``event_id``s). The alarm is the schedule.
"""

from __future__ import annotations

import types
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, Never, TypeVar, overload

import attrs

from durable_effect import _log
from durable_effect._backoff import Backoff, Retry
from durable_effect._codec import Codec, codec_for
from durable_effect._effect import Effect
from durable_effect._events import JobRetryExhausted, JobStarted
from durable_effect.errors import DuplicateEventError, ExecutionError, ValidationError
from durable_effect.jobs._base import JobDefinition
from durable_effect.jobs._exec import error_info
from durable_effect.jobs._instance import InstanceTx, validate_id
from durable_effect.jobs._task_context import (
    STATE_KEY,
    TaskContext,
    TaskEventContext,
    TaskMeta,
    TaskSession,
    load_meta,
    save_meta,
)
from durable_effect.jobs._task_results import (
    TaskGetStateResult,
    TaskSendResult,
    TaskStatusResult,
    TaskTerminateResult,
    TaskTriggerResult,
)
from durable_effect.jobs._task_runner import (
    End,
    Execute,
    OnError,
    OnEvent,
    OnIdle,
    TaskRunner,
    event_base,
)

__all__ = [
    "DEDUPE_WINDOW",
    "DEFAULT_ALARM_RETRY",
    "Task",
    "TaskDefinition",
    "TaskGetStateResult",
    "TaskSendResult",
    "TaskStatusResult",
    "TaskTerminateResult",
    "TaskTriggerResult",
]

S = TypeVar("S")
I = TypeVar("I")  # noqa: E741
J = TypeVar("J")

#: How an alarm whose handlers fail unhandled is retried when ``retry`` is not given: like a
#: Durable Object alarm, 2 s, 4 s, 8 s… for 6 retries (7 attempts in all).
DEFAULT_ALARM_RETRY = Retry(7, delay=Backoff.exponential("2 seconds"), jitter=False)
#: How long an ``event_id`` is remembered per instance.
DEDUPE_WINDOW = timedelta(hours=24)

_EVENT_IDS_KEY = "event_ids"
_EVENT_IDS_CODEC: Codec[dict[str, datetime]] = codec_for(dict[str, datetime])


# -- the definition ---------------------------------------------------------------------------


@attrs.frozen(kw_only=True, eq=False)
class TaskDefinition(JobDefinition, Generic[S, I]):
    """A Task job (made by ``Task.make``); its methods are the job's semantics."""

    job_type: ClassVar[str] = "task"

    state_schema: object
    event_schema: object
    on_event: OnEvent[I, S]
    execute: Execute[S]
    on_idle: OnIdle[S] | None
    on_error: OnError[S] | None
    retry: Retry | None
    logging: bool | int
    state_codec: Codec[S] = attrs.field(repr=False)
    event_codec: Codec[I] = attrs.field(repr=False)
    level: int = attrs.field(repr=False)
    runner: TaskRunner[S] = attrs.field(repr=False)

    @property
    def log_level(self) -> int:
        return self.level

    # -- client operations -------------------------------------------------------------------

    def send(
        self, tx: InstanceTx, event: object, event_id: str | None
    ) -> Effect[TaskSendResult, ValidationError | DuplicateEventError | ExecutionError]:
        """Deliver ``event``: validate, count, ``on_event``, then ``on_idle`` if idle."""
        return Effect.suspend(lambda: self._send(tx, event, event_id))

    def trigger(
        self, tx: InstanceTx
    ) -> Effect[TaskTriggerResult, ValidationError | ExecutionError]:
        """Run ``execute`` now (``triggered=False`` when the instance does not exist)."""
        return Effect.suspend(lambda: self._trigger(tx))

    def status(self, tx: InstanceTx) -> Effect[TaskStatusResult, ValidationError]:
        """The instance's status and counters."""

        def read() -> TaskStatusResult:
            meta = load_meta(tx)
            if meta is None:
                return TaskStatusResult(
                    status="not_found",
                    scheduled_at=None,
                    event_count=0,
                    execute_count=0,
                    created_at=None,
                )
            at = tx.alarm_at
            return TaskStatusResult(
                status="active" if at is not None else "idle",
                scheduled_at=at,
                event_count=meta.event_count,
                execute_count=meta.execute_count,
                created_at=meta.created_at,
            )

        return _validated(read)

    def get_state(self, tx: InstanceTx) -> Effect[TaskGetStateResult[S], ValidationError]:
        """The instance's state, schedule and creation time."""

        def read() -> TaskGetStateResult[S]:
            meta = load_meta(tx)
            data = tx.get(STATE_KEY)
            return TaskGetStateResult(
                state=None if data is None else self.state_codec.decode(data),
                scheduled_at=tx.alarm_at if meta is not None else None,
                created_at=None if meta is None else meta.created_at,
            )

        return _validated(read)

    def terminate(self, tx: InstanceTx) -> Effect[TaskTerminateResult]:
        """Delete the instance (state, counters, schedule); ``terminated=False`` if absent."""

        def run() -> TaskTerminateResult:
            if not tx.exists:
                return TaskTerminateResult(terminated=False)
            self.runner.purge(tx, None)
            return TaskTerminateResult(terminated=True)

        return Effect.sync(run)

    # -- the alarm -----------------------------------------------------------------------------

    def on_alarm(self, tx: InstanceTx, due_at: datetime) -> Effect[None, Never]:
        """The schedule fired: clear it, run ``execute`` (then ``on_idle`` if idle)."""
        return Effect.suspend(lambda: self._alarm(tx))

    # -- internals -------------------------------------------------------------------------------

    def _send(
        self, tx: InstanceTx, event: object, event_id: str | None
    ) -> Effect[TaskSendResult, ValidationError | DuplicateEventError | ExecutionError]:
        now = tx.now()
        try:
            value = self.event_codec.validate(event)
            if event_id is not None:
                validate_id(event_id, field="event_id")
            meta = load_meta(tx)
            seen = _recent_event_ids(tx, now) if meta is not None else {}
        except ValidationError as exc:
            return Effect.fail(exc)
        if event_id is not None and event_id in seen:
            return Effect.fail(DuplicateEventError(event_id=event_id))
        created = meta is None
        if meta is None:
            meta = TaskMeta(created_at=now)
        save_meta(tx, attrs.evolve(meta, event_count=meta.event_count + 1))
        if event_id is not None:  # remembered (and the stale ones forgotten) only on commit
            seen[event_id] = now
            tx.put(_EVENT_IDS_KEY, _EVENT_IDS_CODEC.encode(seen))
        mark = len(tx.events)
        if created:
            tx.emit(JobStarted(**event_base(tx)))

        def build(session: TaskSession[S]) -> Effect[None, BaseException]:
            return self.on_event(value, TaskEventContext(session, is_first_event=created))

        def finish(end: End) -> Effect[TaskSendResult, ExecutionError]:
            if end.kind == "failed":
                error = self.runner.unhandled(tx, mark, end, attempt=1, will_retry=False)
                return Effect.fail(error)
            return Effect.succeed(
                TaskSendResult(
                    created=created, instance_id=tx.ref.instance_id, scheduled_at=tx.alarm_at
                )
            )

        chain = self.runner.chain(tx, "on_event", build, idle_reason="on_event", attempt=1)
        return chain.flat_map(finish)

    def _trigger(
        self, tx: InstanceTx
    ) -> Effect[TaskTriggerResult, ValidationError | ExecutionError]:
        try:
            meta = load_meta(tx)
        except ValidationError as exc:
            return Effect.fail(exc)
        if meta is None:
            return Effect.succeed(TaskTriggerResult(triggered=False))
        if meta.retry_attempt:  # a pending alarm retry is abandoned: execute runs now instead
            tx.set_alarm(None)
        save_meta(
            tx,
            attrs.evolve(
                meta, execute_count=meta.execute_count + 1, retry_attempt=0, retry_started_at=None
            ),
        )
        mark = len(tx.events)

        def finish(end: End) -> Effect[TaskTriggerResult, ExecutionError]:
            if end.kind == "failed":
                error = self.runner.unhandled(tx, mark, end, attempt=1, will_retry=False)
                return Effect.fail(error)
            return Effect.succeed(TaskTriggerResult(triggered=True))

        return self._execute_chain(tx, attempt=1).flat_map(finish)

    def _alarm(self, tx: InstanceTx) -> Effect[None, Never]:
        try:
            meta = load_meta(tx)
        except ValidationError as exc:
            _log.LOGGER.error("%s: unreadable metadata, alarm dropped: %s", tx.instance_id, exc)
            tx.set_alarm(None)
            return Effect.succeed(None)
        tx.set_alarm(None)  # the schedule is cleared before execute runs (fix)
        if meta is None:  # a stale alarm of an instance that no longer exists
            return Effect.succeed(None)
        now = tx.now()
        attempt = meta.retry_attempt + 1
        started = meta.retry_started_at if meta.retry_started_at is not None else now
        count = meta.execute_count + 1 if attempt == 1 else meta.execute_count
        save_meta(
            tx, attrs.evolve(meta, execute_count=count, retry_attempt=0, retry_started_at=None)
        )
        point = tx.savepoint()
        mark = len(tx.events)

        def finish(end: End) -> None:
            if end.kind != "failed":
                return
            tx.rollback(point)
            policy = self.retry if self.retry is not None else DEFAULT_ALARM_RETRY
            current = load_meta(tx)
            assert current is not None
            will_retry = policy.should_retry(attempt, tx.now() - started)
            self.runner.unhandled(tx, mark, end, attempt=attempt, will_retry=will_retry)
            if will_retry:
                tx.set_alarm(tx.now() + policy.delay_for(attempt))
                save_meta(
                    tx, attrs.evolve(current, retry_attempt=attempt, retry_started_at=started)
                )
                return
            message = error_info(end.error).message if end.error is not None else None
            tx.emit(JobRetryExhausted(**event_base(tx), attempts=attempt, reason=message))

        return self._execute_chain(tx, attempt=attempt).map(finish)

    def _execute_chain(self, tx: InstanceTx, *, attempt: int) -> Effect[End]:
        def build(session: TaskSession[S]) -> Effect[None, BaseException]:
            return self.execute(TaskContext(session))

        return self.runner.chain(tx, "execute", build, idle_reason="execute", attempt=attempt)


def _validated(read: Callable[[], S]) -> Effect[S, ValidationError]:
    def run() -> Effect[S, ValidationError]:
        try:
            return Effect.succeed(read())
        except ValidationError as exc:
            return Effect.fail(exc)

    return Effect.suspend(run)


def _recent_event_ids(tx: InstanceTx, now: datetime) -> dict[str, datetime]:
    data = tx.get(_EVENT_IDS_KEY)
    if data is None:
        return {}
    seen = _EVENT_IDS_CODEC.decode(data)
    return {k: at for k, at in seen.items() if now - at < DEDUPE_WINDOW}


# -- Task.make --------------------------------------------------------------------------------


def _check_callable(name: str, value: object, *, optional: bool = False) -> None:
    if value is None and optional:
        return
    if not callable(value):
        raise TypeError(f"Task.make: {name} must be callable, got {type(value).__name__}")


def _schema_codec(name: str, schema: object) -> Codec[Any]:
    try:
        return codec_for(schema)
    except TypeError as exc:
        raise TypeError(f"Task.make: {name}: {exc}") from None


class Task:
    """Namespace of the Task job type: ``Task.make(...)``.

    >>> import msgspec
    >>> class Count(msgspec.Struct):
    ...     n: int
    >>> def on_event(event: int, ctx: TaskEventContext[Count]) -> Effect[None, ValidationError]:
    ...     return ctx.set_state(Count(n=event))
    >>> def execute(ctx: TaskContext[Count]) -> Effect[None, Never]:
    ...     return Effect.succeed(None)
    >>> counter = Task.make(Count, int, on_event, execute)
    >>> counter.job_type
    'task'
    >>> Task.make(Count, int, on_event, execute, retry=3)
    Traceback (most recent call last):
        ...
    TypeError: Task.make: retry must be a Retry or None, got int
    """

    __slots__ = ()

    def __init__(self) -> None:
        raise TypeError("Task is a namespace; use Task.make(...)")

    @overload
    @staticmethod
    def make(
        state_schema: type[S],
        event_schema: type[I],
        on_event: OnEvent[I, S],
        execute: Execute[S],
        on_idle: OnIdle[S] | None = None,
        on_error: OnError[S] | None = None,
        retry: Retry | None = None,
        logging: bool | int = False,
    ) -> TaskDefinition[S, I]: ...

    @overload
    @staticmethod
    def make(
        state_schema: type[S],
        event_schema: types.UnionType | type[J],
        on_event: OnEvent[I, S],
        execute: Execute[S],
        on_idle: OnIdle[S] | None = None,
        on_error: OnError[S] | None = None,
        retry: Retry | None = None,
        logging: bool | int = False,
    ) -> TaskDefinition[S, I]: ...

    @staticmethod
    def make(  # noqa: PLR0917 - SPEC's signature: every argument may be positional
        state_schema: Any,
        event_schema: Any,
        on_event: Any,
        execute: Any,
        on_idle: Any = None,
        on_error: Any = None,
        retry: Retry | None = None,
        logging: bool | int = False,
    ) -> TaskDefinition[Any, Any]:
        """Define a Task job (see the module docstring for its semantics).

        ``event_schema`` may be a union of tagged msgspec Structs (``A | B``); the event
        type is then taken from ``on_event``'s annotation. Invalid arguments raise
        ``TypeError``/``ValueError`` naming the field.
        """
        state_codec = _schema_codec("state_schema", state_schema)
        event_codec = _schema_codec("event_schema", event_schema)
        _check_callable("on_event", on_event)
        _check_callable("execute", execute)
        _check_callable("on_idle", on_idle, optional=True)
        _check_callable("on_error", on_error, optional=True)
        given: object = retry
        if given is not None and not isinstance(given, Retry):
            raise TypeError(f"Task.make: retry must be a Retry or None, got {type(given).__name__}")
        try:
            level = _log.level_for(logging)
        except TypeError as exc:
            raise TypeError(f"Task.make: logging: {exc}") from None
        return TaskDefinition(
            state_schema=state_schema,
            event_schema=event_schema,
            on_event=on_event,
            execute=execute,
            on_idle=on_idle,
            on_error=on_error,
            retry=retry,
            logging=logging,
            state_codec=state_codec,
            event_codec=event_codec,
            level=level,
            runner=TaskRunner(state_codec=state_codec, on_idle=on_idle, on_error=on_error),
        )
