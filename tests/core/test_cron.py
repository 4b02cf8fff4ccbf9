"""CronSchedule: 5/6-field (seconds first), validation at parse, DST, and properties."""

from __future__ import annotations

import functools
from datetime import UTC, datetime, timedelta, timezone
from itertools import islice, pairwise
from zoneinfo import ZoneInfo

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from durable_effect._cron import CronSchedule


def utc(  # noqa: PLR0917 - mirrors datetime()
    year: int, month: int, day: int, hour: int = 0, minute: int = 0, second: int = 0, us: int = 0
) -> datetime:
    return datetime(year, month, day, hour, minute, second, us, tzinfo=UTC)


def fires(schedule: CronSchedule, start: datetime, count: int) -> list[datetime]:
    return list(islice(schedule.iter_after(start), count))


# -- fields ------------------------------------------------------------------------------


def test_five_fields_minute_first() -> None:
    schedule = CronSchedule.parse("*/5 * * * *")
    assert schedule.next_after(utc(2024, 1, 1, 0, 3)) == utc(2024, 1, 1, 0, 5)
    assert fires(CronSchedule.parse("0 9 * * *"), utc(2024, 1, 1), 2) == [
        utc(2024, 1, 1, 9),
        utc(2024, 1, 2, 9),
    ]


def test_six_fields_seconds_first() -> None:
    schedule = CronSchedule.parse("15 0 * * * *")  # second 15 of minute 0 of every hour
    assert fires(schedule, utc(2024, 1, 1), 3) == [
        utc(2024, 1, 1, 0, 0, 15),
        utc(2024, 1, 1, 1, 0, 15),
        utc(2024, 1, 1, 2, 0, 15),
    ]
    noon = CronSchedule.parse("30 0 12 * * *")
    assert noon.next_after(utc(2024, 1, 1)) == utc(2024, 1, 1, 12, 0, 30)
    every_ten = CronSchedule.parse("*/10 * * * * *")
    assert fires(every_ten, utc(2024, 1, 1, 0, 0, 5), 2) == [
        utc(2024, 1, 1, 0, 0, 10),
        utc(2024, 1, 1, 0, 0, 20),
    ]


def test_strictly_after() -> None:
    schedule = CronSchedule.parse("0 * * * *")
    assert schedule.next_after(utc(2024, 1, 1, 5)) == utc(2024, 1, 1, 6)
    assert schedule.next_after(utc(2024, 1, 1, 5, 59, 59, 999_999)) == utc(2024, 1, 1, 6)
    seconds = CronSchedule.parse("* * * * * *")
    assert seconds.next_after(utc(2024, 1, 1, 0, 0, 0, 500_000)) == utc(2024, 1, 1, 0, 0, 1)


def test_names_ranges_and_lists() -> None:
    weekdays = CronSchedule.parse("0 9 * * MON-FRI")
    assert weekdays.next_after(utc(2024, 1, 5, 10)) == utc(2024, 1, 8, 9)  # Fri -> Mon
    assert CronSchedule.parse("0 0 1 JAN,JUL *").next_after(utc(2024, 2, 1)) == utc(2024, 7, 1)


def test_result_is_aware_utc_for_any_aware_input() -> None:
    schedule = CronSchedule.parse("0 12 * * *")
    plus_five = timezone(timedelta(hours=5))
    result = schedule.next_after(datetime(2024, 1, 1, 16, tzinfo=plus_five))  # 11:00 UTC
    assert result == utc(2024, 1, 1, 12)
    assert result.tzinfo is UTC


def test_time_zone_without_dst() -> None:
    schedule = CronSchedule.parse("0 9 * * *", tz="Asia/Tokyo")
    assert schedule.next_after(utc(2024, 6, 1)) == utc(2024, 6, 2, 0)


def test_naive_datetime_is_rejected() -> None:
    with pytest.raises(ValueError, match="aware"):
        CronSchedule.parse("* * * * *").next_after(datetime(2024, 1, 1))


