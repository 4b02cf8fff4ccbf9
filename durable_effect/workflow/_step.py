"""`Step`: what a workflow's ``run(step, input)`` uses to make durable checkpoints.

* ``step.run(name, effect, *, schema=None, retry=None, timeout=None)`` — the first time, runs
  ``effect`` and commits its result **before** returning it; on every later execution of the
  same run (after a sleep, a retry wait or a crashed worker) it returns the stored result and
  does not run the effect. The value returned is always the *decoded* stored value, on the
  first run too, so it is the same value and type on first run and on replay (**fix**).
  A repeated name in one run returns the first result. A failed step is not cached: if the
  run catches the failure and re-executes later, the step runs again.
* ``step.sleep(name, duration)`` / ``step.sleep_until(name, when)`` — durable: the run is
  ``sleeping`` with its alarm set, no worker is held; when the alarm fires the run
  re-executes and completed steps replay.
* ``step.patched(name)`` — ``True`` for a run reaching this point under code with the patch,
  ``False`` for one that had passed it before (recorded; see ``_versions``).
* ``step.wait_for_event(name, schema=None, *, timeout=None)`` — durable: the next event sent
  to the run (of class ``schema``, one of the workflow's ``event_schema`` classes, when
  given), first in first out; the run is ``sleeping`` until one comes, no worker held;
  with ``timeout``, ``None`` when none was sent in time. The event taken is recorded with
  the step (``_waits``).
* ``step.progress(current, total=None, message=None)`` — committed at once, emits
  ``run:progress``.
* ``step.log.info/warn/error(message, **data)`` — stored with the run and emitted as
  ``log:write`` at the next checkpoint (a step's completion, a progress report, the end of
  the run), and logged through stdlib ``logging`` with ``run_id`` and ``step`` annotations.
* Progress reports and log lines made *outside* steps are not repeated when the run
  re-executes: the n-th such call of an execution is skipped when an earlier execution
  already committed it. Inside a step they belong to that execution of the step.

Steps of one run execute one at a time (a step inside another step's effect is refused).
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Mapping
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Literal, Never, Protocol, TypeAlias, TypeVar, overload

from durable_effect._backoff import Retry
from durable_effect._duration import Duration, DurationInput
from durable_effect._effect import Effect, async_effect
from durable_effect.errors import (
    RetryExhaustedError,
    StepTimeoutError,
    TaggedError,
    ValidationError,
)
from durable_effect.workflow._results import RunErrors

if TYPE_CHECKING:
    from durable_effect.workflow._definition import WorkflowDefinition

__all__ = ["LogLevelName", "Step", "StepLog", "StepOps"]

A = TypeVar("A")
T = TypeVar("T")
E = TypeVar("E", bound=BaseException)

CI = TypeVar("CI")
CO = TypeVar("CO")
CE = TypeVar("CE", bound=BaseException)

LogLevelName: TypeAlias = Literal["info", "warn", "error"]


class StepOps(Protocol):
    """What a ``Step`` asks of its execution (``_step_runner.StepRunner``)."""

    run_id: str
    workflow: str

    @property
    def attempt(self) -> int:
        """How many times a worker has taken the run (this execution included)."""
        ...

    async def run_step(
        self,
        name: str,
        effect: Effect[Any, BaseException],
        schema: object,
        retry: Retry | None,
        timeout: DurationInput | None,
    ) -> Effect[Any, BaseException]:
        """Run (or replay) one step."""
        ...

    async def sleep_step(self, name: str, wake: Callable[[datetime], datetime]) -> None:
        """Complete (or start, suspending the run) one durable sleep."""
        ...

    async def wait_step(self, name: str, schema: type | None, timeout: timedelta | None) -> object:
        """Complete (or start, suspending the run) one event wait; the event or ``None``."""
        ...

    async def report_progress(self, current: int, total: int | None, message: str | None) -> None:
        """Commit a progress report."""
        ...

    def patched(self, name: str) -> bool:
        """Answer (and record) ``step.patched(name)``."""
        ...

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
        """Start (or replay) a child run; with ``wait``, wait for its end."""
        ...

    def write_log(self, level: LogLevelName, message: str, data: dict[str, object]) -> None:
        """Buffer a log line (committed at the next checkpoint)."""
        ...


def _check_name(name: object) -> str:
    if not isinstance(name, str):
        raise TypeError(f"step names must be str, got {type(name).__name__}")
    if not name:
        raise ValueError("step names must not be empty")
    return name


def _promise(thunk: Callable[[], Awaitable[None]]) -> Effect[None, Never]:
    async def run() -> Effect[None, Never]:
        await thunk()
        return Effect.succeed(None)

    return async_effect(run)


class StepLog:
    """``step.log``: structured log lines stored with the run (``log:write`` events)."""

    __slots__ = ("_runner",)

    def __init__(self, runner: StepOps) -> None:
        self._runner = runner

    def _line(self, level: LogLevelName, message: str, data: dict[str, object]) -> Effect[None]:
        if not isinstance(message, str):
            raise TypeError(f"log messages must be str, got {type(message).__name__}")
        runner = self._runner
        return Effect.sync(lambda: runner.write_log(level, message, data))

    def info(self, message: str, **data: object) -> Effect[None]:
        """Log ``message`` at info level."""
        return self._line("info", message, data)

    def warn(self, message: str, **data: object) -> Effect[None]:
        """Log ``message`` at warning level."""
        return self._line("warn", message, data)

    def error(self, message: str, **data: object) -> Effect[None]:
        """Log ``message`` at error level."""
        return self._line("error", message, data)


class Step:
    """The checkpoint API of one execution of a run (see the module docstring).

    ``run_id``, ``workflow`` (the registered name) and ``attempt`` (how many times a worker
    has taken the run, 1-based) are plain attributes.
    """

    __slots__ = ("_runner", "attempt", "log", "run_id", "workflow")

    def __init__(self, runner: StepOps) -> None:
        self._runner = runner
        self.run_id = runner.run_id
        self.workflow = runner.workflow
        self.attempt = runner.attempt
        self.log = StepLog(runner)

    @overload
    def run(
        self,
        name: str,
        effect: Effect[A, E],
        *,
        schema: object = None,
        retry: None = None,
        timeout: None = None,
    ) -> Effect[A, E]: ...

    @overload
    def run(
        self,
        name: str,
        effect: Effect[A, E],
        *,
        schema: object = None,
        retry: None = None,
        timeout: DurationInput,
    ) -> Effect[A, E | StepTimeoutError]: ...

    @overload
    def run(
        self,
        name: str,
        effect: Effect[A, E],
        *,
        schema: object = None,
        retry: Retry,
        timeout: DurationInput | None = None,
    ) -> Effect[A, RetryExhaustedError]: ...

    def run(
        self,
        name: str,
        effect: Effect[A, E],
        *,
        schema: object = None,
        retry: Retry | None = None,
        timeout: DurationInput | None = None,
    ) -> Effect[A, Any]:
        """Run ``effect`` once for this run and checkpoint its result (replayed afterwards).

        ``schema`` decodes the stored result (default: the type of the first result, which
        must then be JSON-native or importable by module path). ``retry`` makes failures
        durable retries (the run sleeps until the next attempt; when attempts run out the
        step fails with ``RetryExhaustedError``). ``timeout`` fails an attempt that takes
        longer with ``StepTimeoutError``. A result that cannot be stored (not encodable, or
        not matching ``schema``) fails the run with ``ValidationError``.
        """
        checked = _check_name(name)
        given_effect: object = effect
        if not isinstance(given_effect, Effect):
            got = type(given_effect).__name__
            raise TypeError(f"step.run({checked!r}, ...) needs an Effect, got {got}")
        given: object = retry
        if given is not None and not isinstance(given, Retry):
            raise TypeError(f"step.run: retry must be a Retry or None, got {type(given).__name__}")
        if timeout is not None:
            Duration.parse(timeout)
        runner = self._runner

        async def go() -> Effect[A, Any]:
            return await runner.run_step(checked, effect, schema, retry, timeout)

        return async_effect(go)

    def sleep(self, name: str, duration: DurationInput) -> Effect[None, Never]:
        """Sleep durably for ``duration`` (measured from when the run first reaches it)."""
        checked = _check_name(name)
        delay = Duration.parse(duration)
        runner = self._runner
        return _promise(lambda: runner.sleep_step(checked, lambda now: now + delay))

    def sleep_until(self, name: str, when: datetime) -> Effect[None, Never]:
        """Sleep durably until the aware instant ``when``."""
        checked = _check_name(name)
        given: object = when
        if not isinstance(given, datetime) or given.utcoffset() is None:
            raise TypeError(f"step.sleep_until needs an aware datetime, got {when!r}")
        runner = self._runner
        return _promise(lambda: runner.sleep_step(checked, lambda _now: when))

    @overload
    def run_workflow(
        self,
        name: str,
        workflow: WorkflowDefinition[CI, CO, CE, Any],
        input: CI,
        *,
        idempotency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Effect[CO, CE | RunErrors | ValidationError]: ...

    @overload
    def run_workflow(
        self,
        name: str,
        workflow: str,
        input: object,
        *,
        idempotency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Effect[object, TaggedError]: ...

    def run_workflow(
        self,
        name: str,
        workflow: object,
        input: object,
        *,
        idempotency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Effect[Any, Any]:
        """Start a child run of ``workflow`` (a definition, or the name it is registered
        under with this ``create_durable_jobs``) and wait durably — no worker held — for its
        output; the step fails with the child's own error (``RunCancelledError`` when the
        child was cancelled). The child's id is derived from this run and ``name``, so a
        replay never starts a second one; it records ``parent_run_id``, its deadline is
        capped by this run's, and cancelling this run cancels it. ``ValidationError`` (the
        step's failure, nothing started) for an input that does not fit the child's schema.
        """
        return self._child(name, workflow, input, idempotency_key, labels, wait=True)

    def start_workflow(
        self,
        name: str,
        workflow: WorkflowDefinition[Any, Any, Any, Any] | str,
        input: object,
        *,
        idempotency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Effect[str, ValidationError]:
        """Start a child run (as ``run_workflow``) and give its ``run_id`` without waiting."""
        return self._child(name, workflow, input, idempotency_key, labels, wait=False)

    def _child(
        self,
        name: str,
        workflow: object,
        value: object,
        idempotency_key: str | None,
        labels: Mapping[str, str] | None,
        *,
        wait: bool,
    ) -> Effect[Any, Any]:
        checked = _check_name(name)
        runner = self._runner

        async def go() -> Effect[Any, Any]:
            return await runner.child_step(
                checked, workflow, value, idempotency_key, labels, wait=wait
            )

        return async_effect(go)

    def patched(self, name: str) -> Effect[bool, Never]:
        """Whether this run reaches this point under code that has the patch ``name``.

        ``False`` exactly when the run already has steps recorded after this point (it
        passed here under older code); otherwise ``True``. The answer is recorded and the
        same on every replay, so ``if (yield from step.patched("x")): <new> else: <old>``
        lets runs in flight keep their old path while new runs take the new one.
        """
        checked = _check_name(name)
        runner = self._runner
        return Effect.sync(lambda: runner.patched(checked))

    @overload
    def wait_for_event(
        self, name: str, schema: type[T], *, timeout: None = None
    ) -> Effect[T, Never]: ...

    @overload
    def wait_for_event(
        self, name: str, schema: type[T], *, timeout: DurationInput
    ) -> Effect[T | None, Never]: ...

    @overload
    def wait_for_event(
        self, name: str, schema: None = None, *, timeout: None = None
    ) -> Effect[object, Never]: ...

    @overload
    def wait_for_event(
        self, name: str, schema: None = None, *, timeout: DurationInput
    ) -> Effect[object | None, Never]: ...

    def wait_for_event(
        self, name: str, schema: type[T] | None = None, *, timeout: DurationInput | None = None
    ) -> Effect[Any, Never]:
        """Wait durably for the next event sent to this run (``client...send``).

        With ``schema`` (one of the workflow's ``event_schema`` classes; another is a
        ``TypeError``), the oldest queued event of that class; events of other classes stay
        queued for later waits. Events sent before the wait are kept, and taken first in
        first out. With ``timeout`` (measured from when the run first reaches the wait, a
        durable sleep), ``None`` when no event was sent in time. The run is ``sleeping``
        meanwhile, with no worker held; the event taken is committed with the step, so a
        replay gives the same event.
        """
        checked = _check_name(name)
        given: object = schema
        if given is not None and not isinstance(given, type):
            raise TypeError(f"wait_for_event: schema must be a class or None, got {schema!r}")
        limit = None if timeout is None else Duration.parse(timeout)
        runner = self._runner

        async def go() -> Effect[Any, Never]:
            return Effect.succeed(await runner.wait_step(checked, schema, limit))

        return async_effect(go)

    def progress(
        self, current: int, total: int | None = None, message: str | None = None
    ) -> Effect[None, Never]:
        """Report progress: committed at once (one write per call) and sent as ``run:progress``."""
        for field, value in (("current", current), ("total", total)):
            if value is not None and (isinstance(value, bool) or not isinstance(value, int)):
                raise TypeError(f"step.progress: {field} must be an int, got {value!r}")
        if message is not None and not isinstance(message, str):
            raise TypeError(f"step.progress: message must be a str, got {message!r}")
        runner = self._runner
        return _promise(lambda: runner.report_progress(current, total, message))
