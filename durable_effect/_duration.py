"""Durations: parsing what users write into ``timedelta``, and formatting it back.

This module owns the duration grammar of the package. Everything that takes a duration
(``Backoff``, ``Retry``, ``Continuous.every``, ``flush_after``, ``ctx.schedule``, timeouts)
accepts a :data:`DurationInput` and turns it into a ``timedelta`` with :meth:`Duration.parse`.

Both grammars of the originals are understood, case-insensitively:

* the ``ms`` package's (``"5s"``, ``"5 min"``, ``"2.5 hours"``, ``"100"`` = 100 ms), and
* Effect's ``Duration.decode`` strings (``"30 minutes"``, ``"1 week"``, ``"5 millis"``).

A bare number, as a string or as an ``int``/``float``, is milliseconds (as in the originals).
Values are exact to the microsecond (``timedelta``'s resolution): ``"0.1 s"`` is exactly
100 ms, never 99.999 ms.
"""

from __future__ import annotations

import math
import re
from datetime import timedelta
from fractions import Fraction
from typing import TypeAlias

__all__ = ["Duration", "DurationInput"]

DurationInput: TypeAlias = timedelta | int | float | str
"""What every duration argument of the package accepts (see :meth:`Duration.parse`)."""

_US_PER_MS = 1_000
_HALF_MS = _US_PER_MS // 2
_ONE_US = timedelta(microseconds=1)
_US_PER_S = 1_000_000
_US_PER_MIN = 60 * _US_PER_S
_US_PER_H = 60 * _US_PER_MIN
_US_PER_D = 24 * _US_PER_H
_US_PER_W = 7 * _US_PER_D
_US_PER_Y = _US_PER_D * 365 + _US_PER_D // 4  # 365.25 days, as the ``ms`` package

_UNITS: dict[str, int] = {}
for _names, _us in (
    (("us", "µs", "micro", "micros", "microsecond", "microseconds"), 1),
    (("ms", "msec", "msecs", "milli", "millis", "millisecond", "milliseconds"), _US_PER_MS),
    (("s", "sec", "secs", "second", "seconds"), _US_PER_S),
    (("m", "min", "mins", "minute", "minutes"), _US_PER_MIN),
    (("h", "hr", "hrs", "hour", "hours"), _US_PER_H),
    (("d", "day", "days"), _US_PER_D),
    (("w", "wk", "wks", "week", "weeks"), _US_PER_W),
    (("y", "yr", "yrs", "year", "years"), _US_PER_Y),
):
    for _name in _names:
        _UNITS[_name] = _us

# Units tried by ``Duration.format``, largest first (years are never produced: not exact).
_FORMAT_UNITS: tuple[tuple[str, int], ...] = (
    ("w", _US_PER_W),
    ("d", _US_PER_D),
    ("h", _US_PER_H),
    ("min", _US_PER_MIN),
    ("s", _US_PER_S),
    ("ms", _US_PER_MS),
)

_GRAMMAR = re.compile(
    r"""\s*
    (?P<sign>[-+]?)
    (?P<number>[0-9]+(?:\.[0-9]*)?|\.[0-9]+)
    \s*
    (?P<unit>[^\W\d_]+)?
    \s*""",
    re.VERBOSE,
)

_MAX_US = timedelta.max // timedelta(microseconds=1)


