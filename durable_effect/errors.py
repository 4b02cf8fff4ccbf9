"""The error hierarchy of durable_effect.

Every domain error is a frozen attrs value deriving from :class:`TaggedError`. Errors are
values: two errors with the same fields are equal, and ``yield from SomeError(...)`` inside an
``Effect.gen`` program fails the program with that error::

    TaggedError (Exception)
    ├── JobNotFoundError          job_type, job_name
    ├── InstanceNotFoundError     instance_id
    ├── InvalidStateError         expected, actual, operation
    ├── ConflictError             key, message
    ├── ValidationError           schema, message, path
    ├── ExecutionError            job_type, job_name, instance_id, cause
    ├── DuplicateEventError       event_id
    ├── StorageError              operation, cause
    ├── SchedulerError            operation, cause
    ├── RetryExhaustedError       attempts, last_error
    ├── StepTimeoutError          step, timeout_ms
    ├── RunCancelledError         run_id
    ├── RunTimeoutError           run_id, timeout
    ├── RunFailedError            run_id, error
    ├── NonDeterminismError       run_id, step, expected, found
    ├── LeaseLostError            instance_id, owner, generation
    └── TimeoutException          timeout_ms          (``Effect.timeout``)

>>> ValidationError(schema="Order", message="Expected `int`", path="$.qty") == ValidationError(
...     schema="Order", message="Expected `int`", path="$.qty")
True
>>> str(JobNotFoundError(job_type="continuous", job_name="nope"))
"JobNotFoundError: no continuous job named 'nope' is registered"
"""

from __future__ import annotations

import weakref
from collections.abc import Generator
from datetime import timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Literal, Never, NoReturn, Self, cast

import attrs

from durable_effect._interpreter import fail_node

if TYPE_CHECKING:  # for the annotation of ``__iter__`` only (``_effect`` imports this module)
    from durable_effect._effect import Effect

__all__ = [
    "ConflictError",
    "DuplicateEventError",
    "ExecutionError",
    "InstanceNotFoundError",
    "InvalidStateError",
    "JobNotFoundError",
    "LeaseLostError",
    "NonDeterminismError",
    "RetryExhaustedError",
    "RunCancelledError",
    "RunFailedError",
    "RunTimeoutError",
    "SchedulerError",
    "StepTimeoutError",
    "StorageError",
    "TaggedError",
    "TimeoutException",
    "ValidationError",
]


class TaggedError(Exception):
    """Base of every typed failure: a value with a ``tag`` and equality by fields.

    Subclasses are ``@attrs.frozen`` classes with ``tag: ClassVar[Literal["Name"]]``.
    ``yield from error`` inside an ``Effect.gen`` generator fails the program with it.

    Every subclass is *registered* when it is defined (``registered_error``): a type name
    read from storage may name it, and nothing else is ever imported to resolve one.
    """

    tag: ClassVar[str] = "TaggedError"
    __test__ = False

    def __init_subclass__(cls, **kwargs: Any) -> None:
        super().__init_subclass__(**kwargs)
        _REGISTERED[f"{cls.__module__}:{cls.__qualname__}"] = cls

    def __eq__(self, other: object) -> bool:
        if type(self) is not type(other):
            return NotImplemented
        return _fields(self) == _fields(other)

    def __hash__(self) -> int:
        return hash((type(self), _fields(self)))

    def __iter__(self) -> Generator[Effect[Never, Self], Any, NoReturn]:
        # A bare failure node of the interpreter (``Effect`` is one; this module stays
        # below ``_effect``, which fails with errors defined here).
        yield cast("Effect[Never, Self]", fail_node(self))
        raise AssertionError("unreachable: a failed effect never resumes its generator")

    def __str__(self) -> str:
        return f"{self.tag}: {self.describe()}"

    def describe(self) -> str:
        """The message without the tag."""
        return ", ".join(f"{k}={v!r}" for k, v in zip(_names(self), _fields(self), strict=True))


#: Every ``TaggedError`` subclass defined so far, by ``module:qualname`` (weakly: a class
#: that is garbage collected is forgotten). ``attrs.frozen`` replaces a class by a new one
#: with the same name: the last definition wins.
_REGISTERED: weakref.WeakValueDictionary[str, type[TaggedError]] = weakref.WeakValueDictionary()


