"""What Debounce handlers see (`DebounceContext`, `DebounceEventContext`) and what calls return.

``DebounceEventContext`` (given to ``on_event``) holds plain values only: the validated
event, the state accumulated so far (``None`` for the first event of a batch), the event
count including this event, and the instance's ids.

``DebounceContext`` (given to ``execute``) reads the batch from the instance: ``state``,
``event_count`` and ``debounce_started_at`` are Effects; ``flush_reason``, ``attempt``,
``is_retry`` and the ids are plain attributes.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Generic, Literal, TypeVar

import attrs

from durable_effect._effect import Effect

__all__ = [
    "DebounceAddResult",
    "DebounceClearResult",
    "DebounceContext",
    "DebounceEventContext",
    "DebounceFlushResult",
    "DebounceStateResult",
    "DebounceStatusResult",
    "FlushReason",
]

S = TypeVar("S")
I = TypeVar("I")  # noqa: E741

#: Why a batch is flushed: it reached ``max_events``; ``flush_after`` passed since its first
#: event; no event arrived for ``idle_after``; or a client called ``flush``.
FlushReason = Literal["max_events", "flush_after", "idle", "manual"]


@attrs.frozen(kw_only=True)
class DebounceEventContext(Generic[S, I]):
    """The context of ``on_event``: reduce ``event`` into ``state`` and return the new state.

    >>> ctx = DebounceEventContext(event=3, state=None, event_count=1,
    ...     instance_id="debounce:sum:a", id="a", job_name="sum")
    >>> ctx.state is None, ctx.event_count
    (True, 1)
    """

    event: I
    """The incoming event, validated against ``event_schema``."""
    state: S | None
    """The state reduced so far in this batch; ``None`` for the batch's first event."""
    event_count: int
    """Events in the batch, this one included (1 for the first event)."""
    instance_id: str
    """``debounce:{job_name}:{id}``."""
    id: str
    """The id the client passed."""
    job_name: str
    """The registered job name."""


class DebounceContext(Generic[S]):
    """The context of ``execute``: the batch being flushed and why.

    Built by the runtime; users only annotate handlers with it (``DebounceContext[MyState]``).
    """

    __slots__ = (
        "_event_count",
        "_started_at",
        "_state",
        "attempt",
        "flush_reason",
        "id",
        "instance_id",
        "is_retry",
        "job_name",
    )

    def __init__(
        self,
        *,
        state: Callable[[], S],
        event_count: Callable[[], int],
        started_at: Callable[[], datetime],
        flush_reason: FlushReason,
        attempt: int,
        instance_id: str,
        id: str,
        job_name: str,
    ) -> None:
        self._state = state
        self._event_count = event_count
        self._started_at = started_at
        self.flush_reason: FlushReason = flush_reason
        """``"max_events"``, ``"flush_after"``, ``"idle"`` or ``"manual"``."""
        self.attempt: int = attempt
        """1 for the first try of flushing this batch, 2 for the first retry…"""
        self.is_retry: bool = attempt > 1
        """Whether an earlier try of flushing this batch failed."""
        self.instance_id: str = instance_id
        self.id: str = id
        self.job_name: str = job_name

    @property
    def state(self) -> Effect[S]:
        """The state accumulated by the batch's events (read and validated when run)."""
        return Effect.sync(self._state)

    @property
    def event_count(self) -> Effect[int]:
        """How many events the batch holds."""
        return Effect.sync(self._event_count)

    @property
    def debounce_started_at(self) -> Effect[datetime]:
        """When the batch's first event arrived (aware UTC)."""
        return Effect.sync(self._started_at)

    def __repr__(self) -> str:
        return (
            f"DebounceContext(instance_id={self.instance_id!r}, flush_reason="
            f"{self.flush_reason!r}, attempt={self.attempt})"
        )


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
