"""`TaskDefinition[S, I]`: the semantics of a Task job's client operations and alarm.

Each operation is an ``@Effect.gen`` program over one instance's ``InstanceTx``; the runtime
commits what it buffered if, and only if, it succeeds. Handlers run as chains
(``_task_runner``); the records are described in ``_task_records``; the behaviour users see
in ``_task``.
"""

from __future__ import annotations

from datetime import datetime, timedelta
from typing import ClassVar, Generic, Never, TypeVar

import attrs

from durable_effect import _log
from durable_effect._backoff import Backoff, Retry
from durable_effect._codec import Codec, encode_builtins
from durable_effect._effect import Effect, Gen
from durable_effect._events import JobRetryExhausted, JobStarted
from durable_effect.errors import DuplicateEventError, ExecutionError, ValidationError
from durable_effect.jobs._base import JobDefinition
from durable_effect.jobs._dedupe import Dedupe
from durable_effect.jobs._exec import error_info, failed, validated
from durable_effect.jobs._index_keys import JobIndexer
from durable_effect.jobs._instance import InstanceTx, Savepoint, event_fields, validate_id
from durable_effect.jobs._records import Record
from durable_effect.jobs._task_context import TaskContext, TaskEventContext, TaskSession
from durable_effect.jobs._task_records import META, TaskMeta
from durable_effect.jobs._task_results import (
    TaskGetStateResult,
    TaskSendResult,
    TaskStatusResult,
    TaskTerminateResult,
    TaskTriggerResult,
)
from durable_effect.jobs._task_runner import Ended, Execute, OnError, OnEvent, OnIdle, TaskRunner

__all__ = ["DEFAULT_ALARM_RETRY", "TaskDefinition"]

S = TypeVar("S")
I = TypeVar("I")  # noqa: E741

