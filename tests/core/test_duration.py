"""Duration.parse / format / millis: both grammars of the originals, errors, round-trips."""

from __future__ import annotations

import math
from datetime import timedelta

import pytest
from hypothesis import given
from hypothesis import strategies as st

from durable_effect._duration import Duration

MS = timedelta(milliseconds=1)
S = timedelta(seconds=1)
MIN = timedelta(minutes=1)
H = timedelta(hours=1)
D = timedelta(days=1)
W = timedelta(weeks=1)

UNIT_NAMES: dict[timedelta, tuple[str, ...]] = {
    MS: ("ms", "msec", "msecs", "millis", "milli", "millisecond", "milliseconds"),
    S: ("s", "sec", "secs", "second", "seconds"),
    MIN: ("m", "min", "mins", "minute", "minutes"),
    H: ("h", "hr", "hrs", "hour", "hours"),
    D: ("d", "day", "days"),
    W: ("w", "week", "weeks"),
}


@pytest.mark.parametrize(
    ("text", "expected"),
    [
        # the `ms` package's grammar
        ("5s", 5 * S),
        ("5 min", 5 * MIN),
        ("2.5 hours", timedelta(hours=2, minutes=30)),
        ("100", 100 * MS),
        ("1.5", timedelta(microseconds=1500)),
        ("2d", 2 * D),
        ("1w", W),
        ("1h", H),
        (".5s", 500 * MS),
        ("10.", 10 * MS),
        ("1y", timedelta(days=365.25)),
        # Effect's grammar
        ("30 minutes", 30 * MIN),
        ("1 week", W),
        ("5 millis", 5 * MS),
        ("1 second", S),
        ("2 days", 2 * D),
        ("3 hours", 3 * H),
        ("250 micros", timedelta(microseconds=250)),
        # whitespace and zero
        ("  5   s  ", 5 * S),
        ("5\tmin", 5 * MIN),
        ("0", timedelta(0)),
        ("0s", timedelta(0)),
        ("-0 s", timedelta(0)),
        ("+5s", 5 * S),
    ],
)
def test_grammar_forms(text: str, expected: timedelta) -> None:
    assert Duration.parse(text) == expected


@pytest.mark.parametrize("unit", [u for names in UNIT_NAMES.values() for u in names])
def test_every_unit_name(unit: str) -> None:
    expected = next(value for value, names in UNIT_NAMES.items() if unit in names)
    assert Duration.parse(f"3{unit}") == 3 * expected
    assert Duration.parse(f"3 {unit}") == 3 * expected


@pytest.mark.parametrize(
    "text", ["5S", "5 MIN", "2.5 Hours", "30 MINUTES", "1 Week", "5 MILLIS", "1 Ms", "2 D"]
)
def test_case_insensitive(text: str) -> None:
    assert Duration.parse(text) == Duration.parse(text.lower())


def test_decimals_are_exact() -> None:
    assert Duration.parse("0.1 s") == 100 * MS
    assert Duration.parse("0.001 ms") == timedelta(microseconds=1)
    assert Duration.parse("1.1 h") == timedelta(hours=1, minutes=6)


@pytest.mark.parametrize(
    ("number", "expected"),
    [
        (0, timedelta(0)),
        (1, MS),
        (1500, 1500 * MS),
        (0.5, timedelta(microseconds=500)),
        (2.25, timedelta(microseconds=2250)),
    ],
)
def test_numbers_are_milliseconds(number: float, expected: timedelta) -> None:
    assert Duration.parse(number) == expected


def test_timedelta_passes_through() -> None:
    value = timedelta(minutes=3, microseconds=7)
    assert Duration.parse(value) is value


@pytest.mark.parametrize(
    "bad",
    [
        "-5s",
        "-1",
        "",
        "   ",
        "soon",
        "5 parsecs",
        "5s5",
        "s",
        "5 s s",
        "1,5s",
        "1e3s",
        "nan",
        "inf",
        "5 nanos",
        "999999999999 weeks",
        "--5s",
    ],
)
def test_bad_strings_raise_naming_the_input(bad: str) -> None:
    with pytest.raises(ValueError, match="invalid duration") as info:
        Duration.parse(bad)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize(
    "bad", [-1, -0.5, math.nan, math.inf, -math.inf, True, False, timedelta(seconds=-1), 1e300]
)
def test_bad_values_raise_naming_the_input(bad: float | timedelta) -> None:
    with pytest.raises(ValueError, match="invalid duration") as info:
        Duration.parse(bad)
    assert repr(bad) in str(info.value)


@pytest.mark.parametrize("bad", [None, [5], {"s": 5}, b"5s"])
def test_wrong_types_raise_value_error(bad: object) -> None:
    with pytest.raises(ValueError, match="invalid duration"):
        Duration.parse(bad)  # type: ignore[arg-type]


def test_negative_message_says_why() -> None:
    with pytest.raises(ValueError, match="must not be negative"):
        Duration.parse("-5s")


def test_not_instantiable() -> None:
    with pytest.raises(TypeError):
        Duration()


@pytest.mark.parametrize(
    ("value", "text"),
    [
        (timedelta(0), "0 ms"),
        (timedelta(microseconds=1), "0.001 ms"),
        (timedelta(microseconds=1500), "1.5 ms"),
        (1500 * MS, "1.5 s"),
        (30 * MIN, "30 min"),
        (90 * S, "1.5 min"),
        (20 * MIN, "20 min"),
        (25 * H, "25 h"),
        (36 * H, "1.5 d"),
        (10 * D, "10 d"),
        (14 * D, "2 w"),
        (61 * S + 1 * MS, "61.001 s"),
    ],
)
def test_format(value: timedelta, text: str) -> None:
    assert Duration.format(value) == text
    assert Duration.parse(text) == value


def test_format_rejects_negative() -> None:
    with pytest.raises(ValueError, match="negative"):
        Duration.format(timedelta(seconds=-1))


@pytest.mark.parametrize(
    ("value", "millis"),
    [
        (timedelta(0), 0),
        (1500 * MS, 1500),
        (timedelta(microseconds=1499), 1),
        (timedelta(microseconds=1501), 2),
        (timedelta(microseconds=2500), 2),
        (D, 86_400_000),
    ],
)
def test_millis(value: timedelta, millis: int) -> None:
    assert Duration.millis(value) == millis


@given(st.timedeltas(min_value=timedelta(0)))
def test_format_parse_round_trip(value: timedelta) -> None:
    assert Duration.parse(Duration.format(value)) == value


@given(st.integers(min_value=0, max_value=10**12))
def test_integers_are_milliseconds(n: int) -> None:
    assert Duration.parse(n) == timedelta(milliseconds=n)
    assert Duration.parse(str(n)) == timedelta(milliseconds=n)


@given(
    st.integers(min_value=0, max_value=10_000),
    st.sampled_from([(u, v) for v, names in UNIT_NAMES.items() for u in names]),
    st.sampled_from(["", " ", "  "]),
    st.booleans(),
)
def test_count_and_unit(n: int, unit: tuple[str, timedelta], space: str, upper: bool) -> None:
    name, value = unit
    text = f"{n}{space}{name.upper() if upper else name}"
    assert Duration.parse(text) == n * value


@given(st.floats(min_value=0, max_value=1e9, allow_nan=False))
def test_float_milliseconds_match_timedelta(x: float) -> None:
    assert Duration.parse(x) == timedelta(milliseconds=x)