def test_value_semantics() -> None:
    assert CronSchedule.parse("0 2 * * *", "Europe/Berlin") == CronSchedule.parse(
        "0 2 * * *", tz="Europe/Berlin"
    )
    assert hash(CronSchedule.parse("0 2 * * *")) == hash(CronSchedule.parse("0 2 * * *"))
    assert CronSchedule.parse("0 2 * * *") != CronSchedule.parse("0 2 * * *", "Europe/Berlin")
    assert CronSchedule.parse("0 2 * * *").tz == "UTC"


# -- validation at definition time -------------------------------------------------------


@pytest.mark.parametrize(
    "expr",
    [
        "",
        "* * * *",
        "* * * * * * *",
        "60 * * * *",
        "* 24 * * *",
        "x * * * *",
        "0 0 31 2 *",
        "0 0 * 13 *",
        "@daily",
        "R * * * *",
        "H * * * *",
        "h(0-5) * * * *",
        "61 * * * * *",
    ],
)
def test_bad_expression_raises_naming_it(expr: str) -> None:
    with pytest.raises(ValueError, match="invalid cron expression") as info:
        CronSchedule.parse(expr)
    assert repr(expr) in str(info.value)


def test_non_string_expression() -> None:
    with pytest.raises(ValueError, match="invalid cron expression"):
        CronSchedule.parse(None)  # type: ignore[arg-type]


@pytest.mark.parametrize("zone", ["Mars/Olympus", "", "../etc/passwd", "utc", "Europe/Berl1n"])
def test_bad_zone_raises_naming_it(zone: str) -> None:
    with pytest.raises(ValueError, match="invalid time zone") as info:
        CronSchedule.parse("0 0 * * *", tz=zone)
    assert repr(zone) in str(info.value)


# -- DST ---------------------------------------------------------------------------------


def test_berlin_spring_forward_daily_fires_once_at_three() -> None:
    schedule = CronSchedule.parse("0 2 * * *", tz="Europe/Berlin")
    assert fires(schedule, utc(2024, 3, 29, 12), 3) == [
        utc(2024, 3, 30, 1),  # 02:00 CET
        utc(2024, 3, 31, 1),  # 02:00 does not exist: 03:00 CEST
        utc(2024, 4, 1, 0),  # 02:00 CEST
    ]


def test_berlin_spring_forward_shifts_by_the_gap() -> None:
    schedule = CronSchedule.parse("30 2 * * *", tz="Europe/Berlin")
    assert schedule.next_after(utc(2024, 3, 30, 12)) == utc(2024, 3, 31, 1, 30)  # 03:30 CEST


def test_new_york_fall_back_daily_fires_once() -> None:
    schedule = CronSchedule.parse("30 1 * * *", tz="America/New_York")
    assert fires(schedule, utc(2024, 11, 2, 12), 3) == [
        utc(2024, 11, 3, 5, 30),  # 01:30 EDT (first occurrence)
        utc(2024, 11, 4, 6, 30),  # 01:30 EST
        utc(2024, 11, 5, 6, 30),
    ]


def test_new_york_fall_back_fixed_hour_fires_in_first_occurrence_only() -> None:
    schedule = CronSchedule.parse("*/15 1 * * *", tz="America/New_York")
    day = [f for f in fires(schedule, utc(2024, 11, 3), 8) if f < utc(2024, 11, 3, 12)]
    assert day == [utc(2024, 11, 3, 5, m) for m in (0, 15, 30, 45)]


def test_new_york_fall_back_wildcard_hour_keeps_pace() -> None:
    schedule = CronSchedule.parse("*/30 * * * *", tz="America/New_York")
    got = fires(schedule, utc(2024, 11, 3, 4, 45), 6)
    assert got == [utc(2024, 11, 3, 5) + timedelta(minutes=30 * k) for k in range(6)]


def test_new_york_spring_forward_wildcard_hour_has_no_duplicates() -> None:
    schedule = CronSchedule.parse("*/30 * * * *", tz="America/New_York")
    got = fires(schedule, utc(2024, 3, 10, 6, 15), 4)  # 01:15 EST; 02:00 EST -> 03:00 EDT
    assert got == [
        utc(2024, 3, 10, 6, 30),
        utc(2024, 3, 10, 7),
        utc(2024, 3, 10, 7, 30),
        utc(2024, 3, 10, 8),
    ]


