"""`StepRunner`: what ``Step`` asks of an execution — run or replay a step, durable sleeps,
progress reports and log lines.

* **run or replay**: a step whose record is ``completed`` returns its stored value
  (decoded, the same on every execution); otherwise its effect runs once — under the step's
  ``timeout`` — and its result is committed at a step boundary before it is returned. A
  failed attempt with ``retry`` left is recorded ``retrying`` and the run sleeps until the
  next attempt (a durable retry); with none left it fails with ``RetryExhaustedError``.
* **sleeps** are steps too: the first execution records the wake time and suspends the run;
  the execution at (or after) that time completes the step.
* ``step.progress`` is committed at once; ``step.log`` lines go with the next checkpoint.
  Calls made *outside* steps are counted, so a re-execution skips the ones an earlier
  execution already committed.

Every step reaches the run's records through ``RunState`` and commits through
``Checkpoints``; every step kind first takes its position in the replay check
(``_versions``: ``Versions.reach``), which also answers ``step.patched``.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, Never, Protocol

import attrs

from durable_effect import _log
from durable_effect._backoff import Retry
from durable_effect._codec import Codec, decode_json, encode_builtins
from durable_effect._duration import Duration, DurationInput
from durable_effect._effect import Effect
from durable_effect._interpreter import run_exit
from durable_effect.errors import (
    RetryExhaustedError,
    StepTimeoutError,
    TimeoutException,
    ValidationError,
)
from durable_effect.workflow._checkpoint import Checkpoints
from durable_effect.workflow._children import ChildRuns
from durable_effect.workflow._events import (
    LogWritten,
    RunProgressed,
    StepCompleted,
    StepFailed,
    StepStarted,
)
from durable_effect.workflow._failures import ErrorClasses
from durable_effect.workflow._records import LOG_CODEC, LogRec, StepRec, log_key
from durable_effect.workflow._results import Progress
from durable_effect.workflow._run_state import (
    RunState,
    Signal,
    millis,
    stack_of,
)
from durable_effect.workflow._step import LogLevelName
from durable_effect.workflow._values import (
    KnownTypes,
    UnknownType,
    decode_value,
    encode_value,
    error_text,
)
from durable_effect.workflow._versions import Versions
from durable_effect.workflow._waits import EventWaits

__all__ = ["StepAttempt", "StepRunner", "StepTypes"]

_LEVELS = {"info": _log.INFO, "warn": _log.WARNING, "error": _log.ERROR}


@attrs.frozen
class StepAttempt:
    """One attempt of a step: its name and index, attempt number, first and own start."""

    name: str
    index: int
    number: int
    first: datetime
    started: datetime


class UserError(Exception):
    """Wraps a step effect's typed failure so that only *our* timeout is a timeout."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error


def with_timeout(
    name: str, effect: Effect[Any, BaseException], timeout: DurationInput | None
) -> Effect[Any, BaseException]:
    """``effect`` failing with ``StepTimeoutError`` after ``timeout`` (none: unchanged)."""
    if timeout is None:
        return effect
    delay = Duration.parse(timeout)
    limit_ms = millis(delay)

    def wrap(error: BaseException) -> BaseException:
        return UserError(error)

    def unwrap(error: BaseException) -> BaseException:
        if isinstance(error, UserError):
            return error.error
        if isinstance(error, TimeoutException):
            return StepTimeoutError(step=name, timeout_ms=limit_ms)
        return error

    return effect.map_error(wrap).timeout(delay).map_error(unwrap)


class StepTypes(Protocol):
    """What the steps need of the workflow's declared types (the definition gives it)."""

    @property
    def known(self) -> KnownTypes:
        """The classes a stored type name may name."""
        ...

    @property
    def errors(self) -> ErrorClasses:
        """The errors that read back as themselves."""
        ...

    @property
    def event_codec(self) -> Codec[Any]:
        """Decodes the events sent to a run."""
        ...

    @property
    def event_classes(self) -> tuple[type, ...]:
        """The classes of ``event_schema`` (what ``wait_for_event(schema=...)`` may name)."""
        ...


