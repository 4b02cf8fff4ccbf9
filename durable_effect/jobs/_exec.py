"""Running user code inside a handler: outcomes as values, failures as `ExecutionError`.

Job semantics need to look at how user code ended (success, typed failure, defect) and
decide what to commit, so ``run_user`` never fails: it gives an ``Outcome``. Defects are
kept as defects (``Outcome.defect``), never turned into typed failures.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Any, Generic, Never, TypeVar

import attrs

from durable_effect._effect import Effect, exit_of
from durable_effect._events import ErrorInfo
from durable_effect._exit import Exit
from durable_effect.errors import ExecutionError, TaggedError, ValidationError
from durable_effect.jobs._instance import InstanceRef

__all__ = ["Outcome", "error_info", "execution_error", "run_user", "validated"]

A = TypeVar("A")
T = TypeVar("T")


@attrs.frozen(kw_only=True)
class Outcome(Generic[A]):
    """How user code ended: ``ok`` with ``value``, or ``error`` (``defect`` if untyped)."""

    ok: bool
    value: A | None = None
    error: BaseException | None = None
    defect: bool = False


def run_user(effect: Effect[A, BaseException]) -> Effect[Outcome[A], Never]:
    """Run user code and give its outcome as a value (never fails, defects included)."""
    return exit_of(effect).map(_outcome_of)


#: The outcome of most handlers (they succeed with ``None``): one shared frozen value.
_OK_NONE: Outcome[Any] = Outcome(ok=True)


def _outcome_of(exit_: Exit[Any, BaseException]) -> Outcome[Any]:
    if exit_.is_ok:
        value = exit_.value
        return _OK_NONE if value is None else Outcome(ok=True, value=value)
    return Outcome(ok=False, error=exit_.error, defect=exit_.is_defect)


def error_info(error: BaseException) -> ErrorInfo:
    """The ``{message, stack}`` telemetry form of an error."""
    message = str(error) if isinstance(error, TaggedError) else f"{type(error).__name__}: {error}"
    stack = None
    if error.__traceback__ is not None:
        stack = "".join(traceback.format_exception(error))
    return ErrorInfo(message=message, stack=stack)


def execution_error(ref: InstanceRef, cause: BaseException) -> ExecutionError:
    """The ``ExecutionError`` a client call fails with when user code failed."""
    return ExecutionError(
        job_type=ref.job_type, job_name=ref.job_name, instance_id=ref.instance_id, cause=cause
    )


def validated(thunk: Callable[[], T]) -> Effect[T, ValidationError]:
    """Run ``thunk`` when the effect runs: its value, or the ``ValidationError`` it raised
    as a typed failure (``yield from validated(lambda: RECORD.load(tx))``).

    Any other exception is a defect, never a typed failure.
    """
    return Effect.try_(thunk, catch=_only_validation)


def _only_validation(exc: Exception) -> ValidationError:
    if isinstance(exc, ValidationError):
        return exc
    raise exc
