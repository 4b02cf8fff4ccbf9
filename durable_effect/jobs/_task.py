"""Task jobs: user-controlled state machines driven by events and one durable alarm.

``Task.make(state_schema, event_schema, on_event, execute, on_idle=None, on_error=None,
retry=None, logging=None, dedupe_window="24 hours")`` builds a ``TaskDefinition[S, I]``
(``_task_definition``). Its semantics:

* ``send(event)`` validates the event (nothing is written if it does not fit), counts it,
  runs ``on_event(event, ctx)``, then ``on_idle`` (``idle_reason="on_event"``) if nothing is
  scheduled afterwards. An ``event_id`` already applied to the instance (remembered for
  ``dedupe_window``, 24 hours by default) fails with ``DuplicateEventError`` and nothing is
  applied.
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

Records: ``meta``, ``state`` and ``dedupe`` (``_task_records``). The alarm is the schedule.
"""

from __future__ import annotations

import types
from typing import Any, TypeVar, overload

from durable_effect._backoff import Retry
from durable_effect._duration import DurationInput
from durable_effect.jobs._checks import Checks
from durable_effect.jobs._dedupe import DEFAULT_DEDUPE_WINDOW
from durable_effect.jobs._task_definition import DEFAULT_ALARM_RETRY, TaskDefinition
from durable_effect.jobs._task_records import state_record
from durable_effect.jobs._task_results import (
    TaskGetStateResult,
    TaskSendResult,
    TaskStatusResult,
    TaskTerminateResult,
    TaskTriggerResult,
)
from durable_effect.jobs._task_runner import Execute, OnError, OnEvent, OnIdle, TaskRunner

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

#: How long an ``event_id`` is remembered per instance by default (``dedupe_window``).
DEDUPE_WINDOW = DEFAULT_DEDUPE_WINDOW


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
        logging: bool | int | None = None,
        dedupe_window: DurationInput = "24 hours",
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
        logging: bool | int | None = None,
        dedupe_window: DurationInput = "24 hours",
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
        logging: bool | int | None = None,
        dedupe_window: DurationInput = "24 hours",
    ) -> TaskDefinition[Any, Any]:
        """Define a Task job (see the module docstring for its semantics).

        ``event_schema`` may be a union of tagged msgspec Structs (``A | B``); the event
        type is then taken from ``on_event``'s annotation. An ``event_id`` is remembered for
        ``dedupe_window``. Invalid arguments raise ``TypeError``/``ValueError`` naming the
        field.
        """
        check = Checks("Task.make")
        state = state_record(check.schema("state_schema", state_schema))
        event_codec = check.schema("event_schema", event_schema)
        check.callable("on_event", on_event)
        check.callable("execute", execute)
        check.callable("on_idle", on_idle, optional=True)
        check.callable("on_error", on_error, optional=True)
        check.retry(retry)
        level = check.logging(logging)
        window = check.positive_duration("dedupe_window", dedupe_window)
        return TaskDefinition(
            state_schema=state_schema,
            event_schema=event_schema,
            on_event=on_event,
            execute=execute,
            on_idle=on_idle,
            on_error=on_error,
            retry=retry,
            logging=logging,
            dedupe_window=window,
            state=state,
            event_codec=event_codec,
            level=level,
            runner=TaskRunner(state=state, on_idle=on_idle, on_error=on_error),
        )
