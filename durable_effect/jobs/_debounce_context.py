"""What Debounce handlers see: `DebounceContext` (execute) and `DebounceEventContext` (on_event).

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

__all__ = ["DebounceContext", "DebounceEventContext", "FlushReason"]

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
