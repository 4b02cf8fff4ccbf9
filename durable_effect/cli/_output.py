"""CLI output: human forms that fit the terminal by default, JSON with ``--json``.

A single result prints as a key/value block (long values wrap under their key), a list as a
table with upper-case headers whose widest cells are cut with ``…`` until the table fits
the terminal (``COLUMNS``, else the terminal's width, else 100 columns). ``--json`` prints
the whole value, never cut.
"""

from __future__ import annotations

import shutil
import sys
from collections.abc import Collection, Mapping, Sequence
from datetime import timedelta
from typing import Any

import attrs

from durable_effect._codec import encode_builtins, encode_json

__all__ = [
    "cell",
    "emit",
    "emit_json",
    "human_duration",
    "key_values",
    "table",
    "terminal_width",
    "to_plain",
]

#: Width used when there is no terminal to ask (output piped or captured).
DEFAULT_WIDTH = 100
#: Narrowest a shrinkable column is cut to (its header stays readable).
_MIN_COLUMN = 8
_MIN_WIDTH = 40


def terminal_width() -> int:
    """The columns to fit: ``$COLUMNS``, the terminal's width, else 100."""
    columns = shutil.get_terminal_size((DEFAULT_WIDTH, 24)).columns
    return max(columns, _MIN_WIDTH)


def to_plain(value: object) -> object:
    """A result value (attrs classes, Structs, datetimes…) as JSON-ready builtins."""
    cls: Any = type(value)
    if attrs.has(cls):
        return {field.name: to_plain(getattr(value, field.name)) for field in attrs.fields(cls)}
    if isinstance(value, Mapping):
        return {str(k): to_plain(v) for k, v in value.items()}
    if isinstance(value, list | tuple):
        return [to_plain(v) for v in value]
    return encode_builtins(value)


def cell(value: object) -> str:
    """One plain value as text: ``-`` for ``None``, compact JSON for lists and objects."""
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return encode_json(value).decode()
    return str(value)


def human_duration(delta: timedelta) -> str:
    """A short duration: ``250 ms``, ``4.2 s``, ``3 min 5 s``, ``2 h 10 min``.

    >>> human_duration(timedelta(milliseconds=250)), human_duration(timedelta(seconds=4.25))
    ('250 ms', '4.2 s')
    >>> human_duration(timedelta(seconds=185)), human_duration(timedelta(hours=2, minutes=10))
    ('3 min 5 s', '2 h 10 min')
    """
    seconds = delta.total_seconds()
    if seconds < 1:
        return f"{max(round(seconds * 1000), 0)} ms"
    if seconds < 60:
        return f"{seconds:.1f} s"
    minutes, secs = divmod(round(seconds), 60)
    if minutes < 60:
        return f"{minutes} min {secs} s"
    hours, minutes = divmod(minutes, 60)
    if hours < 48:
        return f"{hours} h {minutes} min"
    days, hours = divmod(hours, 24)
    return f"{days} d {hours} h"


def emit_json(value: object) -> None:
    """Print ``value`` as one line of JSON."""
    sys.stdout.write(encode_json(to_plain(value)).decode() + "\n")


def emit(value: object, *, as_json: bool) -> None:
    """Print one result (a mapping: key/value rows) or a list of them (a table)."""
    if as_json:
        emit_json(value)
        return
    plain = to_plain(value)
    if isinstance(plain, list):
        rows = [row if isinstance(row, dict) else {"value": row} for row in plain]
        columns: list[str] = []
        for row in rows:
            columns.extend(k for k in row if k not in columns)
        sys.stdout.write(table(columns, [[cell(row.get(c)) for c in columns] for row in rows]))
    elif isinstance(plain, dict):
        sys.stdout.write(key_values([(key, cell(val)) for key, val in plain.items()]))
    else:
        sys.stdout.write(cell(plain) + "\n")


def key_values(pairs: Sequence[tuple[str, str]], width: int | None = None) -> str:
    """``key  value`` lines, keys aligned; a value too long for the line wraps under itself."""
    width = terminal_width() if width is None else width
    pad = max((len(k) for k, _ in pairs), default=0)
    room = max(width - pad - 2, _MIN_COLUMN)
    out: list[str] = []
    for key, value in pairs:
        lines = value.splitlines() or [""]
        pieces = [line[i : i + room] for line in lines for i in range(0, max(len(line), 1), room)]
        out.append(f"{key.ljust(pad)}  {pieces[0]}".rstrip())
        out.extend(f"{'':{pad}}  {piece}".rstrip() for piece in pieces[1:])
    return "".join(line + "\n" for line in out)


def table(
    columns: Sequence[str],
    rows: Sequence[Sequence[str]],
    *,
    width: int | None = None,
    fixed: Collection[str] = (),
) -> str:
    """A table with upper-case headers that fits ``width`` columns (``(none)`` if empty).

    The widest cells are cut (ending in ``…``) until it fits, never below 8 characters and
    never in the ``fixed`` columns; headers are cut too only when nothing else is left.

    >>> print(table(["id", "labels/error"], [["r1", "-"]], width=14), end="")
    ID  LABELS/ER…
    r1  -
    """
    if not rows:
        return "(none)\n"
    width = terminal_width() if width is None else width
    flat = [[" ".join(text.split()) for text in row] for row in rows]  # one line per row
    widths = [max(len(c), *(len(r[i]) for r in flat)) for i, c in enumerate(columns)]
    floors = [
        widths[i] if c in fixed else min(widths[i], max(len(c), _MIN_COLUMN))
        for i, c in enumerate(columns)
    ]
    headers_cut = [w if c in fixed else _MIN_COLUMN for c, w in zip(columns, floors, strict=True)]
    for limits in (floors, headers_cut):
        while sum(widths) + 2 * (len(widths) - 1) > width:
            shrinkable = [i for i in range(len(widths)) if widths[i] > limits[i]]
            if not shrinkable:
                break
            widest = max(shrinkable, key=lambda i: widths[i])
            widths[widest] -= 1
    lines = ["  ".join(_fit(c.upper(), w) for c, w in zip(columns, widths, strict=True))]
    for row in flat:
        lines.append("  ".join(_fit(v, w) for v, w in zip(row, widths, strict=True)))
    return "".join(line.rstrip() + "\n" for line in lines)


def _fit(text: str, width: int) -> str:
    if len(text) <= width:
        return text.ljust(width)
    return text[: width - 1] + "…"