def test_just_after_spring_forward_the_shifted_fire_is_still_due() -> None:
    schedule = CronSchedule.parse("30 2 * * *", tz="Europe/Berlin")
    # 03:10 CEST, just after the jump: 02:30 (shifted to 03:30 CEST) has not fired yet
    assert schedule.next_after(utc(2024, 3, 31, 1, 10)) == utc(2024, 3, 31, 1, 30)


def test_inside_the_repeated_hour_a_fixed_hour_does_not_fire_again() -> None:
    schedule = CronSchedule.parse("*/15 1 * * *", tz="America/New_York")
    # 01:10 EST, the second 01:10 of the day: 01:15 already fired at 01:15 EDT
    assert schedule.next_after(utc(2024, 11, 3, 6, 10)) == utc(2024, 11, 4, 6)
    wildcard = CronSchedule.parse("*/15 * * * *", tz="America/New_York")
    assert wildcard.next_after(utc(2024, 11, 3, 6, 10)) == utc(2024, 11, 3, 6, 15)


def test_midnight_transition_santiago() -> None:
    # Chile springs forward at 24:00 -> 01:00: midnight does not exist that day.
    schedule = CronSchedule.parse("0 0 * * *", tz="America/Santiago")
    got = fires(schedule, utc(2024, 9, 6, 12), 3)
    local = [g.astimezone(ZoneInfo("America/Santiago")) for g in got]
    assert [d.date().isoformat() for d in local] == ["2024-09-07", "2024-09-08", "2024-09-09"]
    assert [d.hour for d in local] == [0, 1, 0]


# -- properties --------------------------------------------------------------------------

EXPRESSIONS = [
    "*/5 * * * *",
    "0 * * * *",
    "30 1 * * *",
    "0 2 * * *",
    "15 2 * * *",
    "0 0 * * *",
    "45 23 * * *",
    "*/20 1-3 * * *",
    "0 9 * * MON-FRI",
    "0 0 1 * *",
    "30 */2 * * *",
    "0 30 1 * * *",
    "*/30 * * * * *",
]
ZONES = [
    "UTC",
    "Europe/Berlin",
    "America/New_York",
    "Australia/Lord_Howe",
    "America/Santiago",
    "Australia/Sydney",
    "Asia/Kolkata",
    "Europe/London",
]


@functools.cache
def transitions(zone: str, year: int) -> tuple[datetime, ...]:
    """The instants (to the hour) where ``zone`` changes offset in ``year``."""
    tz = ZoneInfo(zone)
    found: list[datetime] = []
    t = utc(year, 1, 1)
    previous = t.astimezone(tz).utcoffset()
    while t.year == year:
        t += timedelta(hours=1)
        offset = t.astimezone(tz).utcoffset()
        if offset != previous:
            found.append(t)
            previous = offset
    return tuple(found) or (utc(year, 6, 1),)


@st.composite
def instants_near_transitions(draw: st.DrawFn, zone: str, spread: timedelta) -> datetime:
    year = draw(st.integers(min_value=2021, max_value=2027))
    near = draw(st.sampled_from(transitions(zone, year)))
    seconds = int(spread.total_seconds())
    us = draw(st.sampled_from([0, draw(st.integers(min_value=0, max_value=999_999))]))
    offset = timedelta(seconds=draw(st.integers(min_value=-seconds, max_value=seconds)))
    return near + offset + timedelta(microseconds=us)


@st.composite
def cases(draw: st.DrawFn, spread: timedelta = timedelta(days=2)) -> tuple[CronSchedule, datetime]:
    zone = draw(st.sampled_from(ZONES))
    expr = draw(st.sampled_from(EXPRESSIONS))
    return CronSchedule.parse(expr, tz=zone), draw(instants_near_transitions(zone, spread))


@settings(max_examples=100, deadline=None)
@given(cases())
def test_next_after_is_strictly_increasing(case: tuple[CronSchedule, datetime]) -> None:
    schedule, t = case
    previous = t
    for fire in fires(schedule, t, 6):
        assert fire > previous
        assert fire.tzinfo is UTC
        previous = fire