class Duration:
    """Namespace of duration helpers; not instantiated.

    >>> Duration.parse("5s")
    datetime.timedelta(seconds=5)
    >>> Duration.parse("2.5 Hours")
    datetime.timedelta(seconds=9000)
    >>> Duration.parse(1500)                    # numbers are milliseconds
    datetime.timedelta(seconds=1, microseconds=500000)
    >>> Duration.format(Duration.parse("90 seconds"))
    '1.5 min'
    """

    __slots__ = ()

    def __init__(self) -> None:
        raise TypeError("Duration is a namespace of static helpers; use Duration.parse(...)")

    @staticmethod
    def parse(value: DurationInput) -> timedelta:
        """Turn a user-written duration into a ``timedelta``.

        Accepts a ``timedelta`` (returned as is), a number of milliseconds, or a string:
        a non-negative decimal number, optional whitespace, and an optional unit (none means
        milliseconds). Units, case-insensitive: ``us``/``micros``/``microsecond(s)``,
        ``ms``/``msec(s)``/``millis``/``millisecond(s)``, ``s``/``sec(s)``/``second(s)``,
        ``m``/``min(s)``/``minute(s)``, ``h``/``hr(s)``/``hour(s)``, ``d``/``day(s)``,
        ``w``/``week(s)``, ``y``/``year(s)`` (365.25 days, as the ``ms`` package).

        Raises ``ValueError`` (naming the input) for negative, NaN, infinite, empty,
        boolean, out-of-range or unparsable input.

        >>> Duration.parse("30 minutes") == Duration.parse("30m") == Duration.parse("30 MIN")
        True
        >>> Duration.parse("100")
        datetime.timedelta(microseconds=100000)
        >>> Duration.parse("1 week").days
        7
        >>> Duration.parse("5 millis")
        datetime.timedelta(microseconds=5000)
        >>> Duration.parse("-5s")
        Traceback (most recent call last):
            ...
        ValueError: invalid duration '-5s': must not be negative
        >>> Duration.parse("soon")
        Traceback (most recent call last):
            ...
        ValueError: invalid duration 'soon': expected e.g. '5s', '30 minutes' or '100' (ms)
        """
        given: object = value  # callers without type checking pass anything
        if isinstance(given, timedelta):
            if given < timedelta(0):
                raise _invalid(given, "must not be negative")
            return given
        if isinstance(given, int | float) and not isinstance(given, bool):
            return _from_number(given)
        if isinstance(given, str):
            return _from_string(given)
        raise _invalid(given, "expected a timedelta, a number of milliseconds or a string")

    @staticmethod
    def millis(value: timedelta) -> int:
        """A ``timedelta`` as a whole number of milliseconds, rounded half to even.

        >>> Duration.millis(Duration.parse("1.5 s"))
        1500
        >>> Duration.millis(timedelta(microseconds=2500))
        2
        """
        millis, rest = divmod(value // _ONE_US, _US_PER_MS)  # exact: integer microseconds
        if rest > _HALF_MS or (rest == _HALF_MS and millis % 2):
            millis += 1
        return millis

    @staticmethod
    def format(value: timedelta) -> str:
        """A short human string for a ``timedelta`` that :meth:`parse` turns back into it.

        The largest unit (``w``, ``d``, ``h``, ``min``, ``s``, ``ms``) in which the value is
        at least 1 with at most three decimals; ``ms`` with up to three decimals otherwise.
        Negative values raise ``ValueError``.

        >>> Duration.format(timedelta(seconds=1.5))
        '1.5 s'
        >>> Duration.format(timedelta(minutes=30))
        '30 min'
        >>> Duration.format(timedelta(days=14))
        '2 w'
        >>> Duration.format(timedelta(microseconds=1))
        '0.001 ms'
        >>> Duration.parse(Duration.format(timedelta(hours=25))) == timedelta(hours=25)
        True
        """
        given: object = value
        if not isinstance(given, timedelta):
            raise TypeError(f"Duration.format expects a timedelta, got {given!r}")
        us = given // timedelta(microseconds=1)
        if us < 0:
            raise ValueError(f"cannot format negative duration {value!r}")
        for unit, unit_us in _FORMAT_UNITS:
            if (us >= unit_us or unit == "ms") and (us * 1000) % unit_us == 0:
                return f"{_decimal(us * 1000 // unit_us)} {unit}"
        raise AssertionError("unreachable: milliseconds always have three exact decimals")


def _decimal(thousandths: int) -> str:
    whole, frac = divmod(thousandths, 1000)
    if frac == 0:
        return str(whole)
    return f"{whole}.{frac:03d}".rstrip("0")


def _invalid(value: object, reason: str) -> ValueError:
    return ValueError(f"invalid duration {value!r}: {reason}")


def _from_number(value: int | float) -> timedelta:
    if isinstance(value, float) and not math.isfinite(value):
        raise _invalid(value, "must be finite")
    if value < 0:
        raise _invalid(value, "must not be negative")
    return _from_micros(value, Fraction(value) * _US_PER_MS)


def _from_string(text: str) -> timedelta:
    match = _GRAMMAR.fullmatch(text)
    if match is None:
        if not text.strip():
            raise _invalid(text, "empty string")
        raise _invalid(text, "expected e.g. '5s', '30 minutes' or '100' (ms)")
    unit = (match["unit"] or "ms").lower()
    unit_us = _UNITS.get(unit)
    if unit_us is None:
        raise _invalid(text, f"unknown unit {match['unit']!r}")
    amount = Fraction(match["number"])
    if match["sign"] == "-" and amount != 0:
        raise _invalid(text, "must not be negative")
    return _from_micros(text, amount * unit_us)


def _from_micros(original: object, micros: Fraction) -> timedelta:
    us = round(micros)
    if us > _MAX_US:
        raise _invalid(original, "too large")
    return timedelta(microseconds=us)
