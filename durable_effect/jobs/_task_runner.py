"""Running a Task's handlers inside one client call or alarm: `TaskRunner`.

A call runs a *chain*: the main handler (``on_event`` or ``execute``), then ``on_idle`` if
nothing is scheduled afterwards. Each handler of the chain is *guarded*: if it fails, what it
wrote is rolled back to the savepoint taken before it, and ``on_error`` runs (its writes
commit). Each handler run is *settled* on its own: terminated (the instance is purged),
failed (rolled back), or succeeded (a schedule it set is reported as ``task.scheduled``;
``execute`` is reported as ``job.executed``).

What to do with a failure nothing handled — fail the client call, or retry the alarm — is
the caller's decision (``TaskDefinition``); ``unhandled`` drops the events of what was rolled
back and reports the failure.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import Any, Generic, Never, TypeAlias, TypeVar

import attrs

from durable_effect._codec import decode_json
from durable_effect._effect import Effect, Gen
from durable_effect._events import (
    Event,
    JobExecuted,
    JobFailed,
    JobTerminated,
    ScheduleTrigger,
    TaskScheduled,
)
from durable_effect._exit import Exit
from durable_effect.errors import ExecutionError, ValidationError
from durable_effect.jobs._exec import error_info, execution_error, failed, run_user, terminated
from durable_effect.jobs._instance import InstanceTx, event_fields
from durable_effect.jobs._records import Record
from durable_effect.jobs._task_context import (
    IdleReason,
    Phase,
    TaskContext,
    TaskErrorContext,
    TaskEventContext,
    TaskIdleContext,
    TaskSession,
)
from durable_effect.jobs._task_records import META, TaskMeta

__all__ = [
    "Ended",
    "Execute",
    "OnError",
    "OnEvent",
    "OnIdle",
    "TaskRunner",
]

S = TypeVar("S")
I = TypeVar("I")  # noqa: E741

OnEvent: TypeAlias = Callable[[I, TaskEventContext[S]], Effect[None, BaseException]]
Execute: TypeAlias = Callable[[TaskContext[S]], Effect[None, BaseException]]
OnIdle: TypeAlias = Callable[[TaskIdleContext[S]], Effect[None, BaseException]]
OnError: TypeAlias = Callable[[BaseException, TaskErrorContext[S]], Effect[None, BaseException]]
#: A handler applied to the session it runs in.
Build: TypeAlias = Callable[[TaskSession[S]], Effect[None, BaseException]]

_MS = timedelta(milliseconds=1)
#: ``task.scheduled.trigger``: the seed's name of the handler that set the schedule.
_TRIGGERS: dict[Phase, ScheduleTrigger] = {
    "on_event": "event",
    "execute": "execute",
    "on_idle": "idle",
    "on_error": "error",
}

#: How a handler (or a chain of them) ended: its ``Exit`` — a ``Terminate`` defect when it
#: terminated the instance (``_exec.terminated``).
Ended: TypeAlias = Exit[None, BaseException]


def _meta_or_none(tx: InstanceTx) -> TaskMeta | None:
    try:
        return META.load(tx)
    except ValidationError:
        return None


def _state_builtins(tx: InstanceTx, state: Record[Any]) -> object:
    data = tx.get(state.key)
    if data is None:
        return None
    try:
        return decode_json(data)
    except ValidationError:  # pragma: no cover - stored state is always valid JSON
        return None


@attrs.frozen(kw_only=True)
class TaskRunner(Generic[S]):
    """Runs handlers of one Task definition (see the module docstring)."""

    state: Record[S]
    on_idle: OnIdle[S] | None
    on_error: OnError[S] | None

    def chain(
        self,
        tx: InstanceTx,
        phase: Phase,
        build: Build[S],
        *,
        idle_reason: IdleReason,
        attempt: int,
    ) -> Effect[Ended]:
        """``phase`` (guarded), then ``on_idle`` (guarded) if nothing is scheduled after it."""
        if self.on_idle is None:  # nothing can follow: the chain is the guarded handler
            return self.guarded(tx, phase, build, attempt=attempt)
        return self._chain(tx, phase, build, idle_reason, attempt)

    def guarded(
        self, tx: InstanceTx, phase: Phase, build: Build[S], *, attempt: int
    ) -> Effect[Ended]:
        """Run one handler; if it fails (rolled back), ``on_error`` runs with the error."""
        if self.on_error is None:  # nothing handles a failure: the handler's own run
            return self.run_one(tx, phase, build, attempt=attempt)
        return self._guarded(tx, phase, build, attempt)

    # The generators of ``chain`` and ``guarded`` (decorated once, not on every call). Each
    # is skipped when it could only pass its handler's end on (no ``on_idle``/``on_error``).

    @Effect.gen
    def _chain(
        self, tx: InstanceTx, phase: Phase, build: Build[S], idle_reason: IdleReason, attempt: int
    ) -> Gen[Ended, Never]:
        end = yield from self.guarded(tx, phase, build, attempt=attempt)
        on_idle = self.on_idle
        if not end.is_ok or on_idle is None or tx.alarm_at is not None:
            return end

        def idle(session: TaskSession[S]) -> Effect[None, BaseException]:
            return on_idle(TaskIdleContext(session, idle_reason=idle_reason))

        return (yield from self.guarded(tx, "on_idle", idle, attempt=attempt))

    @Effect.gen
    def _guarded(
        self, tx: InstanceTx, phase: Phase, build: Build[S], attempt: int
    ) -> Gen[Ended, Never]:
        end = yield from self.run_one(tx, phase, build, attempt=attempt)
        on_error = self.on_error
        if not failed(end) or on_error is None:
            return end
        error = end.error
        self.emit_failed(tx, error, attempt=attempt, will_retry=False)

        def handle(session: TaskSession[S]) -> Effect[None, BaseException]:
            return on_error(error, TaskErrorContext(session, error_source=phase))

        return (yield from self.run_one(tx, "on_error", handle, attempt=attempt))

    def run_one(
        self, tx: InstanceTx, phase: Phase, build: Build[S], *, attempt: int
    ) -> Effect[Ended]:
        """Run one handler and settle what it did (commit, roll back, or terminate)."""
        session = TaskSession(tx, self.state, phase)
        point = tx.savepoint()
        # ``execute`` is reported (``job.executed``) with its duration and the state before it.
        started = tx.now() if phase == "execute" else None
        before = _state_builtins(tx, self.state) if phase == "execute" else None

        def settle(end: Ended) -> Ended:
            stop = terminated(end)
            if stop is not None:
                self.purge(tx, stop.reason, _meta_or_none(tx))
                return end
            if not end.is_ok:
                tx.rollback(point)
                return end
            if session.schedule_touched:
                self._schedule_changed(tx, phase)
            if started is not None:  # execute
                meta = META.load(tx)
                tx.emit(
                    JobExecuted(
                        **event_fields(tx),
                        run_count=None if meta is None else meta.execute_count,
                        attempt=attempt,
                        duration_ms=int((tx.now() - started) / _MS),
                        pre_execution_state=before,
                    )
                )
            return end

        return run_user(Effect.suspend(lambda: build(session)), session.termination).map(settle)

    def purge(self, tx: InstanceTx, reason: str | None, meta: TaskMeta | None) -> None:
        """Delete the instance (records and alarm) and report ``job.terminated`` (with the
        run count of ``meta``, its metadata when readable)."""
        tx.purge()
        tx.emit(
            JobTerminated(
                **event_fields(tx),
                reason=reason,
                run_count=None if meta is None else meta.execute_count,
            )
        )

    def unhandled(
        self, tx: InstanceTx, mark: int, end: Ended, *, attempt: int, will_retry: bool
    ) -> ExecutionError:
        """A failure nothing handled: drop the events of what was rolled back, report it.

        ``mark`` is ``len(tx.events)`` when the call's handlers started; the ``job.failed``
        events since then are kept (those failures happened).
        """
        kept: list[Event] = [e for e in tx.events[mark:] if isinstance(e, JobFailed)]
        del tx.events[mark:]
        tx.events.extend(kept)
        error = end.error
        self.emit_failed(tx, error, attempt=attempt, will_retry=will_retry)
        return execution_error(tx.ref, error)

    def emit_failed(
        self, tx: InstanceTx, error: BaseException, *, attempt: int, will_retry: bool
    ) -> None:
        """Report ``job.failed`` for ``error``."""
        meta = _meta_or_none(tx)
        tx.emit(
            JobFailed(
                **event_fields(tx),
                run_count=None if meta is None else meta.execute_count,
                attempt=attempt,
                error=error_info(error),
                will_retry=will_retry,
                pre_execution_state=_state_builtins(tx, self.state),
            )
        )

    def _schedule_changed(self, tx: InstanceTx, phase: Phase) -> None:
        meta = META.load(tx)
        if meta is not None and meta.retry_attempt:  # a new schedule replaces a pending retry
            META.save(tx, attrs.evolve(meta, retry_attempt=0, retry_started_at=None))
        at = tx.alarm_at
        if at is not None:
            tx.emit(TaskScheduled(**event_fields(tx), scheduled_at=at, trigger=_TRIGGERS[phase]))
