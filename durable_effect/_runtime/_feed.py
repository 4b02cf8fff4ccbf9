"""Events as feed entries: the bytes the engine appends to the storage feed with each commit.

An entry is the event's wire JSON (``Event.to_wire()``: camelCase keys, ISO instants), the
same object trackers receive, so a process reading the feed (the web dashboard's stream)
sees what every worker committed without importing anything — less ``preExecutionState``,
a copy of the instance's whole state before each execution, which would make every entry
as large as the state it belongs to (read the state itself instead). An event whose wire form is
larger than the port's `FEED_ENTRY_MAX`, or cannot be encoded (a value JSON cannot hold),
is shortened to its small fields with ``"truncated": true``: the feed never fails a commit.

>>> from datetime import datetime, timezone
>>> from durable_effect._events import JobExecuted
>>> ev = JobExecuted(event_id="e1", timestamp=datetime(2026, 1, 1, tzinfo=timezone.utc),
...     instance_id="continuous:tick:a", id="x" * 70_000, job_type="continuous",
...     job_name="tick")
>>> entry = feed_entries([ev])[0]
>>> len(entry) < 2000, b'"truncated":true' in entry, b'"instanceId":"continuous:tick:a"' in entry
(True, True, True)
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Final

from durable_effect._codec import encode_json
from durable_effect._events import Event
from durable_effect.errors import ValidationError
from durable_effect.storage._port import FEED_ENTRY_MAX

__all__ = ["OMITTED", "feed_entries"]

#: Wire fields left out of feed entries (see the module docstring).
OMITTED: Final = ("preExecutionState",)

#: The longest text a shortened entry keeps of one field.
_SHORT_TEXT = 1024


def feed_entries(events: Sequence[Event]) -> list[bytes]:
    """The feed entry of each event, in order (see the module docstring)."""
    out: list[bytes] = []
    for event in events:
        wire = event.to_wire()
        for key in OMITTED:
            wire.pop(key, None)
        try:
            data = encode_json(wire)
        except ValidationError:
            data = b""
        if not data or len(data) > FEED_ENTRY_MAX:
            data = encode_json(_shortened(wire))
        out.append(data)
    return out


def _shortened(wire: dict[str, object]) -> dict[str, object]:
    """The small scalar fields of a wire object, and ``truncated``."""
    small: dict[str, object] = {}
    for key, value in wire.items():
        if isinstance(value, str):
            small[key] = value[:_SHORT_TEXT]
        elif value is None or isinstance(value, bool | float) or _fits(value):
            small[key] = value
    small["truncated"] = True
    return small


def _fits(value: object) -> bool:
    """Whether ``value`` is an int JSON encoding takes (64 bits)."""
    return isinstance(value, int) and -(2**63) <= value < 2**63