#: How an alarm whose handlers fail unhandled is retried when ``retry`` is not given: like a
#: Durable Object alarm, 2 s, 4 s, 8 s… for 6 retries (7 attempts in all).
DEFAULT_ALARM_RETRY = Retry(7, delay=Backoff.exponential("2 seconds"), jitter=False)


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
    logging: bool | int | None
    dedupe_window: timedelta
    state: Record[S] = attrs.field(repr=False)
    event_codec: Codec[I] = attrs.field(repr=False)
    level: int = attrs.field(repr=False)
    runner: TaskRunner[S] = attrs.field(repr=False)
    _dedupe: Dedupe = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_dedupe", Dedupe(self.dedupe_window))

    @property
    def log_level(self) -> int:
        return self.level

    def indexer(self, name: str) -> JobIndexer[TaskMeta]:
        """Instances listed by status, newest first (see ``_index_keys``)."""
        return JobIndexer(
            name,
            META.key,
            META.codec.decode,
            lambda meta, alarm: ("idle" if alarm is None else "active", meta.created_at),
            uses_alarm=True,
        )

    # -- client operations -------------------------------------------------------------------

    @Effect.gen
    def send(
        self, tx: InstanceTx, event: object, event_id: str | None
    ) -> Gen[TaskSendResult, ValidationError | DuplicateEventError | ExecutionError]:
        """Deliver ``event``: validate, count, ``on_event``, then ``on_idle`` if idle."""
        now = tx.now()
        value = yield from validated(lambda: self.event_codec.validate(event))
        if event_id is not None:
            yield from validated(lambda: validate_id(event_id, field="event_id"))
        meta = yield from validated(lambda: META.load(tx))
        marks = yield from validated(lambda: self._dedupe.live(tx, now))
        if event_id is not None and marks.seen(event_id):
            yield from DuplicateEventError(event_id=event_id)
        created = meta is None
        if meta is None:
            meta = TaskMeta(created_at=now)
        META.save(tx, attrs.evolve(meta, event_count=meta.event_count + 1))
        if event_id is not None:  # remembered (and the stale ones forgotten) only on commit
            marks.remember(event_id)
        marks.write(tx)
        if created:  # reported even if the send fails (nothing is written then)
            tx.emit(JobStarted(**event_fields(tx), input=encode_builtins(value)))
        mark = len(tx.events)

        def build(session: TaskSession[S]) -> Effect[None, BaseException]:
            return self.on_event(value, TaskEventContext(session, is_first_event=created))

        end = yield from self.runner.chain(tx, "on_event", build, idle_reason="on_event", attempt=1)
        if failed(end):
            yield from self.runner.unhandled(tx, mark, end, attempt=1, will_retry=False)
        return TaskSendResult(
            created=created, instance_id=tx.ref.instance_id, scheduled_at=tx.alarm_at
        )

    @Effect.gen
    def trigger(self, tx: InstanceTx) -> Gen[TaskTriggerResult, ValidationError | ExecutionError]:
        """Run ``execute`` now (``triggered=False`` when the instance does not exist)."""
        meta = yield from validated(lambda: META.load(tx))
        if meta is None:
            return TaskTriggerResult(triggered=False)
        if meta.retry_attempt:  # a pending alarm retry is abandoned: execute runs now instead
            tx.set_alarm(None)
        META.save(
            tx,
            attrs.evolve(
                meta, execute_count=meta.execute_count + 1, retry_attempt=0, retry_started_at=None
            ),
        )
        mark = len(tx.events)
        end = yield from self._execute_chain(tx, attempt=1)
        if failed(end):
            yield from self.runner.unhandled(tx, mark, end, attempt=1, will_retry=False)
        return TaskTriggerResult(triggered=True)

    @Effect.gen
    def status(self, tx: InstanceTx) -> Gen[TaskStatusResult, ValidationError]:
        """The instance's status and counters."""
        meta = yield from validated(lambda: META.load(tx))
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

    @Effect.gen
    def get_state(self, tx: InstanceTx) -> Gen[TaskGetStateResult[S], ValidationError]:
        """The instance's state, schedule and creation time."""
        meta = yield from validated(lambda: META.load(tx))
        state = yield from validated(lambda: self.state.load(tx))
        return TaskGetStateResult(
            state=state,
            scheduled_at=tx.alarm_at if meta is not None else None,
            created_at=None if meta is None else meta.created_at,
        )

    @Effect.gen
    def terminate(self, tx: InstanceTx) -> Gen[TaskTerminateResult, Never]:
        """Delete the instance (state, counters, schedule); ``terminated=False`` if absent."""
        if not tx.exists:
            return TaskTerminateResult(terminated=False)
        # Unreadable metadata must not make an instance immortal.
        loaded = yield from validated(lambda: META.load(tx)).either()
        self.runner.purge(tx, None, loaded.value if loaded.is_ok else None)
        return TaskTerminateResult(terminated=True)

    # -- the alarm -----------------------------------------------------------------------------

    @Effect.gen
    def on_alarm(self, tx: InstanceTx, due_at: datetime) -> Gen[None, Never]:
        """The schedule fired: clear it, run ``execute`` (then ``on_idle`` if idle)."""
        loaded = yield from validated(lambda: META.load(tx)).either()
        if not loaded.is_ok:
            _log.LOGGER.error(
                "%s: unreadable metadata, alarm dropped: %s", tx.instance_id, loaded.error
            )
            tx.set_alarm(None)
            return None
        meta = loaded.value
        tx.set_alarm(None)  # the schedule is cleared before execute runs (fix)
        if meta is None:  # a stale alarm of an instance that no longer exists
            return None
        now = tx.now()
        attempt = meta.retry_attempt + 1
        started = meta.retry_started_at if meta.retry_started_at is not None else now
        count = meta.execute_count + 1 if attempt == 1 else meta.execute_count
        META.save(
            tx, attrs.evolve(meta, execute_count=count, retry_attempt=0, retry_started_at=None)
        )
        point = tx.savepoint()
        mark = len(tx.events)
        end = yield from self._execute_chain(tx, attempt=attempt)
        if failed(end):
            self._retry_alarm(tx, point, mark, end, attempt=attempt, started=started)
        return None

    def _retry_alarm(
        self,
        tx: InstanceTx,
        point: Savepoint,
        mark: int,
        end: Ended,
        *,
        attempt: int,
        started: datetime,
    ) -> None:
        """An alarm's handlers failed unhandled: roll back, retry later or give up."""
        tx.rollback(point)
        policy = self.retry if self.retry is not None else DEFAULT_ALARM_RETRY
        current = META.load(tx)
        assert current is not None
        exhausted = policy.exhausted_by(attempt, tx.now() - started)
        self.runner.unhandled(tx, mark, end, attempt=attempt, will_retry=exhausted is None)
        if exhausted is None:
            tx.set_alarm(tx.now() + policy.delay_for(attempt))
            META.save(tx, attrs.evolve(current, retry_attempt=attempt, retry_started_at=started))
            return
        tx.emit(
            JobRetryExhausted(
                **event_fields(tx), attempts=attempt, reason=exhausted, error=error_info(end.error)
            )
        )

    def _execute_chain(self, tx: InstanceTx, *, attempt: int) -> Effect[Ended]:
        def build(session: TaskSession[S]) -> Effect[None, BaseException]:
            return self.execute(TaskContext(session))

        return self.runner.chain(tx, "execute", build, idle_reason="execute", attempt=attempt)
