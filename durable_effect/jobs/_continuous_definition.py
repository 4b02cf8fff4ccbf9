"""`ContinuousDefinition[S]`: the semantics of a Continuous job's client operations and alarm.

Each operation is an ``@Effect.gen`` program over one instance's ``InstanceTx``; the runtime
commits what it buffered if, and only if, it succeeds. The records are described in
``_continuous_records``; the behaviour users see in ``_continuous``.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from typing import ClassVar, Generic, Literal, Never, TypeVar

import attrs

from durable_effect import _log
from durable_effect._backoff import Retry
from durable_effect._codec import codec_for, decode_json, encode_builtins
from durable_effect._duration import Duration
from durable_effect._effect import Effect, Gen
from durable_effect._events import (
    ExhaustedBy,
    JobExecuted,
    JobFailed,
    JobRetryExhausted,
    JobStarted,
    JobTerminated,
)
from durable_effect._exit import Exit
from durable_effect.errors import ExecutionError, ValidationError
from durable_effect.jobs._base import JobDefinition
from durable_effect.jobs._continuous_context import ContinuousContext
from durable_effect.jobs._continuous_records import META, Meta, PendingRetry, Run, state_record
from durable_effect.jobs._continuous_results import (
    ContinuousGetStateResult,
    ContinuousPauseResult,
    ContinuousResumeResult,
    ContinuousStartResult,
    ContinuousStatusResult,
    ContinuousTerminateResult,
    ContinuousTriggerResult,
)
from durable_effect.jobs._continuous_schedule import Schedule
from durable_effect.jobs._exec import (
    error_info,
    execution_error,
    failed,
    run_user,
    terminated,
    validated,
)
from durable_effect.jobs._index_keys import JobIndexer
from durable_effect.jobs._instance import InstanceTx, event_fields
from durable_effect.jobs._records import Record

__all__ = ["ContinuousDefinition", "Misfire"]

S = TypeVar("S")

Misfire = Literal["run_once", "skip", "run_all"]
#: What a finished attempt means for the instance.
_Settled = Literal["ok", "retry", "recorded", "exhausted", "terminated"]


@attrs.frozen(kw_only=True, eq=False)
class ContinuousDefinition(JobDefinition, Generic[S]):
    """A Continuous job (made by ``Continuous.make``); register it under a name."""

    job_type: ClassVar[str] = "continuous"

    state_schema: type[S]
    schedule: Schedule
    execute: Callable[[ContinuousContext[S]], Effect[None, BaseException]]
    start_immediately: bool = True
    retry: Retry | None = None
    logging: bool | int | None = None
    misfire: Misfire = "run_once"
    _state: Record[S] = attrs.field(init=False, repr=False)
    _rng: random.Random = attrs.field(init=False, repr=False, factory=random.Random)

    def __attrs_post_init__(self) -> None:
        object.__setattr__(self, "_state", state_record(codec_for(self.state_schema)))

    @property
    def log_level(self) -> int:
        return _log.level_for(self.logging)

    def indexer(self, name: str) -> JobIndexer[Meta]:
        """Instances listed by status, newest first (see ``_index_keys``)."""
        return JobIndexer(
            name, META.key, META.codec.decode, lambda meta, _alarm: (meta.status, meta.created_at)
        )

    # -- client operations -------------------------------------------------------------

    @Effect.gen
    def start(
        self, tx: InstanceTx, input: S
    ) -> Gen[ContinuousStartResult, ValidationError | ExecutionError]:
        """Create the instance with ``input`` as its state and (by default) run it at once."""
        data = yield from validated(lambda: self._state.codec.encode(input))
        existing = yield from validated(lambda: META.load(tx))
        iid = tx.ref.instance_id
        if existing is not None:
            return ContinuousStartResult(created=False, instance_id=iid, status=existing.status)
        now = tx.now()
        tx.put(self._state.key, data)
        tx.emit(JobStarted(**event_fields(tx), input=decode_json(data)))
        meta = Meta(
            status="running",
            run_count=0,
            next_run_at=self.schedule.first_tick(now),
            created_at=now,
        )
        if not self.start_immediately:
            _store(tx, meta)
            return ContinuousStartResult(created=True, instance_id=iid, status="running")
        run = Run(run_count=1, attempt=1, scheduled_at=now, started_at=now, first_started_at=now)
        pre_state = self._pre_state(tx)
        exit_ = yield from self._attempt(tx, run)
        if failed(exit_) and self.retry is None:
            # Nothing is written (the instance never existed); its events are reported.
            _report_failure(tx, run, exit_.error, pre_state, will_retry=False)
            yield from execution_error(tx.ref, exit_.error)
        # With a retry policy the start returns as any failed run does: retried later, or
        # (attempts already spent: ``Retry(1)``) exhausted and purged.
        settled = self._settle(tx, meta, run, exit_, pre_state, next_tick=meta.next_run_at)
        status: Literal["running", "terminated"] = (
            "terminated" if settled in ("terminated", "exhausted") else "running"
        )
        return ContinuousStartResult(created=True, instance_id=iid, status=status)

    @Effect.gen
    def trigger(
        self, tx: InstanceTx
    ) -> Gen[ContinuousTriggerResult, ValidationError | ExecutionError]:
        """Run execute now; the regular schedule is kept, a pending retry abandoned."""
        meta = yield from validated(lambda: META.load(tx))
        if meta is None:
            return ContinuousTriggerResult(triggered=False, terminated=False)
        now = tx.now()
        run = Run(
            run_count=meta.run_count + 1,
            attempt=1,
            scheduled_at=now,
            started_at=now,
            first_started_at=now,
        )
        pre_state = self._pre_state(tx)
        exit_ = yield from self._attempt(tx, run)
        if failed(exit_):
            _report_failure(tx, run, exit_.error, pre_state, will_retry=False)
            yield from execution_error(tx.ref, exit_.error)
        # A success clears a pending retry: the retried run is abandoned.
        settled = self._settle(tx, meta, run, exit_, pre_state, next_tick=meta.next_run_at)
        return ContinuousTriggerResult(triggered=True, terminated=settled == "terminated")

    @Effect.gen
    def status(self, tx: InstanceTx) -> Gen[ContinuousStatusResult, ValidationError]:
        """The instance's status, run count, next and last run, last error."""
        meta = yield from validated(lambda: META.load(tx))
        if meta is None:
            return ContinuousStatusResult(status="not_found")
        return ContinuousStatusResult(
            status=meta.status,
            run_count=meta.run_count,
            next_run_at=meta.alarm,
            last_run_at=meta.last_run_at,
            last_error=meta.last_error,
        )

    @Effect.gen
    def get_state(self, tx: InstanceTx) -> Gen[ContinuousGetStateResult[S], ValidationError]:
        """The instance's state (validated), or None."""
        state = yield from validated(lambda: self._state.load(tx))
        return ContinuousGetStateResult(state=state)

    @Effect.gen
    def pause(self, tx: InstanceTx) -> Gen[ContinuousPauseResult, ValidationError]:
        """Stop the schedule (and drop a pending retry), keeping the state."""
        meta = yield from validated(lambda: META.load(tx))
        if meta is None:
            return ContinuousPauseResult(paused=False, status="not_found")
        if meta.status == "paused":
            return ContinuousPauseResult(paused=False, status="paused")
        _store(tx, attrs.evolve(meta, status="paused", retry=None))
        return ContinuousPauseResult(paused=True, status="paused")

    @Effect.gen
    def resume(self, tx: InstanceTx) -> Gen[ContinuousResumeResult, ValidationError]:
        """Restart the schedule at its next future tick (paused time is not caught up)."""
        meta = yield from validated(lambda: META.load(tx))
        if meta is None:
            return ContinuousResumeResult(resumed=False, status="not_found")
        if meta.status == "running":
            return ContinuousResumeResult(resumed=False, status="running")
        tick = self.schedule.first_after(meta.next_run_at, tx.now())
        _store(tx, attrs.evolve(meta, status="running", next_run_at=tick))
        return ContinuousResumeResult(resumed=True, status="running")

    @Effect.gen
    def terminate(
        self, tx: InstanceTx, reason: str | None = None
    ) -> Gen[ContinuousTerminateResult, Never]:
        """Cancel the alarm and delete everything; the id can start afresh."""
        if not tx.exists:
            return ContinuousTerminateResult(terminated=False, reason="not_found")
        # Unreadable metadata must not make an instance immortal.
        loaded = yield from validated(lambda: META.load(tx)).either()
        meta = loaded.value if loaded.is_ok else None
        tx.purge()
        tx.emit(_terminated_event(tx, reason, None if meta is None else meta.run_count))
        return ContinuousTerminateResult(terminated=True, reason=reason)

    # -- the alarm -----------------------------------------------------------------------

    @Effect.gen
    def on_alarm(self, tx: InstanceTx, due_at: datetime) -> Gen[None, Never]:
        """Run the due tick or retry (per ``misfire`` after downtime) and move the alarm."""
        loaded = yield from validated(lambda: META.load(tx)).either()
        if not loaded.is_ok:
            tx.set_alarm(None)
            yield from Effect.log_error(
                f"unreadable Continuous metadata; alarm dropped: {loaded.error}"
            )
            return None
        meta = loaded.value
        now = tx.now()
        if meta is None or meta.status == "paused":
            tx.set_alarm(None)
            return None
        if meta.retry is not None:
            pending = meta.retry
            if pending.at > now:  # never early
                tx.set_alarm(pending.at)
                return None
            run = Run(
                run_count=meta.run_count,
                attempt=pending.attempt,
                scheduled_at=pending.scheduled_at,
                started_at=now,
                first_started_at=pending.first_started_at,
            )
            yield from self._run_alarm(tx, meta, run, meta.next_run_at)
            return None
        tick = meta.next_run_at
        if tick > now:  # never early
            tx.set_alarm(tick)
            return None
        following = self.schedule.next_after(tick)
        if following > now or self.misfire == "run_all":
            scheduled_at, next_tick = tick, following
        elif self.misfire == "run_once":
            scheduled_at = self.schedule.last_at_or_before(tick, now)
            next_tick = self.schedule.first_after(tick, now)
        else:  # skip
            next_tick = self.schedule.first_after(tick, now)
            _store(tx, attrs.evolve(meta, next_run_at=next_tick))
            yield from Effect.log_info(
                "missed ticks skipped", missed_since=tick.isoformat(), next_run_at=next_tick
            )
            return None
        run = Run(
            run_count=meta.run_count + 1,
            attempt=1,
            scheduled_at=scheduled_at,
            started_at=now,
            first_started_at=now,
        )
        yield from self._run_alarm(tx, meta, run, next_tick)
        return None

    @Effect.gen
    def _run_alarm(
        self, tx: InstanceTx, meta: Meta, run: Run, next_tick: datetime
    ) -> Gen[None, Never]:
        pre_state = self._pre_state(tx)
        exit_ = yield from self._attempt(tx, run)
        self._settle(tx, meta, run, exit_, pre_state, next_tick=next_tick)
        return None

    # -- internals -----------------------------------------------------------------------

    @Effect.gen
    def _attempt(self, tx: InstanceTx, run: Run) -> Gen[Exit[None, BaseException], Never]:
        """Run execute once; a failed attempt's writes are rolled back."""
        ctx = ContinuousContext(
            tx,
            self._state,
            run_count=run.run_count,
            attempt=run.attempt,
            scheduled_at=run.scheduled_at,
        )
        point = tx.savepoint()
        execute = self.execute
        exit_ = yield from run_user(Effect.suspend(lambda: execute(ctx)), ctx.termination)
        if failed(exit_):
            tx.rollback(point)
        return exit_

    def _exhausted_by(self, run: Run, now: datetime) -> ExhaustedBy | None:
        """Which limit of ``retry`` (given) stops retrying ``run``; None: it is retried."""
        assert self.retry is not None
        return self.retry.exhausted_by(run.attempt, now - run.first_started_at)

    def _settle(
        self,
        tx: InstanceTx,
        meta: Meta,
        run: Run,
        exit_: Exit[None, BaseException],
        pre_state: object,
        *,
        next_tick: datetime,
    ) -> _Settled:
        """Write what an attempt's end means for the instance and emit its events."""
        stop = terminated(exit_)
        if stop is not None:
            tx.purge()
            tx.emit(_terminated_event(tx, stop.reason, run.run_count))
            return "terminated"
        if exit_.is_ok:
            _store(tx, _after_run(meta, run, next_tick, last_error=None, retry=None))
            tx.emit(
                JobExecuted(
                    **event_fields(tx),
                    run_count=run.run_count,
                    attempt=run.attempt,
                    duration_ms=Duration.millis(tx.now() - run.started_at),
                    pre_execution_state=pre_state,
                )
            )
            return "ok"
        now = tx.now()
        info = error_info(exit_.error)
        exhausted = None if self.retry is None else self._exhausted_by(run, now)
        will_retry = self.retry is not None and exhausted is None
        _report_failure(tx, run, exit_.error, pre_state, will_retry=will_retry)
        if exhausted is not None:
            tx.emit(
                JobRetryExhausted(
                    **event_fields(tx), attempts=run.attempt, reason=exhausted, error=info
                )
            )
            tx.purge()
            return "exhausted"
        pending = None
        if will_retry and self.retry is not None:
            pending = PendingRetry(
                attempt=run.attempt + 1,
                at=now + self.retry.delay_for(run.attempt, self._rng),
                scheduled_at=run.scheduled_at,
                first_started_at=run.first_started_at,
            )
        _store(tx, _after_run(meta, run, next_tick, last_error=info.message, retry=pending))
        return "retry" if pending is not None else "recorded"

    def _pre_state(self, tx: InstanceTx) -> object:
        data = tx.get(self._state.key)
        if data is None:
            return None
        try:
            return encode_builtins(self._state.codec.decode(data))
        except ValidationError:  # the run will fail reading it; report what is stored
            try:
                return decode_json(data)
            except ValidationError:
                return None


