"""Continuous jobs: run ``execute`` on a schedule (``every`` or ``cron``), with durable state.

``Continuous.make(...)`` gives a ``ContinuousDefinition[S]``; its methods are the client
operations (``start``, ``trigger``, ``status``, ``get_state``, ``pause``, ``resume``,
``terminate``) and the alarm handler, each a function of an ``InstanceTx`` giving an Effect.

An instance keeps two records: ``state`` (the user's state, encoded with the user's schema)
and ``meta`` (status, run count, the next regular tick, the last run and error, a pending
retry). Its single alarm is at the pending retry if there is one, else at the next tick
(none while paused).

Ticks are anchored (no drift): when the alarm of tick ``t`` fires, the next tick is the one
after ``t`` on the schedule, not "now + interval". A tick is *missed* when its alarm fires
after the following tick has already passed; ``misfire`` then decides: ``run_once`` runs
once (``scheduled_at`` = the latest missed tick), ``skip`` runs nothing, ``run_all`` runs
every missed tick oldest first (one alarm each). Either way the job then waits for the first
future tick.

A run that fails has its state writes discarded. With ``retry``, the next attempt is an alarm
after the backoff (``attempt`` grows, ``run_count`` does not); when attempts run out,
``job.retryExhausted`` is emitted and the instance purged. Without ``retry`` the failure is
recorded (``last_error``, ``job.failed``) and the next tick stays scheduled. A ``start`` or
``trigger`` whose run fails unhandled fails with ``ExecutionError`` and writes nothing —
except a ``start`` with ``retry``, which creates the instance with the retry scheduled.
"""

from __future__ import annotations

import random
from collections.abc import Callable
from datetime import datetime
from typing import ClassVar, Generic, Literal, Never, TypeVar

import attrs

from durable_effect import _log
from durable_effect._backoff import Retry
from durable_effect._codec import Codec, codec_for, decode_json, encode_builtins
from durable_effect._duration import Duration, DurationInput
from durable_effect._effect import Effect
from durable_effect._events import JobExecuted, JobRetryExhausted, JobStarted
from durable_effect.errors import ExecutionError, ValidationError
from durable_effect.jobs._base import JobDefinition
from durable_effect.jobs._continuous_context import STATE_KEY, ContinuousContext
from durable_effect.jobs._continuous_results import (
    ContinuousGetStateResult,
    ContinuousPauseResult,
    ContinuousResumeResult,
    ContinuousStartResult,
    ContinuousStatusResult,
    ContinuousTerminateResult,
    ContinuousTriggerResult,
)
from durable_effect.jobs._continuous_state import (
    Attempt,
    Meta,
    PendingRetry,
    Run,
    cause_of,
    event_ids,
    failed_event,
    guarded,
    load_meta,
    save_meta,
    terminated_event,
)
from durable_effect.jobs._exec import Outcome, error_info, execution_error, run_user
from durable_effect.jobs._instance import InstanceTx
from durable_effect.jobs._schedule import Cron, Every, Schedule

__all__ = [
    "Continuous",
    "ContinuousContext",
    "ContinuousDefinition",
    "ContinuousGetStateResult",
    "ContinuousPauseResult",
    "ContinuousResumeResult",
    "ContinuousStartResult",
    "ContinuousStatusResult",
    "ContinuousTerminateResult",
    "ContinuousTriggerResult",
    "Cron",
    "Every",
    "Misfire",
    "Schedule",
]

S = TypeVar("S")

Misfire = Literal["run_once", "skip", "run_all"]
_MISFIRES: tuple[Misfire, ...] = ("run_once", "skip", "run_all")


# -- the definition ------------------------------------------------------------------------


def _check_schema(schema: object) -> Codec[object]:
    try:
        return codec_for(schema)
    except TypeError as exc:
        raise TypeError(f"Continuous.make: state_schema: {exc}") from None


