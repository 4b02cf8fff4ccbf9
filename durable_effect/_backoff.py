"""Retry policies: ``Backoff`` (how long to wait before the n-th retry) and ``Retry``.

This module owns the delay arithmetic of every retry in the package (``Effect.retry``, job
retries, workflow step retries). It is pure: randomness comes from a ``random.Random`` the
caller may pass, and time from the ``elapsed`` the caller measured with its clock.

Delays follow SPEC §4 exactly (1-based attempt ``n``, before jitter):

* exponential: ``min(max, base * factor ** (n - 1))``
* linear: ``min(max, initial + increment * (n - 1))``
* constant: the same delay every time.

Every delay is also capped at :data:`MAX_DELAY` (100 years) so that huge attempt numbers or
policies without ``max`` never overflow ``timedelta`` or the ``datetime`` they are added to.
"""

from __future__ import annotations

import math
import random
from datetime import timedelta
from typing import Any, ClassVar, Literal

import attrs

from durable_effect._duration import Duration, DurationInput

__all__ = ["MAX_DELAY", "Backoff", "Retry"]

MAX_DELAY = timedelta(days=36_525)
"""The ceiling of every computed delay: 100 years, "never" for any practical retry."""

_MAX_US = MAX_DELAY // timedelta(microseconds=1)
_JITTER = (0.9, 1.1)

BackoffKind = Literal["exponential", "linear", "constant"]


def _field_duration(owner: str, name: str, value: DurationInput) -> timedelta:
    try:
        return Duration.parse(value)
    except ValueError as exc:
        raise ValueError(f"{owner}: {name}: {exc}") from None


def _micros(value: timedelta) -> int:
    return value // timedelta(microseconds=1)


def _check_factor(instance: Backoff, attribute: attrs.Attribute[float], value: float) -> None:
    given: object = value
    if (
        isinstance(given, bool)
        or not isinstance(given, int | float)
        or not math.isfinite(given)
        or given < 1
    ):
        raise ValueError(f"Backoff: factor must be a finite number >= 1, got {value!r}")


def _check_non_negative(instance: Backoff, attribute: attrs.Attribute[Any], value: object) -> None:
    if isinstance(value, timedelta) and value < timedelta(0):
        raise ValueError(f"Backoff: {attribute.name} must not be negative, got {value!r}")


