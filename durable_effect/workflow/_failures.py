"""Typed failures across persistence: how a run's error is stored, and what it reads back as.

A failed run stores its error as an ``ErrorRec``: the tag, the text (``"Tag: message"``),
the fields of a ``TaggedError`` as JSON builtins, whether it was a defect, and — for a
``RetryExhaustedError`` — the last attempt's error the same way. Reading it back
(``ErrorClasses.restore``) gives the error as its own class, with the same fields, when the
class is *decodable*: declared in the workflow's ``error_schema`` or one of the library's run
errors (``RUN_ERRORS``); anything else — defects, undeclared errors — is
``RunFailedError(run_id, text)``. Tags are looked up among those classes only: nothing read
from storage is ever imported.

``RetryExhaustedError.last_error`` follows the same rule, in the run too (``last_error``): the
error itself when decodable, else its text.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping

import attrs

from durable_effect._codec import codec_for, encode_builtins
from durable_effect.errors import (
    NonDeterminismError,
    RetryExhaustedError,
    RunCancelledError,
    RunFailedError,
    RunTimeoutError,
    StepTimeoutError,
    TaggedError,
    ValidationError,
)
from durable_effect.workflow._values import error_text

__all__ = ["RUN_ERRORS", "ErrorClasses", "ErrorRec"]

#: The library's errors a run fails with by itself; always read back as themselves.
RUN_ERRORS: tuple[type[TaggedError], ...] = (
    RetryExhaustedError,
    StepTimeoutError,
    RunTimeoutError,
    RunCancelledError,
    NonDeterminismError,
)


@attrs.frozen(kw_only=True)
class ErrorRec:
    """A stored error (see the module docstring)."""

    tag: str
    text: str
    fields: dict[str, object] | None = None
    defect: bool = False
    last: ErrorRec | None = None


def _tag_of(error: BaseException) -> str:
    return error.tag if isinstance(error, TaggedError) else type(error).__name__


def _fields_of(error: BaseException) -> dict[str, object] | None:
    """The attrs fields of a tagged error as JSON builtins (``None``: not storable)."""
    cls = type(error)
    if not isinstance(error, TaggedError) or not attrs.has(cls):
        return None
    values = {a.name: getattr(error, a.name) for a in attrs.fields(cls)}
    if isinstance(error, RetryExhaustedError) and isinstance(error.last_error, BaseException):
        values["last_error"] = error_text(error.last_error)  # the error itself: ``last``
    try:
        encoded = encode_builtins(values)
    except ValidationError:
        return None
    return encoded if isinstance(encoded, dict) else None


def _attrs_class(cls: type) -> bool:
    return attrs.has(cls)


def check_error_class(field: str, cls: object) -> type[TaggedError]:
    """``cls`` if it can be an ``error_schema`` class (``TypeError`` naming ``field`` if not)."""
    if not (isinstance(cls, type) and issubclass(cls, TaggedError)) or not _attrs_class(cls):
        raise TypeError(
            f"{field}: {cls!r} is not an @attrs.frozen TaggedError subclass (errors are "
            "stored by tag and fields)"
        )
    error_class: type[TaggedError] = cls
    try:
        codec_for(error_class)
    except TypeError as exc:
        raise TypeError(f"{field}: {exc}") from None
    return error_class


class ErrorClasses:
    """The decodable error classes of one workflow, by tag (see the module docstring)."""

    __slots__ = ("by_tag",)

    def __init__(self, declared: Iterable[type[TaggedError]] = ()) -> None:
        by_tag: dict[str, type[TaggedError]] = {cls.tag: cls for cls in RUN_ERRORS}
        for cls in declared:
            other = by_tag.setdefault(cls.tag, cls)
            if other is not cls:
                raise TypeError(
                    f"error_schema: {cls.__qualname__} and {other.__qualname__} share the tag "
                    f"{cls.tag!r} (a stored error is found again by its tag)"
                )
        self.by_tag: Mapping[str, type[TaggedError]] = by_tag

    def decodable(self, error: BaseException) -> bool:
        """Whether ``error`` reads back as itself."""
        return isinstance(error, TaggedError) and self.by_tag.get(error.tag) is type(error)

    def last_error(self, error: BaseException) -> BaseException | str:
        """What ``RetryExhaustedError.last_error`` holds for a step's last ``error``."""
        return error if self.decodable(error) else error_text(error)

    def persist(self, error: BaseException, *, defect: bool) -> ErrorRec:
        """The ``ErrorRec`` of a run's (or a step's) error."""
        last = None
        if isinstance(error, RetryExhaustedError) and isinstance(error.last_error, BaseException):
            last = self.persist(error.last_error, defect=False)
        return ErrorRec(
            tag=_tag_of(error),
            text=error_text(error),
            fields=None if defect else _fields_of(error),
            defect=defect,
            last=last,
        )

    def restore(self, rec: ErrorRec, run_id: str) -> TaggedError:
        """The error a stored failure reads back as."""
        found = self._decode(rec)
        if isinstance(found, TaggedError):
            return found
        return RunFailedError(run_id=run_id, error=rec.text)

    def _decode(self, rec: ErrorRec) -> TaggedError | None:
        cls = self.by_tag.get(rec.tag)
        if cls is None or rec.defect or rec.fields is None:
            return None
        fields = rec.fields
        if cls is RetryExhaustedError:  # its last error is stored beside it (``last``)
            attempts, text = fields.get("attempts"), fields.get("last_error")
            if not isinstance(attempts, int) or isinstance(attempts, bool):
                return None
            last = None if rec.last is None else self._decode(rec.last)
            if last is None:
                return RetryExhaustedError(
                    attempts=attempts, last_error=text if isinstance(text, str) else rec.text
                )
            return RetryExhaustedError(attempts=attempts, last_error=last)
        try:
            return codec_for(cls).validate(fields)
        except ValidationError:
            return None