@attrs.frozen(kw_only=True, eq=False)
class ContinuousDefinition(JobDefinition, Generic[S]):
    """A Continuous job (made by ``Continuous.make``); register it under a name."""

    job_type: ClassVar[str] = "continuous"

    state_schema: type[S]
    schedule: Schedule
    execute: Callable[[ContinuousContext[S]], Effect[None, BaseException]]
    start_immediately: bool = True
    retry: Retry | None = None
    logging: bool | int = False
    misfire: Misfire = "run_once"
    _codec: Codec[S] = attrs.field(init=False, repr=False)
    _rng: random.Random = attrs.field(init=False, repr=False, factory=random.Random)

    def __attrs_post_init__(self) -> None:
        codec: Codec[S] = codec_for(self.state_schema)
        object.__setattr__(self, "_codec", codec)

    @property
    def log_level(self) -> int:
        return _log.level_for(self.logging)

    # -- client operations -------------------------------------------------------------

    def start(
        self, tx: InstanceTx, input: S
    ) -> Effect[ContinuousStartResult, ValidationError | ExecutionError]:
        """Create the instance with ``input`` as its state and (by default) run it at once."""
        return Effect.suspend(lambda: self._start(tx, input))

    def trigger(
        self, tx: InstanceTx
    ) -> Effect[ContinuousTriggerResult, ValidationError | ExecutionError]:
        """Run execute now; the regular schedule is kept, a pending retry abandoned."""
        return Effect.suspend(lambda: self._trigger(tx))

    def status(self, tx: InstanceTx) -> Effect[ContinuousStatusResult, ValidationError]:
        """The instance's status, run count, next and last run, last error."""

        def build() -> Effect[ContinuousStatusResult, ValidationError]:
            meta = load_meta(tx)
            if meta is None:
                return Effect.succeed(ContinuousStatusResult(status="not_found"))
            return Effect.succeed(
                ContinuousStatusResult(
                    status=meta.status,
                    run_count=meta.run_count,
                    next_run_at=meta.alarm,
                    last_run_at=meta.last_run_at,
                    last_error=meta.last_error,
                )
            )

        return guarded(build)

    def get_state(self, tx: InstanceTx) -> Effect[ContinuousGetStateResult[S], ValidationError]:
        """The instance's state (validated), or None."""

        def build() -> Effect[ContinuousGetStateResult[S], ValidationError]:
            data = tx.get(STATE_KEY)
            state = None if data is None else self._codec.decode(data)
            return Effect.succeed(ContinuousGetStateResult(state=state))

        return guarded(build)

    def pause(self, tx: InstanceTx) -> Effect[ContinuousPauseResult, ValidationError]:
        """Stop the schedule (and drop a pending retry), keeping the state."""

        def build() -> Effect[ContinuousPauseResult, ValidationError]:
            meta = load_meta(tx)
            if meta is None:
                return Effect.succeed(ContinuousPauseResult(paused=False, status="not_found"))
            if meta.status == "paused":
                return Effect.succeed(ContinuousPauseResult(paused=False, status="paused"))
            save_meta(tx, attrs.evolve(meta, status="paused", retry=None))
            return Effect.succeed(ContinuousPauseResult(paused=True, status="paused"))

        return guarded(build)

    def resume(self, tx: InstanceTx) -> Effect[ContinuousResumeResult, ValidationError]:
        """Restart the schedule at its next future tick (paused time is not caught up)."""

        def build() -> Effect[ContinuousResumeResult, ValidationError]:
            meta = load_meta(tx)
            if meta is None:
                return Effect.succeed(ContinuousResumeResult(resumed=False, status="not_found"))
            if meta.status == "running":
                return Effect.succeed(ContinuousResumeResult(resumed=False, status="running"))
            tick = self.schedule.first_after(meta.next_run_at, tx.now())
            save_meta(tx, attrs.evolve(meta, status="running", next_run_at=tick))
            return Effect.succeed(ContinuousResumeResult(resumed=True, status="running"))

        return guarded(build)

    def terminate(
        self, tx: InstanceTx, reason: str | None = None
    ) -> Effect[ContinuousTerminateResult, Never]:
        """Cancel the alarm and delete everything; the id can start afresh."""

        def build() -> Effect[ContinuousTerminateResult, Never]:
            if not tx.exists:
                return Effect.succeed(
                    ContinuousTerminateResult(terminated=False, reason="not_found")
                )
            try:
                meta = load_meta(tx)
            except ValidationError:  # unreadable metadata must not make an instance immortal
                meta = None
            tx.purge()
            tx.emit(terminated_event(tx, reason, None if meta is None else meta.run_count))
            return Effect.succeed(ContinuousTerminateResult(terminated=True, reason=reason))

        return Effect.suspend(build)

    # -- the alarm -----------------------------------------------------------------------

    def on_alarm(self, tx: InstanceTx, due_at: datetime) -> Effect[None, Never]:
        """Run the due tick or retry (per ``misfire`` after downtime) and move the alarm."""
        return Effect.suspend(lambda: self._alarm(tx))

    # -- internals -----------------------------------------------------------------------

    def _start(
        self, tx: InstanceTx, input: S
    ) -> Effect[ContinuousStartResult, ValidationError | ExecutionError]:
        try:
            data = self._codec.encode(input)
            existing = load_meta(tx)
        except ValidationError as exc:
            return Effect.fail(exc)
        iid = tx.ref.instance_id
        if existing is not None:
            return Effect.succeed(
                ContinuousStartResult(created=False, instance_id=iid, status=existing.status)
            )
        now = tx.now()
        tx.put(STATE_KEY, data)
        started = JobStarted(**event_ids(tx))
        tx.emit(started)
        meta = Meta(
            status="running",
            run_count=0,
            next_run_at=self.schedule.first_tick(now),
            created_at=now,
        )
        if not self.start_immediately:
            save_meta(tx, meta)
            return Effect.succeed(
                ContinuousStartResult(created=True, instance_id=iid, status="running")
            )
        run = Run(run_count=1, attempt=1, scheduled_at=now, started_at=now, first_started_at=now)

        def settle(
            attempt: Attempt,
        ) -> Effect[ContinuousStartResult, ValidationError | ExecutionError]:
            if attempt.kind == "failed" and self._failure_decision(run, tx.now()) != "retry":
                _report_failure(tx, run, attempt, will_retry=False)
                tx.events.remove(started)  # nothing is written: the instance never existed
                return Effect.fail(execution_error(tx.ref, cause_of(attempt)))
            outcome = self._settle(tx, meta, run, attempt, meta.next_run_at)
            status: Literal["running", "terminated"] = (
                "terminated" if outcome == "terminated" else "running"
            )
            return Effect.succeed(
                ContinuousStartResult(created=True, instance_id=iid, status=status)
            )

        return self._attempt(tx, run).flat_map(settle)

    def _trigger(
        self, tx: InstanceTx
    ) -> Effect[ContinuousTriggerResult, ValidationError | ExecutionError]:
        try:
            meta = load_meta(tx)
        except ValidationError as exc:
            return Effect.fail(exc)
        if meta is None:
            return Effect.succeed(ContinuousTriggerResult(triggered=False, terminated=False))
        now = tx.now()
        run = Run(
            run_count=meta.run_count + 1,
            attempt=1,
            scheduled_at=now,
            started_at=now,
            first_started_at=now,
        )

        def settle(
            attempt: Attempt,
        ) -> Effect[ContinuousTriggerResult, ValidationError | ExecutionError]:
            if attempt.kind == "failed":
                _report_failure(tx, run, attempt, will_retry=False)
                return Effect.fail(execution_error(tx.ref, cause_of(attempt)))
            # A success clears a pending retry: the retried run is abandoned.
            outcome = self._settle(tx, meta, run, attempt, meta.next_run_at)
            return Effect.succeed(
                ContinuousTriggerResult(triggered=True, terminated=outcome == "terminated")
            )

        return self._attempt(tx, run).flat_map(settle)

    def _alarm(self, tx: InstanceTx) -> Effect[None, Never]:
        try:
            meta = load_meta(tx)
        except ValidationError as exc:
            tx.set_alarm(None)
            return Effect.log_error(f"unreadable Continuous metadata; alarm dropped: {exc}")
        now = tx.now()
        if meta is None or meta.status == "paused":
            tx.set_alarm(None)
            return Effect.succeed(None)
        if meta.retry is not None:
            pending = meta.retry
            if pending.at > now:  # never early
                tx.set_alarm(pending.at)
                return Effect.succeed(None)
            run = Run(
                run_count=meta.run_count,
                attempt=pending.attempt,
                scheduled_at=pending.scheduled_at,
                started_at=now,
                first_started_at=pending.first_started_at,
            )
            return self._run_alarm(tx, meta, run, meta.next_run_at)
        tick = meta.next_run_at
        if tick > now:  # never early
            tx.set_alarm(tick)
            return Effect.succeed(None)
        following = self.schedule.next_after(tick)
        if following > now or self.misfire == "run_all":
            scheduled_at, next_tick = tick, following
        elif self.misfire == "run_once":
            scheduled_at = self.schedule.last_at_or_before(tick, now)
            next_tick = self.schedule.first_after(tick, now)
        else:  # skip
            next_tick = self.schedule.first_after(tick, now)
            save_meta(tx, attrs.evolve(meta, next_run_at=next_tick))
            return Effect.log_info(
                "missed ticks skipped", missed_since=tick.isoformat(), next_run_at=next_tick
            )
        run = Run(
            run_count=meta.run_count + 1,
            attempt=1,
            scheduled_at=scheduled_at,
            started_at=now,
            first_started_at=now,
        )
        return self._run_alarm(tx, meta, run, next_tick)

    def _run_alarm(
        self, tx: InstanceTx, meta: Meta, run: Run, next_tick: datetime
    ) -> Effect[None, Never]:
        def settle(attempt: Attempt) -> None:
            self._settle(tx, meta, run, attempt, next_tick)

        return self._attempt(tx, run).map(settle)

    def _attempt(self, tx: InstanceTx, run: Run) -> Effect[Attempt, Never]:
        """Run execute once; a failed attempt's writes are rolled back."""
        pre_state = self._pre_state(tx)
        ctx = ContinuousContext(
            tx,
            self._codec,
            run_count=run.run_count,
            attempt=run.attempt,
            scheduled_at=run.scheduled_at,
        )
        point = tx.savepoint()
        execute = self.execute
        user: Effect[None, BaseException] = Effect.suspend(lambda: execute(ctx))

        def settle(outcome: Outcome[None]) -> Attempt:
            duration = Duration.millis(tx.now() - run.started_at)
            if ctx.terminated:
                return Attempt(
                    kind="terminated",
                    duration_ms=duration,
                    pre_state=pre_state,
                    reason=ctx.termination_reason,
                )
            if outcome.ok:
                return Attempt(kind="ok", duration_ms=duration, pre_state=pre_state)
            tx.rollback(point)
            return Attempt(
                kind="failed", duration_ms=duration, pre_state=pre_state, error=outcome.error
            )

        return run_user(user).map(settle)

    def _failure_decision(self, run: Run, now: datetime) -> Literal["retry", "exhausted", "record"]:
        if self.retry is None:
            return "record"
        if self.retry.should_retry(run.attempt, now - run.first_started_at):
            return "retry"
        return "exhausted"

    def _settle(
        self, tx: InstanceTx, meta: Meta, run: Run, attempt: Attempt, next_tick: datetime
    ) -> Literal["ok", "retry", "recorded", "exhausted", "terminated"]:
        """Write what an attempt's outcome means for the instance and emit its events."""
        if attempt.kind == "terminated":
            tx.purge()
            tx.emit(terminated_event(tx, attempt.reason, run.run_count))
            return "terminated"
        if attempt.kind == "ok":
            save_meta(tx, _after_run(meta, run, next_tick, last_error=None, retry=None))
            tx.emit(
                JobExecuted(
                    **event_ids(tx),
                    run_count=run.run_count,
                    attempt=run.attempt,
                    duration_ms=attempt.duration_ms,
                    pre_execution_state=attempt.pre_state,
                )
            )
            return "ok"
        now = tx.now()
        message = error_info(cause_of(attempt)).message
        decision = self._failure_decision(run, now)
        _report_failure(tx, run, attempt, will_retry=decision == "retry")
        if decision == "exhausted":
            tx.emit(JobRetryExhausted(**event_ids(tx), attempts=run.attempt, reason=message))
            tx.purge()
            return "exhausted"
        pending = None
        if decision == "retry" and self.retry is not None:
            pending = PendingRetry(
                attempt=run.attempt + 1,
                at=now + self.retry.delay_for(run.attempt, self._rng),
                scheduled_at=run.scheduled_at,
                first_started_at=run.first_started_at,
            )
        save_meta(tx, _after_run(meta, run, next_tick, last_error=message, retry=pending))
        return "retry" if pending is not None else "recorded"

    def _pre_state(self, tx: InstanceTx) -> object:
        data = tx.get(STATE_KEY)
        if data is None:
            return None
        try:
            return encode_builtins(self._codec.decode(data))
        except ValidationError:  # the run will fail reading it; report what is stored
            try:
                return decode_json(data)
            except ValidationError:
                return None


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


