"""Running user code inside a handler: how it ended as an ``Exit``, failures as errors.

Job semantics look at how user code ended — success, typed failure, defect — and decide
what to commit, so ``run_user`` never fails: it gives the ``Exit``. Defects stay defects
(``is_defect``), never typed failures.

A handler can also end the instance (``ctx.terminate()``): ``Termination`` records the
request and raises the ``Terminate`` signal, a ``BaseException`` that unwinds the user's
program like a defect; the job reads the request from the ``Termination``, whatever the
program's ``Exit`` says.

``validated`` is the one way a job operation turns a ``ValidationError`` raised while
reading or writing records into a typed failure of its effect.
"""

from __future__ import annotations

import traceback
from collections.abc import Callable
from typing import Never, NoReturn, TypeVar

from durable_effect._effect import Effect, exit_of
from durable_effect._events import ErrorInfo
from durable_effect._exit import Exit
from durable_effect.errors import ExecutionError, TaggedError, ValidationError
from durable_effect.jobs._instance import InstanceRef

__all__ = [
    "Terminate",
    "Termination",
    "error_info",
    "execution_error",
    "failed",
    "run_user",
    "terminated",
    "validated",
]

A = TypeVar("A")
T = TypeVar("T")


def run_user(
    effect: Effect[A, BaseException], termination: Termination | None = None
) -> Effect[Exit[A, BaseException], Never]:
    """Run user code; its ``Exit`` as the value (never fails, defects included).

    With ``termination``: a handler that asked to terminate ended with the ``Terminate``
    signal as a defect, whatever its program did after (``terminated`` tells).
    """
    ran = exit_of(effect)
    return ran if termination is None else ran.map(termination.settle)


def failed(exit_: Exit[object, BaseException]) -> bool:
    """Whether a handler failed (a typed failure or a defect; terminating is not failing)."""
    return not exit_.is_ok and terminated(exit_) is None


def terminated(exit_: Exit[object, BaseException]) -> Terminate | None:
    """The ``Terminate`` signal a handler ended with, if it asked to terminate."""
    if exit_.is_defect and isinstance(exit_.error, Terminate):
        return exit_.error
    return None


class Terminate(BaseException):  # a control-flow signal, not an error
    """Raised by ``ctx.terminate``: unwinds the handler (never a typed failure).

    A ``BaseException`` so that ``Effect.try_``-style wrappers (which catch ``Exception``)
    never mistake it for a failure of their own thunk.
    """

    def __init__(self, reason: str | None) -> None:
        super().__init__(reason)
        self.reason = reason


class Termination:
    """Whether a handler asked to terminate its instance, and why (the first request's)."""

    __slots__ = ("reason", "requested")

    def __init__(self) -> None:
        self.requested = False
        self.reason: str | None = None

    def request(self, reason: str | None) -> NoReturn:
        """Record the request and unwind the handler."""
        if not self.requested:
            self.requested = True
            self.reason = reason
        raise Terminate(reason)

    def settle(self, exit_: Exit[A, BaseException]) -> Exit[A, BaseException]:
        """``exit_``, or the ``Terminate`` defect when termination was requested."""
        return Exit.die(Terminate(self.reason)) if self.requested else exit_


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
