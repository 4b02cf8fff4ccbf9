"""Cron schedules: parsing an expression once, then computing DST-correct fire times.

This module owns cron semantics and is the only importer of ``croniter``. Expressions have
5 fields (``minute hour day-of-month month day-of-week``) or 6 with **seconds first**
(``second minute hour day-of-month month day-of-week``, as the original). They are
validated when the schedule is defined; a bad expression or time zone is a ``ValueError``.

Fire times are wall-clock times in the schedule's zone (``zoneinfo``), returned as aware UTC
instants. Daylight-saving transitions follow the usual cron rules:

* a wall time skipped by a spring-forward gap fires shifted by the gap (``02:30`` on a day
  that jumps from 02:00 to 03:00 fires at 03:30): a daily job never misses a day;
* a wall time repeated by a fall-back fires once, at its first occurrence, unless the hour
  field is a wildcard (``*`` or ``*/n``): then the repeated hour fires again, so an
  "every 5 minutes" schedule keeps its pace in real time.

Time zones are assumed not to change their offset twice within one day (true of tzdata for
every zone since 1970).
"""

from __future__ import annotations

import math
import re
import threading
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any
from zoneinfo import ZoneInfo, ZoneInfoNotFoundError

import attrs
from croniter import croniter

__all__ = ["CronSchedule"]

_SECOND = timedelta(seconds=1)
_PROBE = timedelta(days=1)  # step when searching for an offset change
_LOOKBACK = timedelta(days=1)  # how far back a recent transition can still matter
_REFERENCE = datetime(2000, 1, 1, tzinfo=UTC)
_FIXED_ZONES = frozenset(
    {
        "UTC",
        "Etc/UTC",
        "Etc/UCT",
        "UCT",
        "Etc/Universal",
        "Universal",
        "Zulu",
        "Etc/Zulu",
        "GMT",
        "Etc/GMT",
        "Etc/Greenwich",
        "Greenwich",
    }
)
_RANDOMISED = re.compile(r"^[hr](\(\d+-\d+\))?(/\d+)?$", re.IGNORECASE)


def _invalid(expr: object, reason: str) -> ValueError:
    return ValueError(f"invalid cron expression {expr!r}: {reason}")


