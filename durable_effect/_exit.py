"""`Exit[A, E]`: how a program ended — a success, a typed failure, or a defect — as a value.

The interpreter (``_interpreter``) gives an ``Exit`` for every run; the runtime, the jobs and
the workflow look at it through ``is_ok`` / ``is_failure`` / ``is_defect`` and read
``value`` (a success's) or ``error`` (the typed failure, or the exception of a defect).
How the interpreter encodes the three cases is its own business.

>>> Exit.succeed(3).is_ok, Exit.succeed(3).value
(True, 3)
>>> ended = Exit.die(ZeroDivisionError("x"))
>>> ended.is_defect, ended.is_failure, type(ended.error).__name__
(True, False, 'ZeroDivisionError')
"""

from __future__ import annotations

from typing import Any, Generic, Never, cast

from typing_extensions import TypeVar

__all__ = ["DEFECT", "FAILURE", "OK", "Exit"]

A = TypeVar("A", covariant=True)
E = TypeVar("E", bound=BaseException, covariant=True, default=Never)
T = TypeVar("T")
ErrT = TypeVar("ErrT", bound=BaseException)

#: The three kinds, as the interpreter stores them (private to ``_interpreter``).
OK = 0
FAILURE = 1
DEFECT = 2


class Exit(Generic[A, E]):
    """How a run ended: ``is_ok`` (``value``), ``is_failure`` or ``is_defect`` (``error``)."""

    __slots__ = ("_kind", "_value")

    def __init__(self, kind: int, value: object) -> None:
        self._kind = kind
        self._value = value

    @staticmethod
    def succeed(value: T) -> Exit[T, Never]:
        """The exit of a program that succeeded with ``value``."""
        return Exit(OK, value)

    @staticmethod
    def fail(error: ErrT) -> Exit[Never, ErrT]:
        """The exit of a program that failed with the typed error ``error``."""
        return Exit(FAILURE, error)

    @staticmethod
    def die(defect: BaseException) -> Exit[Never, Never]:
        """The exit of a program that died of ``defect`` (an exception nothing typed)."""
        return Exit(DEFECT, defect)

    @property
    def is_ok(self) -> bool:
        """Whether the program succeeded."""
        return self._kind == OK

    @property
    def is_failure(self) -> bool:
        """Whether the program failed with a typed error."""
        return self._kind == FAILURE

    @property
    def is_defect(self) -> bool:
        """Whether the program died of a defect."""
        return self._kind == DEFECT

    @property
    def value(self) -> A:
        """The success value (``TypeError`` when the program did not succeed)."""
        if self._kind != OK:
            raise TypeError(f"not a success: {self!r}")
        return cast(A, self._value)

    @property
    def error(self) -> E | BaseException:
        """The typed failure, or the defect's exception (``TypeError`` on a success)."""
        if self._kind == OK:
            raise TypeError(f"not a failure: {self!r}")
        return cast(BaseException, self._value)

    def __repr__(self) -> str:
        name = ("succeed", "fail", "die")[self._kind]
        value: Any = self._value
        return f"Exit.{name}({value!r})"
