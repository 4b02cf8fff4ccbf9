"""The `Clock` service: the only source of time for the core and the runtime.

The core never reads the wall clock. ``Effect.sleep`` and ``Effect.timeout`` go through the
clock installed for the current run (``use_clock``); without one they use asyncio's loop
timer, which needs no wall-clock reading. ``SystemClock`` (the real one) lives in the adapter
layer; ``TestClock`` in ``durable_effect.testing``.
"""

from __future__ import annotations

import asyncio
from collections.abc import Iterator
from contextlib import contextmanager
from contextvars import ContextVar
from datetime import datetime, timedelta
from typing import Protocol, runtime_checkable

__all__ = ["Clock", "ClockScope", "current_clock", "sleep_for", "use_clock"]


@runtime_checkable
class Clock(Protocol):
    """A source of aware UTC instants that can also wait.

    Invariants: ``now()`` never goes backwards; ``sleep_until(t)`` returns no earlier than the
    moment ``now() >= t``.
    """

    def now(self) -> datetime:
        """The current instant, an aware UTC datetime."""
        ...

    async def sleep_until(self, when: datetime) -> None:
        """Wait until ``now() >= when``."""
        ...


_CLOCK: ContextVar[Clock | None] = ContextVar("durable_effect_clock", default=None)


def current_clock() -> Clock | None:
    """The clock installed for the running program, if any."""
    return _CLOCK.get()


@contextmanager
def use_clock(clock: Clock) -> Iterator[None]:
    """Install ``clock`` for effects run inside the block (and tasks started from it)."""
    token = _CLOCK.set(clock)
    try:
        yield
    finally:
        _CLOCK.reset(token)


class ClockScope:
    """``use_clock`` as a plain context manager class, for the runtime's per-handler use.

    Entered on every handler run, where a generator-based context manager costs more.
    """

    __slots__ = ("_clock", "_token")

    def __init__(self, clock: Clock) -> None:
        self._clock = clock

    def __enter__(self) -> None:
        self._token = _CLOCK.set(self._clock)

    def __exit__(self, *exc: object) -> None:
        _CLOCK.reset(self._token)


async def sleep_for(delay: timedelta) -> None:
    """Sleep ``delay`` through the current clock (or the event loop's timer without one)."""
    try:
        asyncio.get_running_loop()
    except RuntimeError:
        raise RuntimeError(
            "Effect.sleep needs an event loop: use `await Effect.run_async(eff)` or `await eff`, "
            "not Effect.run_sync"
        ) from None
    clock = _CLOCK.get()
    if clock is None:
        await asyncio.sleep(max(delay.total_seconds(), 0.0))
    else:
        await clock.sleep_until(clock.now() + delay)