def registered_error(path: str) -> type[TaggedError] | None:
    """The ``TaggedError`` subclass named ``module:qualname``, if one was defined.

    >>> registered_error("durable_effect.errors:ValidationError") is ValidationError
    True
    >>> registered_error("os:system") is None
    True
    """
    return _REGISTERED.get(path)


def _names(err: TaggedError) -> tuple[str, ...]:
    cls: Any = type(err)
    if attrs.has(cls):
        return tuple(a.name for a in attrs.fields(cls))
    return ()


def _fields(err: TaggedError) -> tuple[object, ...]:
    return tuple(getattr(err, n) for n in _names(err))


@attrs.frozen(kw_only=True, eq=False)
class JobNotFoundError(TaggedError):
    """A client call names a job that is not registered (or is of another type)."""

    tag: ClassVar[Literal["JobNotFoundError"]] = "JobNotFoundError"
    job_type: str
    job_name: str

    def describe(self) -> str:
        return f"no {self.job_type} job named {self.job_name!r} is registered"


@attrs.frozen(kw_only=True, eq=False)
class InstanceNotFoundError(TaggedError):
    """An operation needs an existing instance or run and there is none."""

    tag: ClassVar[Literal["InstanceNotFoundError"]] = "InstanceNotFoundError"
    instance_id: str

    def describe(self) -> str:
        return f"no instance {self.instance_id!r}"


@attrs.frozen(kw_only=True, eq=False)
class InvalidStateError(TaggedError):
    """A transition that is not allowed from the current state."""

    tag: ClassVar[Literal["InvalidStateError"]] = "InvalidStateError"
    expected: str
    actual: str
    operation: str

    def describe(self) -> str:
        return f"cannot {self.operation}: expected {self.expected}, found {self.actual}"


@attrs.frozen(kw_only=True, eq=False)
class ConflictError(TaggedError):
    """A second pending workflow run for the same concurrency key."""

    tag: ClassVar[Literal["ConflictError"]] = "ConflictError"
    key: str
    message: str

    def describe(self) -> str:
        return f"{self.message} (key {self.key!r})"


@attrs.frozen(kw_only=True, eq=False)
class ValidationError(TaggedError):
    """A value failed its schema; nothing was written."""

    tag: ClassVar[Literal["ValidationError"]] = "ValidationError"
    schema: str
    message: str
    path: str

    def describe(self) -> str:
        """``Schema at path: message``; a path that starts with the schema's name (an
        argument: ``id``, ``labels['k']``) alone: ``id: must not be empty``."""
        if self.path and self.path.startswith(self.schema):
            return f"{self.path}: {self.message}"
        where = f" at {self.path}" if self.path else ""
        return f"{self.schema}{where}: {self.message}"


@attrs.frozen(kw_only=True, eq=False)
class ExecutionError(TaggedError):
    """User code failed (typed error or defect) and nothing handled it."""

    tag: ClassVar[Literal["ExecutionError"]] = "ExecutionError"
    job_type: str
    job_name: str
    instance_id: str
    cause: BaseException

    def describe(self) -> str:
        return f"{self.instance_id} failed: {_cause_text(self.cause)}"


@attrs.frozen(kw_only=True, eq=False)
class DuplicateEventError(TaggedError):
    """An ``event_id`` (or idempotency key) was already applied to this instance."""

    tag: ClassVar[Literal["DuplicateEventError"]] = "DuplicateEventError"
    event_id: str

    def describe(self) -> str:
        return f"event {self.event_id!r} was already applied"


@attrs.frozen(kw_only=True, eq=False)
class StorageError(TaggedError):
    """The storage backend failed; the operation had no effect."""

    tag: ClassVar[Literal["StorageError"]] = "StorageError"
    operation: str
    cause: BaseException | str

    def describe(self) -> str:
        return f"{self.operation} failed: {_cause_text(self.cause)}"


@attrs.frozen(kw_only=True, eq=False)
class SchedulerError(TaggedError):
    """An alarm could not be set, cancelled or read."""

    tag: ClassVar[Literal["SchedulerError"]] = "SchedulerError"
    operation: str
    cause: BaseException | str

    def describe(self) -> str:
        return f"{self.operation} failed: {_cause_text(self.cause)}"


