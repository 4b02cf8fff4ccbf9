"""The worker's log output on stderr: ``--log-level`` and ``--log-format text|json``.

Text: one line per record, ``<UTC time> <LEVEL> <message>``; a job's own ``Effect.log_*``
line is prefixed with its instance (and workflow step) and followed by its fields as
``key=value``; a traceback (a defect's, or an exception's) follows, indented. JSON: one
object per line with ``time``, ``level``, ``logger``, ``message``, the record's identity
attributes (``job_type``, ``job_name``, ``instance_id``, ``id``, ``run_id``, ``step``,
``attempt``, ``will_retry``, ``error``…), ``fields`` and ``traceback`` when present.
"""

from __future__ import annotations

import logging
import sys
from datetime import UTC, datetime
from typing import Literal, TextIO

from durable_effect._codec import encode_builtins, encode_json
from durable_effect._log import LOGGER
from durable_effect.errors import ValidationError

__all__ = ["LEVELS", "JsonFormatter", "TextFormatter", "configure_logging"]

LEVELS = {
    "debug": logging.DEBUG,
    "info": logging.INFO,
    "warning": logging.WARNING,
    "error": logging.ERROR,
}
LogFormat = Literal["text", "json"]

#: Record attributes the library sets (annotations and failure facts), in output order.
_IDENTITY = (
    "job_type",
    "job_name",
    "instance_id",
    "id",
    "run_id",
    "step",
    "attempt",
    "will_retry",
    "error",
    "reason",
)


def _time(record: logging.LogRecord) -> str:
    instant = datetime.fromtimestamp(record.created, UTC)
    return instant.strftime("%Y-%m-%dT%H:%M:%S.") + f"{instant.microsecond // 1000:03d}Z"


def _traceback(formatter: logging.Formatter, record: logging.LogRecord) -> str | None:
    text = getattr(record, "traceback", None)
    if isinstance(text, str) and text:
        return text.rstrip("\n")
    if record.exc_info:
        return formatter.formatException(record.exc_info)
    return None


def _safe(value: object) -> object:
    """``value`` as JSON builtins, or its ``repr`` when it has no JSON form."""
    try:
        return encode_builtins(value)
    except ValidationError:
        return repr(value)


class TextFormatter(logging.Formatter):
    """``2026-01-01T00:00:00.000Z ERROR continuous:c:a failed (attempt 1, no retry): …``."""

    def format(self, record: logging.LogRecord) -> str:
        message = record.getMessage()
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict):  # a job's own Effect.log_* / step.log line
            instance = getattr(record, "instance_id", None)
            step = getattr(record, "step", None)
            where = "" if instance is None else str(instance)
            if where and step is not None:
                where += f" step {step}"
            where += ": " if where else ""
            pairs = " ".join(f"{k}={_field_text(v)}" for k, v in fields.items())
            message = f"{where}{message}{' ' if pairs else ''}{pairs}"
        line = f"{_time(record)} {record.levelname:<7} {message}"
        trace = _traceback(self, record)
        if trace:
            line += "\n" + "\n".join(f"  {part}" for part in trace.splitlines())
        return line


def _field_text(value: object) -> str:
    plain = _safe(value)
    if isinstance(plain, str) and plain and " " not in plain and '"' not in plain:
        return plain
    try:
        return encode_json(plain).decode()
    except ValidationError:
        return repr(value)


class JsonFormatter(logging.Formatter):
    """One JSON object per record (see the module docstring for its keys)."""

    def format(self, record: logging.LogRecord) -> str:
        out: dict[str, object] = {
            "time": _time(record),
            "level": record.levelname.lower(),
            "logger": record.name,
            "message": record.getMessage(),
        }
        for key in _IDENTITY:
            value = getattr(record, key, None)
            if value is not None:
                out[key] = _safe(value)
        fields = getattr(record, "fields", None)
        if isinstance(fields, dict) and fields:
            out["fields"] = {str(k): _safe(v) for k, v in fields.items()}
        trace = _traceback(self, record)
        if trace:
            out["traceback"] = trace
        try:
            return encode_json(out).decode()
        except ValidationError:  # never lose the record over an odd value
            return encode_json({k: repr(v) for k, v in out.items()}).decode()


def configure_logging(level: str, fmt: LogFormat, stream: TextIO | None = None) -> None:
    """Send the ``durable_effect`` logger's records at ``level`` and above to ``stream``
    (stderr) in ``fmt``; the app's own warnings go there too unless it set up logging."""
    handler = logging.StreamHandler(stream or sys.stderr)
    handler.setFormatter(JsonFormatter() if fmt == "json" else TextFormatter())
    LOGGER.handlers[:] = [handler]
    LOGGER.setLevel(LEVELS[level])
    LOGGER.propagate = False
    root = logging.getLogger()
    if not root.handlers:
        root.addHandler(handler)
        root.setLevel(max(logging.WARNING, LEVELS[level]))
