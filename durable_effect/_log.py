"""Logging for effects and jobs: stdlib ``logging`` with per-run annotations and levels.

The runtime installs, for the duration of a handler, the annotations (``job_type``,
``job_name``, ``instance_id``; ``run_id`` and ``step`` for workflows) and the job's level
threshold. ``Effect.log_*`` records go to the ``durable_effect`` logger with those
annotations as record attributes (``record.job_type``…) and the call's fields under
``record.fields``.
"""

from __future__ import annotations

import logging
from collections.abc import Mapping
from contextvars import ContextVar

__all__ = [
    "DEBUG",
    "ERROR",
    "INFO",
    "LOGGER",
    "NONE",
    "WARNING",
    "LogLevel",
    "annotate",
    "emit",
    "level_for",
]

DEBUG = logging.DEBUG
INFO = logging.INFO
WARNING = logging.WARNING
ERROR = logging.ERROR
#: Above every real level: nothing is logged.
NONE = logging.CRITICAL + 10

LogLevel = int
LOGGER = logging.getLogger("durable_effect")

_NO_ANNOTATIONS: Mapping[str, object] = {}  # never mutated
#: The annotations and the level threshold installed for the running handler, as one
#: variable (one set and one reset per handler).
_SCOPE: ContextVar[tuple[Mapping[str, object], int]] = ContextVar(
    "durable_effect_log_scope", default=(_NO_ANNOTATIONS, logging.NOTSET)
)


def level_for(setting: bool | int | None) -> int:
    """A job's ``logging=`` setting as a threshold: ``None`` (the default) → none of its own
    (the ``durable_effect`` logger's level decides), False → ERROR, True → DEBUG, or a level.

    >>> level_for(None), level_for(False), level_for(True), level_for(logging.WARNING)
    (0, 40, 10, 30)
    """
    if setting is None:
        return logging.NOTSET
    if setting is True:
        return DEBUG
    if setting is False:
        return ERROR
    if isinstance(setting, int):
        return setting
    raise TypeError(f"logging must be a bool or a logging level, got {setting!r}")


class annotate:  # lower case: used like the function it was, ``with annotate(...):``
    """Annotate (and optionally filter) every record logged inside the block.

    A plain context manager class (entered on every handler run: cheaper than a generator).
    """

    __slots__ = ("_annotations", "_threshold", "_token")

    def __init__(self, annotations: Mapping[str, object], threshold: int | None = None) -> None:
        self._annotations = annotations
        self._threshold = threshold

    def __enter__(self) -> None:
        previous, inherited = _SCOPE.get()
        threshold = inherited if self._threshold is None else self._threshold
        self._token = _SCOPE.set(({**previous, **self._annotations}, threshold))

    def __exit__(self, *exc: object) -> None:
        _SCOPE.reset(self._token)


def emit(level: int, message: str, fields: Mapping[str, object]) -> None:
    """Log ``message`` with the current annotations, unless below the job's threshold."""
    annotations, threshold = _SCOPE.get()
    if level < threshold:
        return
    if not LOGGER.isEnabledFor(level):
        return
    extra: dict[str, object] = dict(annotations)
    extra["fields"] = dict(fields)
    LOGGER.log(level, message, extra=extra, stacklevel=2)