def _report_failure(tx: InstanceTx, run: Run, attempt: Attempt, *, will_retry: bool) -> None:
    """Emit ``job.failed`` and log the failure at ERROR (shown unless ``logging`` is silenced)."""
    event = failed_event(tx, run, attempt, will_retry=will_retry)
    tx.emit(event)
    _log.emit(
        _log.ERROR,
        "continuous run failed",
        {
            "run_count": run.run_count,
            "attempt": run.attempt,
            "will_retry": will_retry,
            "error": event.error.message,
        },
    )


# -- the namespace -------------------------------------------------------------------------


class Continuous:
    """Namespace of the Continuous job type: ``make``, ``every``, ``cron``."""

    __slots__ = ()

    @staticmethod
    def make(  # noqa: PLR0917 - SPEC's signature: state_schema, schedule, execute positional
        state_schema: type[S],
        schedule: Schedule,
        execute: Callable[[ContinuousContext[S]], Effect[None, BaseException]],
        start_immediately: bool = True,
        retry: Retry | None = None,
        logging: bool | int = False,
        misfire: Misfire = "run_once",
    ) -> ContinuousDefinition[S]:
        """Define a Continuous job; bad arguments raise ``TypeError``/``ValueError`` at once."""
        _check_schema(state_schema)
        given: object = schedule
        if not isinstance(given, Every | Cron):
            raise TypeError(
                "Continuous.make: schedule must be Continuous.every(...) or "
                f"Continuous.cron(...), got {given!r}"
            )
        if not callable(execute):
            raise TypeError(f"Continuous.make: execute must be callable, got {execute!r}")
        if not isinstance(start_immediately, bool):
            raise TypeError(
                f"Continuous.make: start_immediately must be a bool, got {start_immediately!r}"
            )
        given_retry: object = retry
        if given_retry is not None and not isinstance(given_retry, Retry):
            raise TypeError(f"Continuous.make: retry must be a Retry or None, got {retry!r}")
        try:
            _log.level_for(logging)
        except TypeError as exc:
            raise TypeError(f"Continuous.make: {exc}") from None
        if misfire not in _MISFIRES:
            raise ValueError(
                f"Continuous.make: misfire must be one of {', '.join(_MISFIRES)}, got {misfire!r}"
            )
        return ContinuousDefinition(
            state_schema=state_schema,
            schedule=schedule,
            execute=execute,
            start_immediately=start_immediately,
            retry=retry,
            logging=logging,
            misfire=misfire,
        )

    @staticmethod
    def every(duration: DurationInput) -> Every:
        """Run every ``duration`` (anything ``Duration.parse`` takes; must be positive)."""
        return Every.parse(duration)

    @staticmethod
    def cron(expr: str, tz: str = "UTC") -> Cron:
        """Run at a cron expression's fire times in ``tz`` (5 fields, or 6 seconds-first)."""
        return Cron.parse(expr, tz)
