"""The event bus: delivers events to in-process listeners and trackers, never failing a job."""

from __future__ import annotations

import logging
from collections.abc import Callable, Sequence

from durable_effect._events import Event, Tracker

__all__ = ["EventBus", "Listener"]

Listener = Callable[[Event], object]

_LOG = logging.getLogger("durable_effect")


class EventBus:
    """Listeners by event type (``"*"`` for all) plus trackers."""

    def __init__(self, trackers: Sequence[Tracker] = ()) -> None:
        self._listeners: dict[str, list[Listener]] = {}
        self.trackers: list[Tracker] = list(trackers)

    def on(self, event_type: str, listener: Listener) -> Callable[[], None]:
        """Subscribe; returns a function that unsubscribes."""
        self._listeners.setdefault(event_type, []).append(listener)

        def off() -> None:
            listeners = self._listeners.get(event_type, [])
            if listener in listeners:
                listeners.remove(listener)

        return off

    def publish(self, events: Sequence[Event]) -> None:
        """Deliver ``events`` in order; a failing listener or tracker is logged and skipped."""
        if not events:
            return
        for event in events:
            for listener in (*self._listeners.get(event.type, ()), *self._listeners.get("*", ())):
                try:
                    listener(event)
                except Exception:
                    _LOG.exception("event listener failed for %s", event.type)
            for tracker in self.trackers:
                try:
                    tracker.handle(event)
                except Exception:
                    _LOG.exception("tracker failed for %s", event.type)
