"""What the client operations of a Debounce job return: frozen, keyword-only values.

Times are aware UTC datetimes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Generic, Literal, TypeVar

import attrs

__all__ = [
    "DebounceAddResult",
    "DebounceClearResult",
    "DebounceFlushResult",
    "DebounceStateResult",
    "DebounceStatusResult",
]

S = TypeVar("S")


@attrs.frozen(kw_only=True)
class DebounceAddResult:
    """What ``add`` did."""

    created: bool
    """Whether this event opened a new batch."""
    event_count: int
    """Events in the batch after this one (the flushed batch's size if it flushed)."""
    will_flush_at: datetime | None
    """When the batch will flush; ``None`` if this ``add`` flushed it (``max_events``)."""
    flushed: bool = False
    """Whether this ``add`` reached ``max_events`` and the batch flushed successfully."""


@attrs.frozen(kw_only=True)
class DebounceFlushResult:
    """What ``flush`` did."""

    flushed: bool
    """Whether ``execute`` ran successfully and the batch is gone."""
    event_count: int
    """Events in the batch that was flushed (or tried); 0 when there was none."""
    reason: Literal["manual", "empty"]
    """``"manual"``, or ``"empty"`` when nothing was pending (nothing ran)."""
    retry_scheduled: bool = False
    """With a ``retry`` policy: ``execute`` failed and a retry of the batch is scheduled."""


@attrs.frozen(kw_only=True)
class DebounceClearResult:
    """What ``clear`` did."""

    cleared: bool
    """Whether a pending batch was discarded."""
    discarded_events: int
    """How many events it held."""


@attrs.frozen(kw_only=True)
class DebounceStatusResult:
    """Where an instance stands.

    ``status`` is ``"debouncing"`` while a batch is pending and ``"not_found"`` otherwise
    (a flushed or cleared batch is gone). ``"idle"`` is part of the original's vocabulary
    and is never reported: an instance without a pending batch does not exist.
    """

    status: Literal["debouncing", "idle", "not_found"]
    event_count: int
    """Events in the pending batch (0 when none)."""
    started_at: datetime | None
    """When the pending batch's first event arrived."""
    will_flush_at: datetime | None
    """When the pending batch will flush (its next try, after a failed one)."""


@attrs.frozen(kw_only=True)
class DebounceStateResult(Generic[S]):
    """The state of the pending batch (``None`` when there is none)."""

    state: S | None
