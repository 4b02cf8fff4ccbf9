"""Backoff delays (SPEC §4's probed values), Retry validation, jitter, attempt counting."""

from __future__ import annotations

import random
from datetime import timedelta

import attrs
import pytest
from hypothesis import given
from hypothesis import strategies as st

from durable_effect._backoff import MAX_DELAY, Backoff, Retry

MS = timedelta(milliseconds=1)
S = timedelta(seconds=1)


def delays(backoff: Backoff, count: int) -> list[timedelta]:
    return [backoff.delay(n) for n in range(1, count + 1)]


# -- the probed values of the original ---------------------------------------------------


def test_exponential_with_max_probed() -> None:
    backoff = Backoff.exponential("1 second", max="30 seconds")
    assert delays(backoff, 7) == [s * S for s in (1, 2, 4, 8, 16, 30, 30)]


def test_exponential_factor_three_probed() -> None:
    backoff = Backoff.exponential("100 millis", factor=3)
    assert delays(backoff, 4) == [ms * MS for ms in (100, 300, 900, 2700)]


def test_linear_probed() -> None:
    backoff = Backoff.linear("1 second", "2 seconds", max="6 seconds")
    assert delays(backoff, 5) == [s * S for s in (1, 3, 5, 6, 6)]


def test_presets() -> None:
    assert Backoff.standard == Backoff.exponential("1s", max="30s", factor=2)
    assert Backoff.aggressive == Backoff.exponential("100ms", max="5s")
    assert Backoff.patient == Backoff.exponential("5s", max="120s")
    assert Backoff.simple == Backoff.constant("1s")
    assert delays(Backoff.aggressive, 8)[-1] == 5 * S
    assert delays(Backoff.patient, 6) == [s * S for s in (5, 10, 20, 40, 80, 120)]


def test_fixed_is_constant() -> None:
    assert Backoff.fixed("5 seconds") == Backoff.constant(5000)
    assert delays(Backoff.fixed("5 seconds"), 4) == [5 * S] * 4


def test_durations_accept_every_form() -> None:
    forms: list[timedelta | float | str] = [timedelta(seconds=2), 2000, 2000.0, "2s", "2 sec"]
    for form in forms:
        assert Backoff.constant(form).delay(1) == 2 * S
        assert Backoff.exponential(form).delay(1) == 2 * S
        assert Backoff.linear(form, form).delay(2) == 4 * S


def test_fractional_factor() -> None:
    backoff = Backoff.exponential("1s", factor=1.5)
    assert delays(backoff, 4) == [S, 1.5 * S, 2.25 * S, 3.375 * S]


def test_linear_without_max_grows() -> None:
    assert delays(Backoff.linear("1s", "1s"), 4) == [S, 2 * S, 3 * S, 4 * S]


def test_zero_base_and_factor_one() -> None:
    assert Backoff.exponential(0).delay(50) == timedelta(0)
    assert Backoff.exponential("3s", factor=1).delay(10_000) == 3 * S


@pytest.mark.parametrize(
    "backoff",
    [
        Backoff.exponential("1s"),
        Backoff.exponential("1ms", factor=1.01),
        Backoff.exponential("1s", factor=1e9),
        Backoff.linear("1s", "1 week"),
    ],
)
def test_no_overflow_without_max(backoff: Backoff) -> None:
    for attempt in (10_000, 10**9, 10**30):
        assert backoff.delay(attempt) == MAX_DELAY


@pytest.mark.parametrize("attempt", [10_000, 10**9, 10**30])
def test_no_overflow_with_max(attempt: int) -> None:
    assert Backoff.standard.delay(attempt) == 30 * S
    assert Backoff.exponential("1s", max="1 hour", factor=1.5).delay(attempt) == timedelta(hours=1)
    assert Backoff.linear("1s", "1s", max="1 min").delay(attempt) == timedelta(minutes=1)


def test_max_below_base_caps_everything() -> None:
    assert delays(Backoff.exponential("10s", max="3s"), 3) == [3 * S] * 3


@pytest.mark.parametrize("attempt", [0, -1, True])
def test_attempt_is_one_based(attempt: int) -> None:
    with pytest.raises(ValueError, match="attempt"):
        Backoff.standard.delay(attempt)


@given(
    st.integers(min_value=0, max_value=10_000),
    st.floats(min_value=1, max_value=10),
    st.one_of(st.none(), st.integers(min_value=0, max_value=10**7)),
    st.integers(min_value=1, max_value=200),
)
def test_exponential_is_monotone_and_capped(
    base_ms: int, factor: float, max_ms: int | None, attempt: int
) -> None:
    backoff = Backoff.exponential(base_ms, max=max_ms, factor=factor)
    first, second = backoff.delay(attempt), backoff.delay(attempt + 1)
    assert timedelta(0) <= first <= second <= MAX_DELAY
    if max_ms is not None:
        assert second <= timedelta(milliseconds=max_ms)


@given(st.integers(min_value=1, max_value=60), st.sampled_from([2, 3, 10]))
def test_integral_factor_is_exact(attempt: int, factor: int) -> None:
    expected_us: int = 7000 * factor ** (attempt - 1)
    max_us = MAX_DELAY // timedelta(microseconds=1)
    expected = timedelta(microseconds=min(expected_us, max_us))
    assert Backoff.exponential(7, factor=factor).delay(attempt) == expected