@attrs.frozen
class CronSchedule:
    """A validated cron expression in a time zone.

    >>> daily = CronSchedule.parse("0 2 * * *", tz="Europe/Berlin")
    >>> daily.next_after(datetime(2024, 3, 30, 12, tzinfo=UTC))   # spring-forward night
    datetime.datetime(2024, 3, 31, 1, 0, tzinfo=datetime.timezone.utc)
    >>> CronSchedule.parse("*/15 * * * * *").next_after(datetime(2024, 1, 1, tzinfo=UTC))
    datetime.datetime(2024, 1, 1, 0, 0, 15, tzinfo=datetime.timezone.utc)
    """

    expr: str
    tz: str = "UTC"
    _zone: ZoneInfo = attrs.field(init=False, repr=False, eq=False)
    _iterator: Any = attrs.field(init=False, repr=False, eq=False)
    _lock: threading.Lock = attrs.field(init=False, repr=False, eq=False)
    _repeat_folds: bool = attrs.field(init=False, repr=False, eq=False)

    def __attrs_post_init__(self) -> None:
        expr: object = self.expr
        tz: object = self.tz
        if not isinstance(expr, str):
            raise _invalid(expr, "expected a string")
        if not isinstance(tz, str):
            raise ValueError(f"invalid time zone {tz!r}: expected an IANA name like 'UTC'")
        fields = expr.split()
        if len(fields) not in (5, 6):
            raise _invalid(
                expr,
                f"expected 5 fields (minute hour day month weekday) or 6 (second first), "
                f"got {len(fields)}",
            )
        for field in fields:
            if any(_RANDOMISED.match(part) for part in field.split(",")):
                raise _invalid(expr, f"hashed or random field {field!r} is not supported")
        try:
            zone = ZoneInfo(tz)
        except (ZoneInfoNotFoundError, ValueError) as exc:
            raise ValueError(f"invalid time zone {tz!r}: {exc}") from None
        seconds_first = len(fields) == 6
        try:
            iterator = croniter(" ".join(fields), _REFERENCE, second_at_beginning=seconds_first)
        except (ValueError, KeyError, TypeError, IndexError) as exc:  # croniter's derive ValueError
            raise _invalid(expr, str(exc) or type(exc).__name__) from None
        try:
            iterator.get_next(datetime)
        except ValueError:
            raise _invalid(expr, "it never fires") from None
        hour = fields[2 if seconds_first else 1]
        object.__setattr__(self, "_zone", zone)
        object.__setattr__(self, "_iterator", iterator)
        object.__setattr__(self, "_lock", threading.Lock())
        object.__setattr__(self, "_repeat_folds", hour.startswith("*"))

    @staticmethod
    def parse(expr: str, tz: str = "UTC") -> CronSchedule:
        """Validate ``expr`` (5 fields, or 6 with seconds first) in the IANA zone ``tz``.

        >>> CronSchedule.parse("0 9 * * MON-FRI", tz="America/New_York").tz
        'America/New_York'
        >>> CronSchedule.parse("0 0 31 2 *")
        Traceback (most recent call last):
            ...
        ValueError: invalid cron expression '0 0 31 2 *': it never fires
        >>> CronSchedule.parse("0 0 * * *", tz="Mars/Olympus")
        Traceback (most recent call last):
            ...
        ValueError: invalid time zone 'Mars/Olympus': 'No time zone found with key Mars/Olympus'
        """
        return CronSchedule(expr=expr, tz=tz)

    def next_after(self, t: datetime) -> datetime:
        """The first fire time strictly after the aware instant ``t``, as an aware UTC datetime.

        >>> nightly = CronSchedule.parse("30 1 * * *", tz="America/New_York")
        >>> first = nightly.next_after(datetime(2024, 11, 3, 0, tzinfo=UTC))  # fall-back day
        >>> first.isoformat(), nightly.next_after(first).isoformat()   # 01:30 EDT, 01:30 EST
        ('2024-11-03T05:30:00+00:00', '2024-11-04T06:30:00+00:00')
        """
        if t.tzinfo is None or t.utcoffset() is None:
            raise ValueError(f"next_after needs an aware datetime, got {t!r}")
        start = t.astimezone(UTC)
        if self.tz in _FIXED_ZONES:
            offset = start.astimezone(self._zone).utcoffset() or timedelta(0)
            return _instant(self._match_after(_wall(start, offset)), offset)
        return self._next_in_zone(start)

    def iter_after(self, t: datetime) -> Iterator[datetime]:
        """The fire times strictly after ``t``, in order, endlessly.

        >>> from itertools import islice
        >>> ticks = CronSchedule.parse("0 */6 * * *").iter_after(datetime(2024, 1, 1, tzinfo=UTC))
        >>> [d.hour for d in islice(ticks, 5)]
        [6, 12, 18, 0, 6]
        """
        current = t
        while True:
            current = self.next_after(current)
            yield current

    # -- internals ---------------------------------------------------------------------

    def _offset(self, instant: datetime) -> timedelta:
        return instant.astimezone(self._zone).utcoffset() or timedelta(0)

    def _match_after(self, wall: datetime) -> datetime:
        """The first matching wall time strictly after the naive wall time ``wall``."""
        start = wall.replace(microsecond=0, tzinfo=UTC)  # croniter in UTC: no DST games
        with self._lock:
            self._iterator.set_current(start, force=True)
            try:
                found: datetime = self._iterator.get_next(datetime)
            except ValueError as exc:
                raise ValueError(f"cron {self.expr!r} has no fire time after {wall}") from exc
        return found.replace(tzinfo=None)

    def _transition(self, after: datetime, until: datetime) -> datetime | None:
        """The first instant in ``(after, until]`` whose offset differs from ``after``'s."""
        offset = self._offset(after)
        low = after
        while low < until:
            high = min(low + _PROBE, until)
            if self._offset(high) != offset:
                # Offsets change on whole seconds: bisect on epoch seconds.
                lo_s, hi_s = math.floor(low.timestamp()), math.ceil(high.timestamp())
                while hi_s - lo_s > 1:
                    mid = (lo_s + hi_s) // 2
                    if self._offset(datetime.fromtimestamp(mid, UTC)) == offset:
                        lo_s = mid
                    else:
                        hi_s = mid
                return datetime.fromtimestamp(hi_s, UTC)
            low = high
        return None

    def _next_in_zone(self, t: datetime) -> datetime:
        """Walk the constant-offset segments of the zone from ``t`` to the first fire."""
        cur, inclusive = t, False
        seg_start = self._transition(t - _LOOKBACK, t)
        prev = self._offset(t - _LOOKBACK) if seg_start is not None else None
        while True:
            offset = self._offset(cur)
            back = _SECOND if inclusive else timedelta(0)  # inclusive: a fire at ``cur`` counts
            wall = self._match_after(_wall(cur, offset) - back)
            if seg_start is not None and prev is not None and prev > offset:
                repeated_end = _wall(seg_start, prev)  # walls before it already fired
                if wall < repeated_end and not self._repeat_folds:
                    wall = self._match_after(repeated_end - _SECOND)
            regular = _instant(wall, offset)
            shifted: datetime | None = None
            if seg_start is not None and prev is not None and prev < offset:
                # Walls skipped by the gap fire shifted by it, in [seg_start, seg_start + gap).
                gap_wall = self._match_after(_wall(cur, prev) - back)
                if gap_wall < _wall(seg_start, offset):
                    shifted = _instant(gap_wall, prev)
            end = self._transition(cur, regular)
            if end is None:
                return regular if shifted is None else min(regular, shifted)
            if shifted is not None and shifted < end:
                return shifted
            cur, inclusive, seg_start, prev = end, True, end, offset


def _wall(instant: datetime, offset: timedelta) -> datetime:
    """The naive wall time of an aware UTC instant at ``offset``."""
    return (instant + offset).replace(tzinfo=None)


def _instant(wall: datetime, offset: timedelta) -> datetime:
    """The aware UTC instant of a naive wall time at ``offset``."""
    return (wall - offset).replace(tzinfo=UTC)
