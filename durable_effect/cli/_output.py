"""CLI output: human tables by default, JSON with ``--json``."""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import attrs

from durable_effect._codec import encode_builtins, encode_json

__all__ = ["emit", "to_plain"]


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


def _cell(value: object) -> str:
    if value is None:
        return "-"
    if isinstance(value, dict | list):
        return encode_json(value).decode()
    return str(value)


def emit(value: object, *, as_json: bool) -> None:
    """Print one result (a mapping: key/value rows) or a list of them (a table)."""
    plain = to_plain(value)
    if as_json:
        sys.stdout.write(encode_json(plain).decode() + "\n")
        return
    if isinstance(plain, list):
        _table([row if isinstance(row, dict) else {"value": row} for row in plain])
    elif isinstance(plain, dict):
        width = max((len(k) for k in plain), default=0)
        for key, val in plain.items():
            sys.stdout.write(f"{key.ljust(width)}  {_cell(val)}\n")
    else:
        sys.stdout.write(_cell(plain) + "\n")


def _table(rows: Sequence[Mapping[str, object]]) -> None:
    if not rows:
        sys.stdout.write("(none)\n")
        return
    columns: list[str] = []
    for row in rows:
        columns.extend(k for k in row if k not in columns)
    cells = [[_cell(row.get(c)) for c in columns] for row in rows]
    widths = [max(len(c), *(len(r[i]) for r in cells)) for i, c in enumerate(columns)]
    sys.stdout.write("  ".join(c.upper().ljust(w) for c, w in zip(columns, widths, strict=True)))
    sys.stdout.write("\n")
    for r in cells:
        sys.stdout.write("  ".join(v.ljust(w) for v, w in zip(r, widths, strict=True)).rstrip())
        sys.stdout.write("\n")
