"""Logging for effects and jobs: stdlib ``logging`` with per-run annotations and levels.

The runtime installs, for the duration of a handler, the annotations (``job_type``,
``job_name``, ``instance_id``; ``run_id`` and ``step`` for workflows) and the job's level
threshold. ``Effect.log_*`` records go to the ``durable_effect`` logger with those
annotations as record attributes (``record.job_type``…) and the call's fields under
``record.fields``.
"""

from __future__ import annotations

import logging
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
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

_ANNOTATIONS: ContextVar[Mapping[str, object]] = ContextVar("durable_effect_log_annotations")
_THRESHOLD: ContextVar[int] = ContextVar("durable_effect_log_threshold", default=logging.NOTSET)


def level_for(setting: bool | int) -> int:
    """A job's ``logging=`` setting as a threshold: False → ERROR, True → DEBUG, or a level.

    >>> level_for(False), level_for(True), level_for(logging.WARNING)
    (40, 10, 30)
    """
    if setting is True:
        return DEBUG
    if setting is False:
        return ERROR
    if isinstance(setting, int):
        return setting
    raise TypeError(f"logging must be a bool or a logging level, got {setting!r}")


@contextmanager
def annotate(annotations: Mapping[str, object], threshold: int | None = None) -> Iterator[None]:
    """Annotate (and optionally filter) every record logged inside the block."""
    previous = _ANNOTATIONS.get({})
    token = _ANNOTATIONS.set({**previous, **annotations})
    level_token = _THRESHOLD.set(threshold) if threshold is not None else None
    try:
        yield
    finally:
        _ANNOTATIONS.reset(token)
        if level_token is not None:
            _THRESHOLD.reset(level_token)


def current_annotations() -> Mapping[str, object]:
    """The annotations installed for the running handler (empty outside one)."""
    return _ANNOTATIONS.get({})


def emit(level: int, message: str, fields: Mapping[str, object]) -> None:
    """Log ``message`` with the current annotations, unless below the job's threshold."""
    if level < _THRESHOLD.get():
        return
    if not LOGGER.isEnabledFor(level):
        return
    extra: dict[str, object] = dict(_ANNOTATIONS.get({}))
    extra["fields"] = dict(fields)
    LOGGER.log(level, message, extra=extra, stacklevel=2)
