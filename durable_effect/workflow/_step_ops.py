"""The step operations of an execution (``Step`` delegates to them): run or replay a step,
durable sleeps, progress reports, log lines."""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Any, Never

import attrs

from durable_effect import _log
from durable_effect._backoff import Retry
from durable_effect._codec import decode_json, encode_builtins
from durable_effect._duration import DurationInput
from durable_effect._effect import Effect
from durable_effect._interpreter import run_exit
from durable_effect.errors import RetryExhaustedError, ValidationError
from durable_effect.workflow import _runs
from durable_effect.workflow._events import (
    LogWritten,
    RunProgressed,
    StepCompleted,
    StepFailed,
    StepStarted,
)
from durable_effect.workflow._execution_base import (
    Attempt,
    ExecutionBase,
    Signal,
    Suspended,
    UserError,
    millis,
    stack_of,
    with_timeout,
)
from durable_effect.workflow._runs import LogRec, Progress, StepRec, error_text
from durable_effect.workflow._step import LogLevelName

__all__ = ["StepOps"]

_LEVELS = {"info": _log.INFO, "warn": _log.WARNING, "error": _log.ERROR}


class StepOps(ExecutionBase):
    """What ``Step`` asks of an execution (the ``StepRunner`` protocol)."""

    def _event_output(self, data: bytes) -> object:
        return decode_json(data)

    async def run_step(
        self,
        name: str,
        effect: Effect[Any, BaseException],
        schema: object,
        retry: Retry | None,
        timeout: DurationInput | None,
    ) -> Effect[Any, BaseException]:
        self._check_open(f"step {name!r}")
        rec = self.steps.get(name)
        if rec is not None and rec.status == "completed":
            assert rec.output is not None
            return Effect.succeed(
                _runs.decode_value(rec.output.encode("utf-8"), rec.output_type, schema)
            )
        tx = self.tx
        wake_at = rec.wake_at if rec is not None and rec.status == "retrying" else None
        if wake_at is not None and tx.now() < wake_at:
            self._sleep_run(wake_at)  # woken early: sleep on
        await self._announce()  # the effect runs next: the run must show it is leased
        now = tx.now()
        if rec is not None and rec.status == "retrying":
            at = Attempt(name, rec.index, rec.attempts + 1, rec.first_started_at, now)
        elif rec is not None:
            at = Attempt(name, rec.index, 1, now, now)
        else:
            at = Attempt(name, self.meta.next_index, 1, now, now)
            self._save(attrs.evolve(self.meta, next_index=at.index + 1))
        self.current = name
        self._save(attrs.evolve(self.meta, current_step=name))
        self._emit(
            StepStarted(**self._base(), step_name=name, step_index=at.index, attempt=at.number)
        )
        program = with_timeout(name, effect, timeout)
        self.busy = name
        try:
            with _log.annotate({"step": name}):
                exit_ = await run_exit(program)
        finally:
            self.busy = None
        if exit_.is_ok:
            return await self._step_done(at, exit_.value, schema)
        error = exit_.error
        if isinstance(error, Signal):
            raise error
        if isinstance(error, UserError):
            error = error.error
        return self._step_failed(at, error, defect=exit_.is_defect, retry=retry)

    async def _step_done(
        self, at: Attempt, value: object, schema: object
    ) -> Effect[Any, BaseException]:
        tx = self.tx
        name, index = at.name, at.index
        try:
            data, path = _runs.encode_value(value, schema)
            result = _runs.decode_value(data, path, schema)
        except (ValidationError, TypeError) as exc:
            self._record_failure(at, exc, will_retry=False)
            raise exc from None
        now = tx.now()
        rec = StepRec(
            name=name,
            index=index,
            status="completed",
            started_at=at.started,
            first_started_at=at.first,
            completed_at=now,
            attempts=at.number,
            output=data.decode("utf-8"),
            output_type=path,
        )
        point = tx.savepoint()
        mark = len(tx.events)
        self._put_step(rec)
        self._emit(
            StepCompleted(
                **self._base(),
                step_name=name,
                step_index=index,
                output=self._event_output(data),
                duration_ms=millis(now - at.started),
                attempt=at.number,
            )
        )
        await self._checkpoint_or_cancel(point, mark, name, index)
        self.steps[name] = rec
        self.current = None
        return Effect.succeed(result)

    def _record_failure(
        self,
        at: Attempt,
        error: BaseException,
        *,
        will_retry: bool,
        wake_at: datetime | None = None,
    ) -> None:
        text = error_text(error)
        rec = StepRec(
            name=at.name,
            index=at.index,
            status="retrying" if will_retry else "failed",
            started_at=at.started,
            first_started_at=at.first,
            completed_at=self.tx.now(),
            attempts=at.number,
            error=text,
            wake_at=wake_at,
        )
        self._put_step(rec)
        self.steps[at.name] = rec
        if not will_retry:
            self._save(attrs.evolve(self.meta, failed_step=at.name))
        self._emit(
            StepFailed(
                **self._base(),
                step_name=at.name,
                step_index=at.index,
                error=text,
                stack=stack_of(error),
                attempt=at.number,
                will_retry=will_retry,
            )
        )

    def _step_failed(
        self, at: Attempt, error: BaseException, *, defect: bool, retry: Retry | None
    ) -> Effect[Any, BaseException]:
        now = self.tx.now()
        if not defect and retry is not None and retry.should_retry(at.number, now - at.first):
            wake = now + retry.delay_for(at.number)
            self._record_failure(at, error, will_retry=True, wake_at=wake)
            self._sleep_run(wake)
        self._record_failure(at, error, will_retry=False)
        self.current = None
        if defect:
            raise error
        if retry is not None:
            return Effect.fail(
                RetryExhaustedError(attempts=at.number, last_error=error_text(error))
            )
        return Effect.fail(error)

    def _sleep_run(self, wake: datetime) -> Never:
        self._save(attrs.evolve(self.meta, status="sleeping"))
        self.tx.set_alarm(wake)
        self._raise(Suspended())

    async def sleep_step(self, name: str, wake: Callable[[datetime], datetime]) -> None:
        self._check_open(f"sleep {name!r}")
        rec = self.steps.get(name)
        if rec is not None and rec.status == "completed":
            return
        now = self.tx.now()
        if rec is None or rec.wake_at is None:
            index = rec.index if rec is not None else self.meta.next_index
            if rec is None:
                self._save(attrs.evolve(self.meta, next_index=index + 1))
            rec = StepRec(
                name=name,
                index=index,
                status="sleeping",
                started_at=now,
                first_started_at=now,
                wake_at=wake(now),
            )
            self._put_step(rec)
            self.steps[name] = rec
            self._emit(StepStarted(**self._base(), step_name=name, step_index=index))
        assert rec.wake_at is not None
        self.current = name
        self._save(attrs.evolve(self.meta, current_step=name))
        if now < rec.wake_at:
            self._sleep_run(rec.wake_at)
        done = attrs.evolve(rec, status="completed", completed_at=now, output="null")
        point = self.tx.savepoint()
        mark = len(self.tx.events)
        self._put_step(done)
        self._emit(
            StepCompleted(
                **self._base(),
                step_name=name,
                step_index=rec.index,
                duration_ms=millis(now - rec.started_at),
            )
        )
        await self._checkpoint_or_cancel(point, mark, name, rec.index)
        self.steps[name] = done
        self.current = None

    async def report_progress(self, current: int, total: int | None, message: str | None) -> None:
        self._check_open("step.progress", inside_step=True)
        first = self.unstarted is not None  # the execution's first checkpoint: guarded
        point, mark = (self.tx.savepoint(), len(self.tx.events)) if first else (None, 0)
        progress = Progress(current=current, total=total, message=message)
        if self.busy is None:  # outside a step: an earlier execution may have done it
            seen = self.outside_progress
            self.outside_progress += 1
            if seen < self.meta.outside_progress:
                return
            self._save(attrs.evolve(self.meta, outside_progress=seen + 1))
        self._save(attrs.evolve(self.meta, progress=progress))
        self._emit(RunProgressed(**self._base(), progress=progress))
        if point is not None:
            await self._checkpoint_or_cancel(point, mark, None, None)
        else:
            await self._checkpoint()

    def write_log(self, level: LogLevelName, message: str, data: dict[str, object]) -> None:
        if self.signal is not None:
            raise self.signal
        if self.busy is None:  # outside a step: an earlier execution may have written it
            seen = self.outside_logs
            self.outside_logs += 1
            if seen < self.meta.outside_logs:
                return
            self._save(attrs.evolve(self.meta, outside_logs=seen + 1))
        try:
            payload = encode_builtins(data)
        except ValidationError:
            payload = {k: repr(v) for k, v in data.items()}
        fields: dict[str, object] = payload if isinstance(payload, dict) else {}
        seq = self.meta.log_seq
        rec = LogRec(at=self.tx.now(), level=level, message=message, step=self.busy, data=fields)
        self.tx.put(_runs.log_key(seq), _runs.LOG_CODEC.encode(rec))
        self._save(attrs.evolve(self.meta, log_seq=seq + 1))
        self._emit(
            LogWritten(
                **self._base(), level=level, message=message, step_name=self.busy, data=fields
            )
        )
        annotations: dict[str, object] = {"run_id": self.run_id}
        if self.busy is not None:
            annotations["step"] = self.busy
        with _log.annotate(annotations):
            _log.emit(_LEVELS[level], message, fields)