@settings(max_examples=100, deadline=None)
@given(cases(), st.floats(min_value=0, max_value=1, exclude_max=True))
def test_nothing_is_skipped_between_t_and_next(
    case: tuple[CronSchedule, datetime], fraction: float
) -> None:
    """Any instant between ``t`` and its next fire has the same next fire."""
    schedule, t = case
    fire = schedule.next_after(t)
    between = min(t + (fire - t) * fraction, fire - timedelta(microseconds=1))
    assert schedule.next_after(between) == fire


@settings(max_examples=60, deadline=None)
@given(
    st.sampled_from([z for z in ZONES if z != "UTC"]),
    st.integers(min_value=0, max_value=59),
    st.integers(min_value=0, max_value=23),
    st.integers(min_value=2021, max_value=2027),
)
def test_daily_never_skips_a_day_across_dst(zone: str, minute: int, hour: int, year: int) -> None:
    schedule = CronSchedule.parse(f"{minute} {hour} * * *", tz=zone)
    tz = ZoneInfo(zone)
    for transition in transitions(zone, year):
        start = transition - timedelta(days=3)
        days = [f.astimezone(tz) for f in fires(schedule, start, 6)]
        dates = [d.date() for d in days]
        assert all(b - a == timedelta(days=1) for a, b in pairwise(dates))
        for local in days:
            # on time, or shifted forward by a spring-forward gap (at most 1 hour here)
            wall = local.replace(tzinfo=None)
            due = wall.replace(hour=hour, minute=minute)
            assert timedelta(0) <= wall - due <= timedelta(hours=1)


def expected_fires(schedule: CronSchedule, start: datetime, end: datetime) -> list[datetime]:
    """Brute-force model: every matching wall time, mapped to instants by zoneinfo.

    Matching wall times come from the same expression in UTC (no DST: wall == instant).
    A wall time maps to its first occurrence (fold=0; a skipped time is shifted by the gap),
    plus its second occurrence when the hour field is a wildcard.
    """
    tz = ZoneInfo(schedule.tz)
    in_utc = CronSchedule.parse(schedule.expr)
    repeat = schedule.expr.split()[-4].startswith("*")
    out: set[datetime] = set()
    wall_start = (start.astimezone(tz).replace(tzinfo=None) - timedelta(hours=3)).replace(
        tzinfo=UTC
    )
    for wall in in_utc.iter_after(wall_start):
        naive = wall.replace(tzinfo=None)
        first = naive.replace(tzinfo=tz, fold=0).astimezone(UTC)
        second = naive.replace(tzinfo=tz, fold=1).astimezone(UTC)
        if first > end + timedelta(hours=3):
            break
        out.add(first)
        if repeat and second > first:
            out.add(second)
    return sorted(f for f in out if start < f <= end)


# Expressions aimed at the hours where transitions happen (local 00:00-03:00).
NIGHT_EXPRESSIONS = st.builds(
    "{} {} * * *".format,
    st.sampled_from(["0", "30", "45", "*/15", "*/20", "10,50"]),
    st.sampled_from(["*", "0", "1", "2", "3", "1-3", "*/2", "0-2"]),
)


@st.composite
def night_cases(draw: st.DrawFn) -> tuple[CronSchedule, datetime]:
    zone = draw(st.sampled_from([z for z in ZONES if z not in ("UTC", "Asia/Kolkata")]))
    schedule = CronSchedule.parse(draw(NIGHT_EXPRESSIONS), tz=zone)
    return schedule, draw(instants_near_transitions(zone, timedelta(hours=4)))


@settings(max_examples=150, deadline=None)
@given(st.one_of(cases(spread=timedelta(hours=6)), night_cases()))
def test_matches_brute_force_model(case: tuple[CronSchedule, datetime]) -> None:
    schedule, t = case
    end = t + timedelta(hours=12)
    expected = expected_fires(schedule, t, end)
    got = list(_until(schedule, t, end))
    assert got == expected


def _until(schedule: CronSchedule, start: datetime, end: datetime) -> list[datetime]:
    out: list[datetime] = []
    for fire in schedule.iter_after(start):
        if fire > end:
            break
        out.append(fire)
    return out