@attrs.frozen(kw_only=True)
class Backoff:
    """How long to wait before each retry; build one with the constructors below.

    ``delay(n)`` is the wait after the n-th failed attempt (1-based), before jitter.

    >>> b = Backoff.exponential("1 second", max="30 seconds")
    >>> [int(b.delay(n).total_seconds()) for n in range(1, 8)]
    [1, 2, 4, 8, 16, 30, 30]
    >>> Backoff.standard == b
    True
    >>> Backoff.fixed("5 seconds").delay(3)
    datetime.timedelta(seconds=5)
    """

    kind: BackoffKind
    base: timedelta = attrs.field(validator=_check_non_negative)
    factor: float = attrs.field(default=2.0, validator=_check_factor)
    increment: timedelta = attrs.field(default=timedelta(0), validator=_check_non_negative)
    max: timedelta | None = attrs.field(default=None, validator=_check_non_negative)

    standard: ClassVar[Backoff]
    """Exponential from 1 s, x2, at most 30 s."""
    aggressive: ClassVar[Backoff]
    """Exponential from 100 ms, x2, at most 5 s."""
    patient: ClassVar[Backoff]
    """Exponential from 5 s, x2, at most 120 s."""
    simple: ClassVar[Backoff]
    """Constant 1 s."""

    @staticmethod
    def exponential(
        base: DurationInput, max: DurationInput | None = None, factor: float = 2
    ) -> Backoff:
        """``min(max, base * factor ** (n - 1))`` for the n-th delay.

        >>> b = Backoff.exponential(100, factor=3)      # 100 ms
        >>> [int(b.delay(n) / timedelta(milliseconds=1)) for n in range(1, 5)]
        [100, 300, 900, 2700]
        >>> Backoff.exponential("1s", factor=0.5)
        Traceback (most recent call last):
            ...
        ValueError: Backoff: factor must be a finite number >= 1, got 0.5
        """
        return Backoff(
            kind="exponential",
            base=_field_duration("Backoff.exponential", "base", base),
            factor=factor,
            max=None if max is None else _field_duration("Backoff.exponential", "max", max),
        )

    @staticmethod
    def linear(
        initial: DurationInput, increment: DurationInput, max: DurationInput | None = None
    ) -> Backoff:
        """``min(max, initial + increment * (n - 1))`` for the n-th delay.

        >>> b = Backoff.linear("1 s", "2 s", max="6 s")
        >>> [int(b.delay(n).total_seconds()) for n in range(1, 6)]
        [1, 3, 5, 6, 6]
        """
        return Backoff(
            kind="linear",
            base=_field_duration("Backoff.linear", "initial", initial),
            increment=_field_duration("Backoff.linear", "increment", increment),
            max=None if max is None else _field_duration("Backoff.linear", "max", max),
        )

    @staticmethod
    def constant(delay: DurationInput) -> Backoff:
        """The same delay before every retry (alias: ``Backoff.fixed``).

        >>> Backoff.constant("250ms").delay(10)
        datetime.timedelta(microseconds=250000)
        >>> Backoff.constant("-1s")
        Traceback (most recent call last):
            ...
        ValueError: Backoff.constant: delay: invalid duration '-1s': must not be negative
        """
        return Backoff(kind="constant", base=_field_duration("Backoff.constant", "delay", delay))

    fixed = constant

    def delay(self, attempt: int) -> timedelta:
        """The wait after failed attempt number ``attempt`` (1-based), before jitter.

        Never overflows: the result is capped at ``max`` (if any) and at :data:`MAX_DELAY`.

        >>> Backoff.exponential("1s").delay(10_000) == MAX_DELAY
        True
        >>> Backoff.simple.delay(0)
        Traceback (most recent call last):
            ...
        ValueError: Backoff.delay: attempt must be an int >= 1, got 0
        """
        given: object = attempt
        if isinstance(given, bool) or not isinstance(given, int) or given < 1:
            raise ValueError(f"Backoff.delay: attempt must be an int >= 1, got {attempt!r}")
        cap = _MAX_US if self.max is None else min(_MAX_US, _micros(self.max))
        base = _micros(self.base)
        if self.kind == "constant":
            us = base
        elif self.kind == "linear":
            us = base + _micros(self.increment) * (attempt - 1)
        else:
            us = _exponential_us(base, self.factor, attempt - 1, cap)
        return timedelta(microseconds=min(us, cap))


def _exponential_us(base: int, factor: float, exponent: int, cap: int) -> int:
    """``base * factor ** exponent`` in microseconds, or ``cap`` if that is larger."""
    if base == 0 or exponent == 0 or factor == 1:
        return base
    if base >= cap:
        return cap
    # factor ** limit > cap / base: from there on the cap always wins; stop before overflowing.
    limit = math.ceil(math.log(cap / base) / math.log(factor)) + 1
    if exponent >= limit:
        return cap
    if float(factor).is_integer():
        growth: int = int(factor) ** exponent  # exact: 100 ms * 3 ** 3 is exactly 2700 ms
        return base * growth
    return round(base * math.pow(factor, exponent))


Backoff.standard = Backoff.exponential("1 second", max="30 seconds")
Backoff.aggressive = Backoff.exponential("100 millis", max="5 seconds")
Backoff.patient = Backoff.exponential("5 seconds", max="120 seconds")
Backoff.simple = Backoff.constant("1 second")


def _to_backoff(value: Backoff | DurationInput) -> Backoff:
    if isinstance(value, Backoff):
        return value
    try:
        return Backoff.constant(value)
    except ValueError as exc:
        raise ValueError(f"Retry: delay: {exc}") from None


def _to_optional_duration(value: DurationInput | None) -> timedelta | None:
    return None if value is None else _field_duration("Retry", "max_duration", value)


