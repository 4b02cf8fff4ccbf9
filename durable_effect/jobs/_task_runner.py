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
from typing import Any, Generic, Literal, Never, TypeAlias, TypeVar

import attrs

from durable_effect._codec import Codec, decode_json
from durable_effect._effect import Effect, Gen
from durable_effect._events import (
    Event,
    JobExecuted,
    JobFailed,
    JobTerminated,
    TaskScheduled,
    new_event_id,
)
from durable_effect.errors import ExecutionError, ValidationError
from durable_effect.jobs._exec import Outcome, error_info, execution_error, run_user
from durable_effect.jobs._instance import InstanceTx
from durable_effect.jobs._task_context import (
    STATE_KEY,
    IdleReason,
    Phase,
    TaskContext,
    TaskErrorContext,
    TaskEventContext,
    TaskIdleContext,
    TaskMeta,
    TaskSession,
    load_meta,
    save_meta,
)

__all__ = [
    "OK",
    "End",
    "Execute",
    "OnError",
    "OnEvent",
    "OnIdle",
    "TaskRunner",
    "event_base",
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


@attrs.frozen(kw_only=True)
class End:
    """How a handler (or a chain of them) ended."""

    kind: Literal["ok", "failed", "terminated"]
    error: BaseException | None = None


OK = End(kind="ok")
_TERMINATED = End(kind="terminated")


def event_base(tx: InstanceTx) -> dict[str, Any]:
    """The fields every job event of this instance carries (timestamp: the runtime clock)."""
    ref = tx.ref
    return {
        "event_id": new_event_id(),
        "timestamp": tx.now(),
        "instance_id": ref.instance_id,
        "id": ref.id,
        "job_type": ref.job_type,
        "job_name": ref.job_name,
    }


def _meta_or_none(tx: InstanceTx) -> TaskMeta | None:
    try:
        return load_meta(tx)
    except ValidationError:
        return None


def _state_builtins(tx: InstanceTx) -> object:
    data = tx.get(STATE_KEY)
    if data is None:
        return None
    try:
        return decode_json(data)
    except ValidationError:  # pragma: no cover - stored state is always valid JSON
        return None


@attrs.frozen(kw_only=True)
class TaskRunner(Generic[S]):
    """Runs handlers of one Task definition (see the module docstring)."""

    state_codec: Codec[S]
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
    ) -> Effect[End]:
        """``phase`` (guarded), then ``on_idle`` (guarded) if nothing is scheduled after it."""
        if self.on_idle is None:  # nothing can follow: the chain is the guarded handler
            return self.guarded(tx, phase, build, attempt=attempt)
        return self._chain(tx, phase, build, idle_reason, attempt)

    def guarded(
        self, tx: InstanceTx, phase: Phase, build: Build[S], *, attempt: int
    ) -> Effect[End]:
        """Run one handler; if it fails (rolled back), ``on_error`` runs with the error."""
        if self.on_error is None:  # nothing handles a failure: the handler's own run
            return self.run_one(tx, phase, build, attempt=attempt)
        return self._guarded(tx, phase, build, attempt)

    # The generators of ``chain`` and ``guarded`` (decorated once, not on every call). Each
    # is skipped when it could only pass its handler's end on (no ``on_idle``/``on_error``).

    @Effect.gen
    def _chain(
        self, tx: InstanceTx, phase: Phase, build: Build[S], idle_reason: IdleReason, attempt: int
    ) -> Gen[End, Never]:
        end = yield from self.guarded(tx, phase, build, attempt=attempt)
        on_idle = self.on_idle
        if end.kind != "ok" or on_idle is None or tx.alarm_at is not None:
            return end

        def idle(session: TaskSession[S]) -> Effect[None, BaseException]:
            return on_idle(TaskIdleContext(session, idle_reason=idle_reason))

        return (yield from self.guarded(tx, "on_idle", idle, attempt=attempt))

    @Effect.gen
    def _guarded(
        self, tx: InstanceTx, phase: Phase, build: Build[S], attempt: int
    ) -> Gen[End, Never]:
        end = yield from self.run_one(tx, phase, build, attempt=attempt)
        on_error = self.on_error
        if end.kind != "failed" or on_error is None:
            return end
        error = end.error
        assert error is not None
        self.emit_failed(tx, error, attempt=attempt, will_retry=False)

        def handle(session: TaskSession[S]) -> Effect[None, BaseException]:
            return on_error(error, TaskErrorContext(session, error_source=phase))

        return (yield from self.run_one(tx, "on_error", handle, attempt=attempt))

    def run_one(
        self, tx: InstanceTx, phase: Phase, build: Build[S], *, attempt: int
    ) -> Effect[End]:
        """Run one handler and settle what it did (commit, roll back, or terminate)."""
        session = TaskSession(tx, self.state_codec, phase)
        point = tx.savepoint()
        # ``execute`` is reported (``job.executed``) with its duration and the state before it.
        started = tx.now() if phase == "execute" else None
        before = _state_builtins(tx) if phase == "execute" else None

        def settle(outcome: Outcome[None]) -> End:
            if session.terminated:
                self.purge(tx, session.terminated[0])
                return _TERMINATED
            if not outcome.ok:
                tx.rollback(point)
                return End(kind="failed", error=outcome.error)
            if session.schedule_touched:
                self._schedule_changed(tx, phase)
            if started is not None:  # execute
                meta = load_meta(tx)
                tx.emit(
                    JobExecuted(
                        **event_base(tx),
                        run_count=None if meta is None else meta.execute_count,
                        attempt=attempt,
                        duration_ms=int((tx.now() - started) / _MS),
                        pre_execution_state=before,
                    )
                )
            return OK

        return run_user(Effect.suspend(lambda: build(session))).map(settle)

    def purge(self, tx: InstanceTx, reason: str | None) -> None:
        """Delete the instance (records and alarm) and report ``job.terminated``."""
        meta = _meta_or_none(tx)
        tx.purge()
        tx.emit(
            JobTerminated(
                **event_base(tx),
                reason=reason,
                run_count=None if meta is None else meta.execute_count,
            )
        )

    def unhandled(
        self, tx: InstanceTx, mark: int, end: End, *, attempt: int, will_retry: bool
    ) -> ExecutionError:
        """A failure nothing handled: drop the events of what was rolled back, report it.

        ``mark`` is ``len(tx.events)`` when the call's handlers started; the ``job.failed``
        events since then are kept (those failures happened).
        """
        kept: list[Event] = [e for e in tx.events[mark:] if isinstance(e, JobFailed)]
        del tx.events[mark:]
        tx.events.extend(kept)
        error = end.error
        assert error is not None
        self.emit_failed(tx, error, attempt=attempt, will_retry=will_retry)
        return execution_error(tx.ref, error)

    def emit_failed(
        self, tx: InstanceTx, error: BaseException, *, attempt: int, will_retry: bool
    ) -> None:
        """Report ``job.failed`` for ``error``."""
        meta = _meta_or_none(tx)
        tx.emit(
            JobFailed(
                **event_base(tx),
                run_count=None if meta is None else meta.execute_count,
                attempt=attempt,
                error=error_info(error),
                will_retry=will_retry,
                pre_execution_state=_state_builtins(tx),
            )
        )

    def _schedule_changed(self, tx: InstanceTx, phase: Phase) -> None:
        meta = load_meta(tx)
        if meta is not None and meta.retry_attempt:  # a new schedule replaces a pending retry
            save_meta(tx, attrs.evolve(meta, retry_attempt=0, retry_started_at=None))
        at = tx.alarm_at
        if at is not None:
            tx.emit(TaskScheduled(**event_base(tx), scheduled_at=at, trigger=phase))
