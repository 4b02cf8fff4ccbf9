"""Continuous schedules: ``Every`` (a fixed interval) and ``Cron`` (a cron expression).

A schedule is a set of *ticks*: the instants a Continuous job should run. Ticks never drift:
an ``Every`` schedule's ticks are ``anchor + k * interval`` (the anchor is the first tick,
fixed when the job starts), whatever time the runs took or however late their alarms fired;
a ``Cron`` schedule's ticks are the expression's fire times.

The job needs three questions answered about ticks, all pure arithmetic:

* ``next_after(tick)`` — the tick following ``tick``;
* ``first_after(tick, now)`` — the first tick strictly after ``now`` on ``tick``'s grid;
* ``last_at_or_before(tick, now)`` — the latest tick not after ``now`` (``tick <= now``).

>>> from datetime import UTC, datetime, timedelta
>>> every = Every(interval=timedelta(minutes=10))
>>> t0 = datetime(2026, 1, 1, tzinfo=UTC)
>>> every.first_after(t0, t0 + timedelta(minutes=35)).isoformat()
'2026-01-01T00:40:00+00:00'
>>> every.last_at_or_before(t0, t0 + timedelta(minutes=35)).isoformat()
'2026-01-01T00:30:00+00:00'
>>> nightly = Cron.parse("0 3 * * *")
>>> nightly.last_at_or_before(t0, t0 + timedelta(days=3, hours=5)).isoformat()
'2026-01-04T03:00:00+00:00'
"""

from __future__ import annotations

from datetime import datetime, timedelta

import attrs

from durable_effect._cron import CronSchedule
from durable_effect._duration import Duration, DurationInput

__all__ = ["Cron", "Every", "Schedule"]

_SECOND = timedelta(seconds=1)


@attrs.frozen
class Every:
    """Run every ``interval``, anchored to the first tick (no drift)."""

    interval: timedelta

    @staticmethod
    def parse(duration: DurationInput) -> Every:
        """An interval schedule (``ValueError`` naming the input if it is not positive).

        >>> Every.parse("30 minutes")
        Every(interval=datetime.timedelta(seconds=1800))
        >>> Every.parse(0)
        Traceback (most recent call last):
            ...
        ValueError: Continuous.every: duration must be positive, got 0
        """
        try:
            interval = Duration.parse(duration)
        except ValueError as exc:
            raise ValueError(f"Continuous.every: duration: {exc}") from None
        if interval <= timedelta(0):
            raise ValueError(f"Continuous.every: duration must be positive, got {duration!r}")
        return Every(interval=interval)

    def first_tick(self, start: datetime) -> datetime:
        """The first tick of a job started at ``start`` (one interval later)."""
        return start + self.interval

    def next_after(self, tick: datetime) -> datetime:
        """The tick after ``tick``."""
        return tick + self.interval

    def first_after(self, tick: datetime, now: datetime) -> datetime:
        """The first tick on ``tick``'s grid strictly after ``now``."""
        if tick > now:
            return tick
        steps = (now - tick) // self.interval + 1
        return tick + self.interval * steps

    def last_at_or_before(self, tick: datetime, now: datetime) -> datetime:
        """The latest tick on ``tick``'s grid at or before ``now`` (needs ``tick <= now``)."""
        return tick + self.interval * ((now - tick) // self.interval)


@attrs.frozen
class Cron:
    """Run at the fire times of a cron expression (5 fields, or 6 with seconds first)."""

    cron: CronSchedule

    @staticmethod
    def parse(expr: str, tz: str = "UTC") -> Cron:
        """A cron schedule; a bad expression or time zone raises ``ValueError`` at once.

        >>> Cron.parse("not cron")
        Traceback (most recent call last):
            ...
        ValueError: invalid cron expression 'not cron': expected 5 fields (minute hour day \
month weekday) or 6 (second first), got 2
        """
        return Cron(cron=CronSchedule.parse(expr, tz))

    @property
    def expr(self) -> str:
        """The cron expression."""
        return self.cron.expr

    @property
    def tz(self) -> str:
        """The IANA time zone the expression is read in."""
        return self.cron.tz

    def first_tick(self, start: datetime) -> datetime:
        """The first fire time strictly after ``start``."""
        return self.cron.next_after(start)

    def next_after(self, tick: datetime) -> datetime:
        """The fire time after ``tick``."""
        return self.cron.next_after(tick)

    def first_after(self, tick: datetime, now: datetime) -> datetime:
        """The first fire time strictly after ``now`` (``tick`` itself if it is later)."""
        return tick if tick > now else self.cron.next_after(now)

    def last_at_or_before(self, tick: datetime, now: datetime) -> datetime:
        """The latest fire time in ``[tick, now]`` (``tick`` is one; needs ``tick <= now``).

        Searches back from ``now`` in doubling windows, so a long downtime costs a few
        dozen steps, not one per missed tick.
        """
        window = _SECOND
        while True:
            low = now - window
            if low <= tick:
                return self._last_from(tick, now)
            candidate = self.cron.next_after(low)
            if candidate <= now:
                return self._last_from(candidate, now)
            window *= 2

    def _last_from(self, tick: datetime, now: datetime) -> datetime:
        current = tick
        while (following := self.cron.next_after(current)) <= now:
            current = following
        return current


Schedule = Every | Cron
"""What ``Continuous.make(schedule=...)`` takes: ``Continuous.every(...)`` or ``.cron(...)``."""