def _check_attempts(instance: Retry, attribute: attrs.Attribute[int], value: int) -> None:
    given: object = value
    if isinstance(given, bool) or not isinstance(given, int) or given < 1:
        raise ValueError(f"Retry: max_attempts must be an int >= 1, got {value!r}")


@attrs.frozen
class Retry:
    """A retry policy: how many attempts in all, how long between them.

    ``max_attempts`` counts **all** attempts: ``Retry(3)`` is the first try and 2 retries.
    ``delay`` is a :class:`Backoff` or a duration (a constant delay). With ``jitter`` each
    delay is multiplied by a uniform factor in [0.9, 1.1]. With ``max_duration``, no retry
    is scheduled whose (unjittered) delay would end past that much time since the first try.

    >>> policy = Retry(3, delay="2 s", jitter=False)
    >>> [policy.should_retry(n) for n in (1, 2, 3)]
    [True, True, False]
    >>> policy.delay_for(1)
    datetime.timedelta(seconds=2)
    >>> Retry(0)
    Traceback (most recent call last):
        ...
    ValueError: Retry: max_attempts must be an int >= 1, got 0
    """

    max_attempts: int = attrs.field(validator=_check_attempts)
    delay: Backoff = attrs.field(default=Backoff.standard, converter=_to_backoff, kw_only=True)
    jitter: bool = attrs.field(default=True, kw_only=True)
    max_duration: timedelta | None = attrs.field(
        default=None, converter=_to_optional_duration, kw_only=True
    )

    def delay_for(self, attempt: int, rng: random.Random | None = None) -> timedelta:
        """The wait after failed attempt ``attempt`` (1-based) before attempt ``attempt + 1``.

        Jitter (when on) draws from ``rng``, or from the ``random`` module without one.

        >>> import random
        >>> d = Retry(5).delay_for(2, random.Random(7))    # standard backoff: 2 s ± 10 %
        >>> timedelta(seconds=1.8) <= d <= timedelta(seconds=2.2)
        True
        """
        base = self.delay.delay(attempt)
        if not self.jitter:
            return base
        factor = (rng.uniform if rng is not None else random.uniform)(*_JITTER)
        return base * factor

    def should_retry(self, failed_attempt: int, elapsed: timedelta | None = None) -> bool:
        """Whether to try again after attempt ``failed_attempt`` (1-based) failed.

        False once ``failed_attempt >= max_attempts``, or when ``max_duration`` is set and
        ``elapsed`` (time since the first attempt started; 0 if not given) plus the next
        delay before jitter would exceed it.

        >>> Retry(5, delay="10 s", max_duration="25 s").should_retry(1, timedelta(seconds=10))
        True
        >>> Retry(5, delay="10 s", max_duration="25 s").should_retry(2, timedelta(seconds=20))
        False
        """
        return self.exhausted_by(failed_attempt, elapsed) is None

    def exhausted_by(
        self, failed_attempt: int, elapsed: timedelta | None = None
    ) -> Literal["max_attempts", "max_duration"] | None:
        """Which limit forbids another try after attempt ``failed_attempt`` failed
        (``"max_attempts"`` first, then ``"max_duration"``), or None when it may retry
        (`should_retry` is ``exhausted_by(...) is None``).

        >>> Retry(1).exhausted_by(1)
        'max_attempts'
        >>> Retry(5, delay="10 s", max_duration="25 s").exhausted_by(2, timedelta(seconds=20))
        'max_duration'
        >>> Retry(5).exhausted_by(1) is None
        True
        """
        given: object = failed_attempt
        if isinstance(given, bool) or not isinstance(given, int) or given < 1:
            raise ValueError(
                f"Retry.should_retry: failed_attempt must be an int >= 1, got {failed_attempt!r}"
            )
        if failed_attempt >= self.max_attempts:
            return "max_attempts"
        if self.max_duration is None:
            return None
        spent = elapsed if elapsed is not None else timedelta(0)
        if spent + self.delay.delay(failed_attempt) <= self.max_duration:
            return None
        return "max_duration"