def _store(tx: InstanceTx, meta: Meta) -> None:
    """Write ``meta`` and move the alarm where it belongs."""
    META.save(tx, meta)
    tx.set_alarm(meta.alarm)


def _after_run(
    meta: Meta,
    run: Run,
    next_tick: datetime,
    *,
    last_error: str | None,
    retry: PendingRetry | None,
) -> Meta:
    """``meta`` once ``run`` has run: counted, the last run, ``next_tick`` next (one evolve)."""
    return attrs.evolve(
        meta,
        run_count=run.run_count,
        last_run_at=run.started_at,
        next_run_at=next_tick,
        last_error=last_error,
        retry=retry,
    )


def _terminated_event(tx: InstanceTx, reason: str | None, run_count: int | None) -> JobTerminated:
    return JobTerminated(**event_fields(tx), reason=reason, run_count=run_count)


def _report_failure(
    tx: InstanceTx,
    run: Run,
    error: BaseException,
    pre_state: object,
    *,
    will_retry: bool,
) -> None:
    """Emit ``job.failed`` (the runtime's failure log logs it, unless ``logging`` silences
    the job)."""
    event = JobFailed(
        **event_fields(tx),
        run_count=run.run_count,
        attempt=run.attempt,
        error=error_info(error),
        will_retry=will_retry,
        pre_execution_state=pre_state,
    )
    tx.emit(event)
