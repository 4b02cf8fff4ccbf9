"""`SystemClock`: the real clock (adapter layer: the one place that reads wall time)."""

from __future__ import annotations

import asyncio
from datetime import UTC, datetime

__all__ = ["SystemClock"]


class SystemClock:
    """Wall-clock UTC time; ``sleep_until`` waits on the event loop's timer.

    >>> SystemClock().now().tzinfo is UTC
    True
    """

    def now(self) -> datetime:
        """The current UTC instant."""
        return datetime.now(UTC)

    async def sleep_until(self, when: datetime) -> None:
        """Wait until the wall clock reaches ``when`` (never returns early)."""
        while True:
            remaining = (when - datetime.now(UTC)).total_seconds()
            if remaining <= 0:
                return
            await asyncio.sleep(remaining)