@attrs.frozen(kw_only=True, eq=False)
class RetryExhaustedError(TaggedError):
    """A workflow step (or job) exhausted its retry policy.

    ``last_error`` is the last attempt's error: the error itself when the workflow declares
    its class (``error_schema``) or it is one of the library's, else its text
    (``"Tag: message"``) — the same in the run and after it is read back from storage.
    """

    tag: ClassVar[Literal["RetryExhaustedError"]] = "RetryExhaustedError"
    attempts: int
    last_error: BaseException | str

    def describe(self) -> str:
        return f"gave up after {self.attempts} attempts: {_cause_text(self.last_error)}"


@attrs.frozen(kw_only=True, eq=False)
class StepTimeoutError(TaggedError):
    """A workflow step did not finish within its timeout."""

    tag: ClassVar[Literal["StepTimeoutError"]] = "StepTimeoutError"
    step: str
    timeout_ms: int

    def describe(self) -> str:
        return f"step {self.step!r} timed out after {self.timeout_ms} ms"


@attrs.frozen(kw_only=True, eq=False)
class RunCancelledError(TaggedError):
    """The workflow run was cancelled."""

    tag: ClassVar[Literal["RunCancelledError"]] = "RunCancelledError"
    run_id: str

    def describe(self) -> str:
        return f"run {self.run_id!r} was cancelled"


@attrs.frozen(kw_only=True, eq=False)
class RunTimeoutError(TaggedError):
    """The workflow run passed its deadline (``run_timeout``) and was stopped.

    >>> str(RunTimeoutError(run_id="r1", timeout=timedelta(minutes=5)))
    "RunTimeoutError: run 'r1' passed its deadline (5 minutes after it was triggered)"
    """

    tag: ClassVar[Literal["RunTimeoutError"]] = "RunTimeoutError"
    run_id: str
    timeout: timedelta

    def describe(self) -> str:
        span = _span(self.timeout)
        return f"run {self.run_id!r} passed its deadline ({span} after it was triggered)"


@attrs.frozen(kw_only=True, eq=False)
class RunFailedError(TaggedError):
    """A workflow run failed with an error its workflow does not declare (or a defect).

    ``error`` is the run's error text, ``"Tag: message"``: the error object itself lived
    in the worker that ran the step.
    """

    tag: ClassVar[Literal["RunFailedError"]] = "RunFailedError"
    run_id: str
    error: str

    def describe(self) -> str:
        return f"run {self.run_id!r} failed: {self.error}"


@attrs.frozen(kw_only=True, eq=False)
class NonDeterminismError(TaggedError):
    """A replay found the code's steps out of line with the run's recorded steps.

    ``step`` is the position, ``expected`` the recorded step's name, ``found`` the code's.
    """

    tag: ClassVar[Literal["NonDeterminismError"]] = "NonDeterminismError"
    run_id: str
    step: int
    expected: str
    found: str

    def describe(self) -> str:
        return (
            f"run {self.run_id!r}: step {self.step} was recorded as {self.expected!r} "
            f"but the code now reaches {self.found!r}"
        )


@attrs.frozen(kw_only=True, eq=False)
class LeaseLostError(TaggedError):
    """The lease on an instance or run was lost to another worker; nothing was committed."""

    tag: ClassVar[Literal["LeaseLostError"]] = "LeaseLostError"
    instance_id: str
    owner: str
    generation: int

    def describe(self) -> str:
        return f"{self.owner} lost the lease on {self.instance_id!r} (generation {self.generation})"


@attrs.frozen(kw_only=True, eq=False)
class TimeoutException(TaggedError):
    """``Effect.timeout`` elapsed before the effect finished."""

    tag: ClassVar[Literal["TimeoutException"]] = "TimeoutException"
    timeout_ms: int

    def describe(self) -> str:
        return f"timed out after {self.timeout_ms} ms"


def _span(delta: timedelta) -> str:
    """A duration the way people say it: ``5 minutes``, ``1 hour``, ``90 seconds``."""
    seconds = delta.total_seconds()
    for unit, size in (("day", 86400), ("hour", 3600), ("minute", 60)):
        if seconds >= size and seconds % size == 0:
            n = int(seconds // size)
            return f"{n} {unit}{'s' if n != 1 else ''}"
    return f"{seconds:g} seconds"


def _cause_text(cause: BaseException | str) -> str:
    if isinstance(cause, str):
        return cause
    if isinstance(cause, TaggedError):
        return str(cause)
    return f"{type(cause).__name__}: {cause}"
