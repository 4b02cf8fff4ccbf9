"""`DebounceDefinition`: the semantics of a Debounce job's client operations and alarm.

Each operation is an ``@Effect.gen`` program over one instance's ``InstanceTx``; the
runtime commits what it buffered if, and only if, it succeeds. The records it keeps
are described in ``durable_effect.jobs._debounce_records``; the alarm is the batch's flush
instant (or its retry), or the dedupe clean-up instant. See ``durable_effect.jobs._debounce``
for the behaviour users see.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime, timedelta
from typing import ClassVar, Generic, Never, TypeVar, cast

import attrs

from durable_effect._backoff import Retry
from durable_effect._codec import Codec, decode_json
from durable_effect._duration import Duration
from durable_effect._effect import Effect, Gen
from durable_effect._events import DebounceFlushed, DebounceStarted, JobFailed, JobRetryExhausted
from durable_effect._exit import Exit
from durable_effect.errors import DuplicateEventError, ExecutionError, ValidationError
from durable_effect.jobs._base import JobDefinition
from durable_effect.jobs._debounce_context import (
    DebounceContext,
    DebounceEventContext,
    FlushReason,
)
from durable_effect.jobs._debounce_records import (
    BATCH,
    STATE_KEY,
    BatchMeta,
    close_batch,
    keep_marks_only,
)
from durable_effect.jobs._debounce_results import (
    DebounceAddResult,
    DebounceClearResult,
    DebounceFlushResult,
    DebounceStateResult,
    DebounceStatusResult,
)
from durable_effect.jobs._dedupe import Dedupe
from durable_effect.jobs._exec import error_info, execution_error, run_user, validated
from durable_effect.jobs._index_keys import JobIndexer
from durable_effect.jobs._instance import InstanceTx, event_fields, validate_id
from durable_effect.jobs._records import Record

__all__ = ["DebounceDefinition", "Execute", "Reducer"]

S = TypeVar("S")
I = TypeVar("I")  # noqa: E741

Execute = Callable[[DebounceContext[S]], Effect[None, BaseException]]
Reducer = Callable[[DebounceEventContext[S, I]], Effect[S, BaseException]]


@attrs.frozen(kw_only=True, eq=False)
class DebounceDefinition(JobDefinition, Generic[S, I]):
    """A Debounce job (made by ``Debounce.make``); register it under a name.

    ``S`` is the state type, ``I`` the event type. The methods are the semantics of the
    client operations, each run by the runtime as one handler of one instance.
    """

    job_type: ClassVar[str] = "debounce"

    event_schema: object
    execute: Execute[S]
    flush_after: timedelta
    state_schema: object
    max_events: int | None
    idle_after: timedelta | None
    on_event: Reducer[S, I] | None
    retry: Retry | None
    logging: bool | int | None
    dedupe_window: timedelta
    _log_level: int
    _event_codec: Codec[I] = attrs.field(repr=False)
    _state_codec: Codec[S] = attrs.field(repr=False)
    _rng: random.Random = attrs.field(factory=random.Random, repr=False)
    _state_record: Record[S] = attrs.field(init=False, repr=False)
    _dedupe: Dedupe = attrs.field(init=False, repr=False)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_state_record", Record(STATE_KEY, self._state_codec))
        object.__setattr__(self, "_dedupe", Dedupe(self.dedupe_window))

    @property
    def log_level(self) -> int:
        return self._log_level

    def indexer(self, name: str) -> JobIndexer[BatchMeta]:
        """Instances listed by status, newest first (see ``_index_keys``)."""
        return JobIndexer(
            name,
            BATCH.key,
            BATCH.codec.decode,
            lambda batch, _alarm: ("debouncing", batch.started_at),
        )

    # -- the batch ------------------------------------------------------------------------

    def _state(self, tx: InstanceTx) -> S:
        state = self._state_record.load(tx)
        if state is None:
            raise ValidationError(
                schema=self._state_codec.name, message="the batch has no state", path="$"
            )
        return state

    def _due(self, batch: BatchMeta) -> datetime:
        """When the batch flushes: its retry, or min(first + flush_after, last + idle_after)."""
        if batch.retry_at is not None:
            return batch.retry_at
        cap = batch.started_at + self.flush_after
        if self.idle_after is None:
            return cap
        return min(cap, batch.last_event_at + self.idle_after)

    def _reason(self, batch: BatchMeta) -> FlushReason:
        if batch.retry_reason is not None:
            return cast(FlushReason, batch.retry_reason)
        cap = batch.started_at + self.flush_after
        if self.idle_after is not None and batch.last_event_at + self.idle_after < cap:
            return "idle"
        return "flush_after"

    def _failed(
        self, tx: InstanceTx, batch: BatchMeta, error: BaseException, *, will_retry: bool
    ) -> JobFailed:
        raw_state = tx.get(STATE_KEY)
        return JobFailed(
            **event_fields(tx),
            attempt=batch.attempt,
            error=error_info(error),
            will_retry=will_retry,
            pre_execution_state=None if raw_state is None else decode_json(raw_state),
        )

    # -- flushing -------------------------------------------------------------------------

    def _try_flush(
        self, tx: InstanceTx, batch: BatchMeta, reason: FlushReason
    ) -> Effect[Exit[None, BaseException], Never]:
        """Run ``execute`` over the batch; on success the batch is closed and reported."""
        ctx: DebounceContext[S] = DebounceContext(
            state=lambda: self._state(tx),
            event_count=lambda: batch.count,
            started_at=lambda: batch.started_at,
            flush_reason=reason,
            attempt=batch.attempt,
            instance_id=tx.ref.instance_id,
            id=tx.ref.id,
            job_name=tx.ref.job_name,
        )
        started = tx.now()

        def settle(exit_: Exit[None, BaseException]) -> Exit[None, BaseException]:
            if exit_.is_ok:
                close_batch(tx, self._dedupe)
                tx.emit(
                    DebounceFlushed(
                        **event_fields(tx),
                        event_count=batch.count,
                        reason=reason,
                        duration_ms=max(0, Duration.millis(tx.now() - started)),
                    )
                )
            return exit_

        return run_user(Effect.suspend(lambda: self.execute(ctx))).map(settle)

    def _record_failure(
        self,
        tx: InstanceTx,
        batch: BatchMeta,
        reason: FlushReason,
        error: BaseException,
        started: datetime,
    ) -> bool:
        """Keep the batch for another try (or drop it when retries ran out); True if kept."""
        now = tx.now()
        first = batch.first_try_at if batch.first_try_at is not None else started
        exhausted = (
            None if self.retry is None else self.retry.exhausted_by(batch.attempt, now - first)
        )
        if self.retry is None:
            retry_at: datetime | None = now + self.flush_after
        elif exhausted is None:
            retry_at = now + self.retry.delay_for(batch.attempt, self._rng)
        else:
            retry_at = None
        tx.emit(self._failed(tx, batch, error, will_retry=retry_at is not None))
        if exhausted is not None:
            tx.emit(
                JobRetryExhausted(
                    **event_fields(tx),
                    attempts=batch.attempt,
                    reason=exhausted,
                    error=error_info(error),
                )
            )
            close_batch(tx, self._dedupe)
            return False
        kept = attrs.evolve(
            batch,
            attempt=batch.attempt + 1,
            retry_at=retry_at,
            retry_reason=reason,
            first_try_at=first,
        )
        BATCH.save(tx, kept)
        tx.set_alarm(retry_at)
        return True

    # -- client operations ----------------------------------------------------------------

    @Effect.gen
    def add(
        self, tx: InstanceTx, event: object, event_id: object = None
    ) -> Gen[DebounceAddResult, ValidationError | DuplicateEventError | ExecutionError]:
        """Validate ``event``, reduce it into the batch, flush at ``max_events``."""
        value = yield from validated(lambda: self._event_codec.validate(event))
        key: str | None = None
        if event_id is not None:
            key = yield from validated(lambda: validate_id(event_id, field="event_id"))
        now = tx.now()
        marks = yield from validated(lambda: self._dedupe.live(tx, now))
        if key is not None and marks.seen(key):
            yield from DuplicateEventError(event_id=key)
        batch = yield from validated(lambda: BATCH.load(tx))
        state: S | None = None
        if batch is not None:
            state = yield from validated(lambda: self._state(tx))
        count = 1 if batch is None else batch.count + 1
        if self.on_event is None:
            new_state = cast(S, value)
        else:
            reducer = self.on_event
            ectx: DebounceEventContext[S, I] = DebounceEventContext(
                event=value,
                state=state,
                event_count=count,
                instance_id=tx.ref.instance_id,
                id=tx.ref.id,
                job_name=tx.ref.job_name,
            )
            reduced = yield from run_user(Effect.suspend(lambda: reducer(ectx)))
            if not reduced.is_ok:
                yield from execution_error(tx.ref, reduced.error)
            new_state = reduced.value
        encoded = yield from validated(lambda: self._state_codec.encode(new_state))

        # Everything is valid: write.
        tx.put(STATE_KEY, encoded)
        if key is not None:
            marks.remember(key)
        marks.write(tx)
        created = batch is None
        if batch is None:
            batch = BatchMeta(count=1, started_at=now, last_event_at=now)
            tx.emit(DebounceStarted(**event_fields(tx), flush_at=self._due(batch)))
        else:
            batch = attrs.evolve(batch, count=count, last_event_at=now)
        BATCH.save(tx, batch)
        tx.set_alarm(self._due(batch))
        if self.max_events is not None and count >= self.max_events and batch.retry_at is None:
            started = tx.now()
            tried = yield from self._try_flush(tx, batch, "max_events")
            if tried.is_ok:
                return DebounceAddResult(
                    created=created, event_count=count, will_flush_at=None, flushed=True
                )
            kept = self._record_failure(tx, batch, "max_events", tried.error, started)
            batch = BATCH.load(tx) if kept else None
            return DebounceAddResult(
                created=created,
                event_count=count,
                will_flush_at=None if batch is None else self._due(batch),
            )
        return DebounceAddResult(created=created, event_count=count, will_flush_at=self._due(batch))

    @Effect.gen
    def flush(self, tx: InstanceTx) -> Gen[DebounceFlushResult, ValidationError | ExecutionError]:
        """Run ``execute`` on the pending batch now (``reason="empty"`` if there is none)."""
        batch = yield from validated(lambda: BATCH.load(tx))
        if batch is None:
            return DebounceFlushResult(flushed=False, event_count=0, reason="empty")
        started = tx.now()
        tried = yield from self._try_flush(tx, batch, "manual")
        if tried.is_ok:
            return DebounceFlushResult(flushed=True, event_count=batch.count, reason="manual")
        if self.retry is None:
            # Nothing is written: the batch stays as it was, with its alarm.
            tx.emit(self._failed(tx, batch, tried.error, will_retry=True))
            yield from execution_error(tx.ref, tried.error)
        kept = self._record_failure(tx, batch, "manual", tried.error, started)
        return DebounceFlushResult(
            flushed=False, event_count=batch.count, reason="manual", retry_scheduled=kept
        )

    @Effect.gen
    def clear(self, tx: InstanceTx) -> Gen[DebounceClearResult, ValidationError]:
        """Drop the pending batch without running ``execute``."""
        batch = yield from validated(lambda: BATCH.load(tx))
        if batch is None:
            return DebounceClearResult(cleared=False, discarded_events=0)
        close_batch(tx, self._dedupe)
        return DebounceClearResult(cleared=True, discarded_events=batch.count)

    @Effect.gen
    def status(self, tx: InstanceTx) -> Gen[DebounceStatusResult, ValidationError]:
        """Whether a batch is pending, its size and timing."""
        batch = yield from validated(lambda: BATCH.load(tx))
        if batch is None:
            return DebounceStatusResult(
                status="not_found", event_count=0, started_at=None, will_flush_at=None
            )
        return DebounceStatusResult(
            status="debouncing",
            event_count=batch.count,
            started_at=batch.started_at,
            will_flush_at=self._due(batch),
        )

    @Effect.gen
    def get_state(self, tx: InstanceTx) -> Gen[DebounceStateResult[S], ValidationError]:
        """The pending batch's state (``None`` without one)."""
        batch = yield from validated(lambda: BATCH.load(tx))
        if batch is None:
            return DebounceStateResult(state=None)
        state = yield from validated(lambda: self._state(tx))
        return DebounceStateResult(state=state)

    # -- alarm ----------------------------------------------------------------------------

    @Effect.gen
    def on_alarm(self, tx: InstanceTx, due_at: datetime) -> Gen[None, Never]:
        """Flush the batch when it is due (or move the alarm where it belongs)."""
        now = tx.now()
        loaded = yield from validated(lambda: BATCH.load(tx)).either()
        if not loaded.is_ok:
            yield from Effect.log_error(
                "debounce batch record is unreadable", error=str(loaded.error)
            )
            tx.set_alarm(now + self.flush_after)
            return None
        batch = loaded.value
        if batch is None:  # only dedupe marks remain: prune them, or delete the instance
            keep_marks_only(tx, self._dedupe)
            return None
        due = self._due(batch)
        if now < due:  # not due yet (a stale alarm): move it where it belongs
            tx.set_alarm(due)
            return None
        reason = self._reason(batch)
        started = tx.now()
        tried = yield from self._try_flush(tx, batch, reason)
        if not tried.is_ok:
            self._record_failure(tx, batch, reason, tried.error, started)
        return None
