"""`Checks`: the argument checks every ``make()`` shares, with messages naming the field.

A definition is checked when it is made, never later: a bad argument raises ``TypeError``
(the wrong kind of thing) or ``ValueError`` (the right kind, a bad value) at once, and the
message starts with the function and names the field.

>>> Checks("Task.make").positive_duration("flush_after", "0 s")
Traceback (most recent call last):
    ...
ValueError: Task.make: flush_after must be positive, got '0 s'
>>> Checks("Task.make").retry(3)
Traceback (most recent call last):
    ...
TypeError: Task.make: retry must be a Retry or None, got int
"""

from __future__ import annotations

import types
from collections.abc import Callable, Sequence
from datetime import timedelta
from typing import Any, TypeAlias, TypeVar

from durable_effect import _log
from durable_effect._backoff import Retry
from durable_effect._codec import Codec, codec_for
from durable_effect._duration import Duration, DurationInput

__all__ = ["Checks", "SchemaOf"]

T = TypeVar("T")

#: The static type of a schema argument of ``make()``: a class (``Hook``), or a union of
#: tagged Structs (``A | B``, which mypy types as ``UnionType | type[A]``, losing ``B``).
#: Written as a ``Callable`` returning ``T`` (a class is one) rather than ``type[T]`` on
#: purpose: mypy then infers ``T`` in its second pass, together with the handlers, instead
#: of from the schema alone. So a class's type reaches handlers given as lambdas, and a
#: union's type comes from the handlers' annotations (the schema alone would say ``A``).
SchemaOf: TypeAlias = types.UnionType | Callable[..., T]


class Checks:
    """The checks of one ``make()``; ``owner`` (``"Task.make"``) starts every message."""

    __slots__ = ("owner",)

    def __init__(self, owner: str) -> None:
        self.owner = owner

    def schema(self, field: str, schema: object) -> Codec[Any]:
        """The codec of a schema (``TypeError`` if msgspec cannot use it)."""
        try:
            return codec_for(schema)
        except TypeError as exc:
            raise TypeError(f"{self.owner}: {field}: {exc}") from None

    def callable(self, field: str, value: object, *, optional: bool = False) -> None:
        """A handler: callable (or ``None`` when ``optional``)."""
        if value is None and optional:
            return
        if not callable(value):
            raise TypeError(f"{self.owner}: {field} must be callable, got {type(value).__name__}")

    def boolean(self, field: str, value: object) -> None:
        """A flag: exactly ``True`` or ``False``."""
        if not isinstance(value, bool):
            raise TypeError(f"{self.owner}: {field} must be a bool, got {value!r}")

    def retry(self, value: object) -> None:
        """A ``Retry`` policy or ``None``."""
        if value is not None and not isinstance(value, Retry):
            raise TypeError(
                f"{self.owner}: retry must be a Retry or None, got {type(value).__name__}"
            )

    def logging(self, value: bool | int | None) -> int:
        """The ``logging=`` setting as a level threshold (``_log.level_for``)."""
        try:
            return _log.level_for(value)
        except TypeError as exc:
            raise TypeError(f"{self.owner}: logging: {exc}") from None

    def duration(self, field: str, value: DurationInput) -> timedelta:
        """Anything ``Duration.parse`` accepts."""
        try:
            return Duration.parse(value)
        except (ValueError, TypeError) as exc:
            raise ValueError(f"{self.owner}: {field}: {exc}") from None

    def positive_duration(self, field: str, value: DurationInput) -> timedelta:
        """A duration longer than zero."""
        parsed = self.duration(field, value)
        if parsed <= timedelta(0):
            raise ValueError(f"{self.owner}: {field} must be positive, got {value!r}")
        return parsed

    def int_at_least(self, field: str, value: object, minimum: int) -> int:
        """An ``int`` (not a ``bool``) of at least ``minimum``."""
        if isinstance(value, bool) or not isinstance(value, int) or value < minimum:
            raise ValueError(f"{self.owner}: {field} must be an int >= {minimum}, got {value!r}")
        return value

    def one_of(self, field: str, value: object, choices: Sequence[str]) -> None:
        """One of ``choices``."""
        if value not in choices:
            raise ValueError(
                f"{self.owner}: {field} must be one of {', '.join(choices)}, got {value!r}"
            )