class StepRunner:
    """The step operations of one execution (the ``StepOps`` that ``Step`` calls)."""

    def __init__(self, state: RunState, checkpoints: Checkpoints, types: StepTypes) -> None:
        self.state = state
        self.checkpoints = checkpoints
        self.known = types.known
        self.errors = types.errors
        self.versions = Versions(state)
        self.children = ChildRuns(state, checkpoints)
        self.waits = EventWaits(state, checkpoints, types.event_codec, types.event_classes)
        self.run_id = state.run_id
        self.workflow = state.workflow
        # Calls of step.log / step.progress outside steps in this execution (see RunMeta).
        self.outside_logs = 0
        self.outside_progress = 0

    @property
    def attempt(self) -> int:
        return self.state.attempt

    async def run_step(
        self,
        name: str,
        effect: Effect[Any, BaseException],
        schema: object,
        retry: Retry | None,
        timeout: DurationInput | None,
    ) -> Effect[Any, BaseException]:
        state = self.state
        state.check_open(f"step {name!r}")
        self.versions.reach(name)
        rec = state.steps.get(name)
        if rec is not None and rec.status == "completed":
            assert rec.output is not None
            return Effect.succeed(self._replayed(rec, schema))
        state.check_deadline()
        tx = state.tx
        wake_at = rec.wake_at if rec is not None and rec.status == "retrying" else None
        if wake_at is not None and tx.now() < wake_at:
            self._sleep_run(wake_at)  # woken early: sleep on
        await self.checkpoints.announce()  # the effect runs next: the run must show it is leased
        now = tx.now()
        if rec is not None and rec.status == "retrying":
            at = StepAttempt(name, rec.index, rec.attempts + 1, rec.first_started_at, now)
        elif rec is not None:
            at = StepAttempt(name, rec.index, 1, now, now)
        else:
            at = StepAttempt(name, state.meta.next_index, 1, now, now)
            state.evolve(next_index=at.index + 1)
        state.current = name
        state.evolve(current_step=name)
        state.emit(
            StepStarted(**state.fields(), step_name=name, step_index=at.index, attempt=at.number)
        )
        program = with_timeout(name, effect, timeout)
        state.busy = name
        try:
            with _log.annotate({"step": name}):
                exit_ = await run_exit(program)
        finally:
            state.busy = None
        if exit_.is_ok:
            return await self._step_done(at, exit_.value, schema)
        error = exit_.error
        if isinstance(error, Signal):
            raise error
        if isinstance(error, UserError):
            error = error.error
        return self._step_failed(at, error, defect=exit_.is_defect, retry=retry)

    def _replayed(self, rec: StepRec, schema: object) -> object:
        """A completed step's stored value, decoded (as on its first run)."""
        assert rec.output is not None
        try:
            return decode_value(rec.output.encode("utf-8"), rec.output_type, schema, self.known)
        except UnknownType as exc:
            raise TypeError(f"step {rec.name!r} cannot be replayed: {exc}") from None

    async def _step_done(
        self, at: StepAttempt, value: object, schema: object
    ) -> Effect[Any, BaseException]:
        state = self.state
        tx = state.tx
        name, index = at.name, at.index
        try:
            data, path = encode_value(value, schema, self.known)
            result = decode_value(data, path, schema, self.known)
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
        mark = state.mark()
        state.put_step(rec)
        state.emit(
            StepCompleted(
                **state.fields(),
                step_name=name,
                step_index=index,
                output=decode_json(data),
                duration_ms=millis(now - at.started),
                attempt=at.number,
            )
        )
        await self.checkpoints.commit_or_cancel(mark, name, index)
        state.steps[name] = rec
        state.current = None
        return Effect.succeed(result)

    def _record_failure(
        self,
        at: StepAttempt,
        error: BaseException,
        *,
        will_retry: bool,
        wake_at: datetime | None = None,
    ) -> None:
        state = self.state
        text = error_text(error)
        rec = StepRec(
            name=at.name,
            index=at.index,
            status="retrying" if will_retry else "failed",
            started_at=at.started,
            first_started_at=at.first,
            completed_at=state.tx.now(),
            attempts=at.number,
            error=text,
            wake_at=wake_at,
        )
        state.put_step(rec)
        state.steps[at.name] = rec
        if not will_retry:
            state.evolve(failed_step=at.name)
        state.emit(
            StepFailed(
                **state.fields(),
                step_name=at.name,
                step_index=at.index,
                error=text,
                stack=stack_of(error),
                attempt=at.number,
                will_retry=will_retry,
            )
        )

    def _step_failed(
        self, at: StepAttempt, error: BaseException, *, defect: bool, retry: Retry | None
    ) -> Effect[Any, BaseException]:
        state = self.state
        now = state.tx.now()
        if not defect and retry is not None and retry.should_retry(at.number, now - at.first):
            wake = now + retry.delay_for(at.number)
            self._record_failure(at, error, will_retry=True, wake_at=wake)
            self._sleep_run(wake)
        self._record_failure(at, error, will_retry=False)
        state.current = None
        if defect:
            raise error
        if retry is not None:
            last = self.errors.last_error(error)
            return Effect.fail(RetryExhaustedError(attempts=at.number, last_error=last))
        return Effect.fail(error)

    def _sleep_run(self, wake: datetime | None) -> Never:
        self.state.suspend(wake)

    async def sleep_step(self, name: str, wake: Callable[[datetime], datetime]) -> None:
        state = self.state
        state.check_open(f"sleep {name!r}")
        self.versions.reach(name)
        rec = state.steps.get(name)
        if rec is not None and rec.status == "completed":
            return
        state.check_deadline()
        now = state.tx.now()
        if rec is None or rec.wake_at is None:
            index = rec.index if rec is not None else state.meta.next_index
            if rec is None:
                state.evolve(next_index=index + 1)
            rec = StepRec(
                name=name,
                index=index,
                status="sleeping",
                started_at=now,
                first_started_at=now,
                wake_at=wake(now),
            )
            state.put_step(rec)
            state.steps[name] = rec
            state.emit(StepStarted(**state.fields(), step_name=name, step_index=index))
        assert rec.wake_at is not None
        state.current = name
        state.evolve(current_step=name)
        if now < rec.wake_at:
            self._sleep_run(rec.wake_at)
        done = attrs.evolve(rec, status="completed", completed_at=now, output="null")
        mark = state.mark()
        state.put_step(done)
        state.emit(
            StepCompleted(
                **state.fields(),
                step_name=name,
                step_index=rec.index,
                duration_ms=millis(now - rec.started_at),
            )
        )
        await self.checkpoints.commit_or_cancel(mark, name, rec.index)
        state.steps[name] = done
        state.current = None

    def patched(self, name: str) -> bool:
        return self.versions.patched(name)

    async def child_step(
        self,
        name: str,
        workflow: object,
        value: object,
        idempotency_key: str | None,
        labels: Mapping[str, str] | None,
        *,
        wait: bool,
    ) -> Effect[Any, BaseException]:
        self.state.check_open(f"{'run' if wait else 'start'}_workflow {name!r}")
        self.versions.reach(name)
        return await self.children.step(name, workflow, value, idempotency_key, labels, wait=wait)

    async def wait_step(self, name: str, schema: type | None, timeout: timedelta | None) -> object:
        self.state.check_open(f"wait_for_event {name!r}")
        self.versions.reach(name)
        return await self.waits.wait(name, schema, timeout)

    async def report_progress(self, current: int, total: int | None, message: str | None) -> None:
        state = self.state
        state.check_open("step.progress", inside_step=True)
        # The execution's first checkpoint is guarded (a cancel may be waiting).
        mark = state.mark() if self.checkpoints.unstarted is not None else None
        progress = Progress(current=current, total=total, message=message)
        if state.busy is None:  # outside a step: an earlier execution may have done it
            seen = self.outside_progress
            self.outside_progress += 1
            if seen < state.meta.outside_progress:
                return
            state.evolve(outside_progress=seen + 1)
        state.evolve(progress=progress)
        state.emit(RunProgressed(**state.fields(), progress=progress))
        if mark is not None:
            await self.checkpoints.commit_or_cancel(mark, None, None)
        else:
            await self.checkpoints.commit()

    def write_log(self, level: LogLevelName, message: str, data: dict[str, object]) -> None:
        state = self.state
        if state.signal is not None:
            raise state.signal
        if state.busy is None:  # outside a step: an earlier execution may have written it
            seen = self.outside_logs
            self.outside_logs += 1
            if seen < state.meta.outside_logs:
                return
            state.evolve(outside_logs=seen + 1)
        try:
            payload = encode_builtins(data)
        except ValidationError:
            payload = {k: repr(v) for k, v in data.items()}
        fields: dict[str, object] = payload if isinstance(payload, dict) else {}
        seq = state.meta.log_seq
        rec = LogRec(at=state.tx.now(), level=level, message=message, step=state.busy, data=fields)
        state.tx.put(log_key(seq), LOG_CODEC.encode(rec))
        state.evolve(log_seq=seq + 1)
        state.emit(
            LogWritten(
                **state.fields(), level=level, message=message, step_name=state.busy, data=fields
            )
        )
        annotations: dict[str, object] = {"run_id": state.run_id}
        if state.busy is not None:
            annotations["step"] = state.busy
        with _log.annotate(annotations):
            _log.emit(_LEVELS[level], message, fields)
