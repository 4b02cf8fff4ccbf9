"""Lease renewal: the leases of a running handler are renewed every third of their TTL.

One event-loop timer serves every running handler of an engine (`Renewals`): a handler
joins when it starts and leaves when it ends. The timer fires when the oldest one has run for
a third of the TTL, starts its renewal (a task that renews every third of the TTL until the
handler ends) and re-arms for the next oldest. Handlers that end sooner, nearly all of them,
cost a dict insert and delete instead of a timer each.

Scheduling uses the event loop's timer (infrastructure, not semantics); the expiry instants
come from the runtime clock, through the ``extend`` function the engine gives.
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Sequence

from durable_effect.errors import LeaseLostError, StorageError
from durable_effect.storage._port import Lease

__all__ = ["Renewal", "Renewals"]

#: Extends one lease (``Storage.extend`` at the clock's now, for the engine's TTL).
Extend = Callable[[Lease], Awaitable[Lease]]
#: Told the leases each renewal extended.
OnRenewed = Callable[[Sequence[Lease]], None]


class Renewals:
    """The renewals of every running handler of one engine (see the module docstring)."""

    #: Start a renewal up to this much early rather than re-arm for a sliver (seconds).
    _SLACK = 0.001

    def __init__(self, extend: Extend, period: float) -> None:
        self.extend = extend
        #: How long a handler runs before its leases are renewed (loop seconds).
        self.period = period
        self._waiting: dict[Renewal, float] = {}  # insertion (start) order: oldest first
        self._handle: asyncio.TimerHandle | None = None
        self._loop: asyncio.AbstractEventLoop | None = None

    def start(self, leases: list[Lease], on_renewed: OnRenewed | None = None) -> Renewal:
        """Renew ``leases`` (in place) while the handler runs; ``stop()`` it when it ends."""
        renewal = Renewal(self, leases, on_renewed)
        loop = asyncio.get_running_loop()
        due = loop.time() + self.period
        self._waiting[renewal] = due
        if self._handle is None or self._loop is not loop:
            self._loop = loop
            self._handle = loop.call_at(due, self._fire)
        return renewal

    def leave(self, renewal: Renewal) -> None:
        self._waiting.pop(renewal, None)

    def _fire(self) -> None:
        self._handle = None
        loop = self._loop
        if loop is None:
            return
        now = loop.time() + self._SLACK
        waiting = self._waiting
        while waiting:
            renewal, due = next(iter(waiting.items()))
            if due > now:
                self._handle = loop.call_at(due, self._fire)
                return
            del waiting[renewal]
            renewal.begin()


class Renewal:
    """Renews one handler's leases every ``period`` once it has run that long.

    ``leases`` is updated in place: whoever commits under them (the engine's settle, the
    handler's checkpoints) always uses the current generation.
    """

    def __init__(
        self, renewals: Renewals, leases: list[Lease], on_renewed: OnRenewed | None
    ) -> None:
        self._renewals = renewals
        self.leases = leases
        self._on_renewed = on_renewed
        self._task: asyncio.Task[None] | None = None

    def begin(self) -> None:
        self._task = asyncio.get_running_loop().create_task(self._renew_forever())

    async def _renew_forever(self) -> None:
        extend, period = self._renewals.extend, self._renewals.period
        while True:
            renewed: list[Lease] = []
            extended: list[Lease] = []
            for lease in self.leases:
                try:
                    fresh = await extend(lease)
                except (LeaseLostError, StorageError):
                    renewed.append(lease)  # the commit will be fenced if it was really lost
                else:
                    renewed.append(fresh)
                    extended.append(fresh)
            self.leases[:] = renewed
            if self._on_renewed is not None and extended:
                self._on_renewed(extended)
            await asyncio.sleep(period)

    def stop(self) -> None:
        self._renewals.leave(self)
        if self._task is not None:
            self._task.cancel()