# -- validation -------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Backoff.exponential("-1s"), "base"),
        (lambda: Backoff.exponential("1s", max="-1s"), "max"),
        (lambda: Backoff.exponential("nonsense"), "base"),
        (lambda: Backoff.linear("-1s", "1s"), "initial"),
        (lambda: Backoff.linear("1s", "-1s"), "increment"),
        (lambda: Backoff.linear("1s", "1s", max="later"), "max"),
        (lambda: Backoff.constant(-5), "delay"),
        (lambda: Backoff.exponential("1s", factor=0.5), "factor"),
        (lambda: Backoff.exponential("1s", factor=float("nan")), "factor"),
        (lambda: Backoff.exponential("1s", factor=float("inf")), "factor"),
        (lambda: Backoff(kind="constant", base=timedelta(seconds=-1)), "base"),
    ],
)
def test_invalid_backoff_names_the_field(build: object, field: str) -> None:
    assert callable(build)
    with pytest.raises(ValueError, match=field):
        build()


def test_backoff_is_frozen_and_keyword_only() -> None:
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        Backoff.standard.base = S  # type: ignore[misc]
    with pytest.raises(TypeError):
        Backoff("constant", S)  # type: ignore[call-arg]


def test_retry_defaults() -> None:
    policy = Retry(3)
    assert policy.max_attempts == 3
    assert policy.delay == Backoff.standard
    assert policy.jitter is True
    assert policy.max_duration is None


def test_retry_delay_accepts_durations() -> None:
    assert Retry(2, delay="5 s").delay == Backoff.constant("5s")
    assert Retry(2, delay=250).delay == Backoff.constant(250)
    assert Retry(2, delay=timedelta(seconds=1)).delay == Backoff.simple
    assert Retry(2, max_duration="1 min").max_duration == timedelta(minutes=1)


@pytest.mark.parametrize(
    ("build", "field"),
    [
        (lambda: Retry(0), "max_attempts"),
        (lambda: Retry(-3), "max_attempts"),
        (lambda: Retry(True), "max_attempts"),
        (lambda: Retry(2.5), "max_attempts"),  # type: ignore[arg-type]
        (lambda: Retry(3, delay="-1s"), "delay"),
        (lambda: Retry(3, delay="whenever"), "delay"),
        (lambda: Retry(3, max_duration="-1s"), "max_duration"),
    ],
)
def test_invalid_retry_names_the_field(build: object, field: str) -> None:
    assert callable(build)
    with pytest.raises(ValueError, match=field):
        build()


def test_retry_only_max_attempts_is_positional() -> None:
    with pytest.raises(TypeError):
        Retry(3, "1s")  # type: ignore[call-arg]
    assert Retry(max_attempts=3) == Retry(3)


# -- delay_for and jitter ----------------------------------------------------------------


def test_delay_for_without_jitter_is_the_backoff() -> None:
    policy = Retry(10, jitter=False)
    assert [policy.delay_for(n) for n in range(1, 8)] == delays(Backoff.standard, 7)


@pytest.mark.parametrize("attempt", [1, 3, 6, 40])
def test_jitter_bounds(attempt: int) -> None:
    policy = Retry(100)
    base = Backoff.standard.delay(attempt)
    rng = random.Random(1234)
    draws = [policy.delay_for(attempt, rng) for _ in range(2000)]
    assert all(base * 0.9 <= d <= base * 1.1 for d in draws)
    assert min(draws) < base * 0.92
    assert max(draws) > base * 1.08
    assert len(set(draws)) > 1000


def test_jitter_is_reproducible_with_a_seeded_rng() -> None:
    policy = Retry(5, delay="1 s")
    first = [policy.delay_for(n, random.Random(7)) for n in range(1, 5)]
    again = [policy.delay_for(n, random.Random(7)) for n in range(1, 5)]
    assert first == again


def test_jitter_without_rng_stays_in_bounds() -> None:
    for _ in range(200):
        assert 0.9 * S <= Retry(5, delay="1s").delay_for(1) <= 1.1 * S


def test_delay_for_validates_attempt() -> None:
    with pytest.raises(ValueError, match="attempt"):
        Retry(3).delay_for(0)


# -- should_retry ------------------------------------------------------------------------


@pytest.mark.parametrize("max_attempts", [1, 2, 3, 7])
def test_should_retry_counts_all_attempts(max_attempts: int) -> None:
    policy = Retry(max_attempts)
    decisions = [policy.should_retry(n) for n in range(1, max_attempts + 3)]
    assert decisions == [True] * (max_attempts - 1) + [False] * 3
    # so the number of attempts made, first try included, is exactly max_attempts:
    attempts = 1
    while policy.should_retry(attempts):
        attempts += 1
    assert attempts == max_attempts


def test_should_retry_validates_attempt() -> None:
    with pytest.raises(ValueError, match="failed_attempt"):
        Retry(3).should_retry(0)


def test_max_duration_stops_before_the_budget_is_exceeded() -> None:
    policy = Retry(100, delay=Backoff.constant("10 s"), max_duration="30 s")
    assert policy.should_retry(1, timedelta(seconds=0))
    assert policy.should_retry(2, timedelta(seconds=20))  # 20 + 10 == 30: allowed
    assert not policy.should_retry(3, timedelta(seconds=21))
    assert policy.should_retry(1)  # elapsed unknown: counts as 0


def test_max_duration_uses_the_next_backoff_delay() -> None:
    policy = Retry(100, delay=Backoff.exponential("1s"), max_duration="10 s", jitter=False)
    # delays 1, 2, 4, 8: after attempt 4 the next wait is 8 s
    assert policy.should_retry(3, timedelta(seconds=6))  # 6 + 4 = 10
    assert not policy.should_retry(4, timedelta(seconds=3))  # 3 + 8 = 11
    assert not Retry(5, delay="1 min", max_duration="30 s").should_retry(1)


def test_max_attempts_wins_over_max_duration() -> None:
    assert not Retry(2, max_duration="1 day").should_retry(2, timedelta(0))
