"""Continuous definitions: ``make``'s checks at definition time, and the schedule arithmetic."""

from __future__ import annotations

import logging
from datetime import UTC, datetime, timedelta
from itertools import islice
from typing import Any

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from durable_effect import Effect
from durable_effect._backoff import Retry
from durable_effect._cron import CronSchedule
from durable_effect.jobs._base import JobDefinition
from durable_effect.jobs._continuous import (
    Continuous,
    ContinuousContext,
    ContinuousDefinition,
    Cron,
    Every,
)
from tests.jobs._continuous_support import T0, Counter, Probe, counter_job


def noop(ctx: ContinuousContext[Counter]) -> Effect[None]:
    return Effect.succeed(None)


EVERY = Continuous.every("1 min")


# -- make --------------------------------------------------------------------------------------


def test_make_gives_a_continuous_definition_with_defaults() -> None:
    job = Continuous.make(Counter, EVERY, noop)
    assert isinstance(job, ContinuousDefinition)
    assert isinstance(job, JobDefinition)
    assert job.job_type == "continuous"
    assert (job.state_schema, job.schedule, job.execute) == (Counter, EVERY, noop)
    assert (job.start_immediately, job.retry, job.logging, job.misfire) == (
        True,
        None,
        None,
        "run_once",
    )
    # SPEC 10.2: by default the job sets no threshold of its own; the logger's level decides.
    assert job.log_level == logging.NOTSET
    assert Continuous.make(Counter, EVERY, noop, logging=False).log_level == logging.ERROR


def test_make_takes_every_option() -> None:
    retry = Retry(3)
    job = Continuous.make(
        Counter,
        Continuous.cron("0 * * * *", tz="Europe/Paris"),
        noop,
        start_immediately=False,
        retry=retry,
        logging=True,
        misfire="run_all",
    )
    assert (job.start_immediately, job.retry, job.misfire) == (False, retry, "run_all")
    assert job.log_level == logging.DEBUG
    assert Continuous.make(Counter, EVERY, noop, logging=logging.WARNING).log_level == 30


def test_definitions_are_distinct_values() -> None:
    a = counter_job(Probe())
    b = counter_job(Probe())
    assert a != b  # identity semantics: the registry tells definitions apart by object


@pytest.mark.parametrize(
    ("kwargs", "error", "field"),
    [
        ({"state_schema": object()}, TypeError, "state_schema"),
        ({"schedule": "every 5 minutes"}, TypeError, "schedule"),
        ({"schedule": timedelta(minutes=5)}, TypeError, "schedule"),
        ({"execute": "not callable"}, TypeError, "execute"),
        ({"start_immediately": "yes"}, TypeError, "start_immediately"),
        ({"retry": 3}, TypeError, "retry"),
        ({"logging": "loud"}, TypeError, "logging"),
        ({"misfire": "catch_up"}, ValueError, "misfire"),
    ],
)
def test_make_refuses_bad_arguments(
    kwargs: dict[str, Any], error: type[Exception], field: str
) -> None:
    arguments: dict[str, Any] = {"state_schema": Counter, "schedule": EVERY, "execute": noop}
    arguments.update(kwargs)
    with pytest.raises(error, match=field):
        Continuous.make(**arguments)


@pytest.mark.parametrize("bad", ["-5s", "soon", "", 0, "0 ms", -1, float("nan")])
def test_every_refuses_non_positive_or_garbage_durations(bad: Any) -> None:
    with pytest.raises(ValueError, match=r"Continuous\.every"):
        Continuous.every(bad)


@pytest.mark.parametrize(
    ("given_", "interval"),
    [
        ("5s", timedelta(seconds=5)),
        ("30 minutes", timedelta(minutes=30)),
        ("2.5 hours", timedelta(hours=2.5)),
        (1500, timedelta(milliseconds=1500)),
        ("100", timedelta(milliseconds=100)),
        (timedelta(days=1), timedelta(days=1)),
    ],
)
def test_every_takes_every_duration_grammar(given_: Any, interval: timedelta) -> None:
    assert Continuous.every(given_) == Every(interval=interval)


@pytest.mark.parametrize(
    "bad",
    ["", "* * * *", "* * * * * * *", "61 * * * *", "0 25 * * *", "0 0 31 2 *", "not a cron"],
)
def test_cron_refuses_bad_expressions_at_definition_time(bad: str) -> None:
    with pytest.raises(ValueError, match="cron"):
        Continuous.cron(bad)


def test_cron_refuses_an_unknown_time_zone() -> None:
    with pytest.raises(ValueError, match="Mars/Olympus"):
        Continuous.cron("0 0 * * *", tz="Mars/Olympus")


def test_cron_keeps_expression_and_zone() -> None:
    cron = Continuous.cron("*/5 * * * * *", tz="Asia/Tokyo")
    assert (cron.expr, cron.tz) == ("*/5 * * * * *", "Asia/Tokyo")
    assert cron.first_tick(T0) == T0 + timedelta(seconds=5)


def test_state_schemas_may_be_builtins_and_generics() -> None:
    def execute(ctx: ContinuousContext[dict[str, int]]) -> Effect[None]:
        return Effect.succeed(None)

    job = Continuous.make(dict[str, int], EVERY, execute)
    assert job.state_schema == dict[str, int]


# -- Every arithmetic ------------------------------------------------------------------------

instants = st.datetimes(
    min_value=datetime(2000, 1, 1), max_value=datetime(2100, 1, 1), timezones=st.just(UTC)
)
intervals = st.timedeltas(min_value=timedelta(milliseconds=1), max_value=timedelta(days=30))
gaps = st.timedeltas(min_value=timedelta(0), max_value=timedelta(days=3650))


@settings(max_examples=300, deadline=None)
@given(tick=instants, interval=intervals, gap=gaps)
def test_every_first_after_is_the_first_grid_tick_after_now(
    tick: datetime, interval: timedelta, gap: timedelta
) -> None:
    every = Every(interval=interval)
    now = tick + gap
    first = every.first_after(tick, now)
    assert now < first <= now + interval
    assert (first - tick) % interval == timedelta(0)


@settings(max_examples=300, deadline=None)
@given(tick=instants, interval=intervals, gap=gaps)
def test_every_last_at_or_before_is_the_latest_grid_tick(
    tick: datetime, interval: timedelta, gap: timedelta
) -> None:
    every = Every(interval=interval)
    now = tick + gap
    last = every.last_at_or_before(tick, now)
    assert tick <= last <= now < last + interval
    assert (last - tick) % interval == timedelta(0)
    assert every.first_after(tick, now) == last + interval


def test_every_first_after_a_future_tick_is_that_tick() -> None:
    every = Every(interval=timedelta(minutes=10))
    assert every.first_after(T0 + timedelta(minutes=3), T0) == T0 + timedelta(minutes=3)


# -- Cron arithmetic -------------------------------------------------------------------------

EXPRESSIONS = [
    "*/7 * * * *",
    "0 * * * *",
    "15 3 * * *",
    "0 9 * * MON-FRI",
    "* 0 * * *",
    "0 0 1 * *",
    "*/30 * * * * *",
    "0 0 29 2 *",
]
ZONES = ["UTC", "Europe/Berlin", "America/New_York", "Australia/Lord_Howe"]


def brute_last(cron: CronSchedule, tick: datetime, now: datetime) -> datetime:
    last = tick
    for t in cron.iter_after(tick):
        if t > now:
            return last
        last = t
    raise AssertionError("unreachable")  # pragma: no cover


@settings(max_examples=150, deadline=None)
@given(
    expr=st.sampled_from(EXPRESSIONS),
    tz=st.sampled_from(ZONES),
    start=instants,
    ticks_later=st.integers(min_value=0, max_value=40),
    extra=st.timedeltas(min_value=timedelta(0), max_value=timedelta(hours=30)),
)
def test_cron_last_at_or_before_matches_walking_the_ticks(
    expr: str, tz: str, start: datetime, ticks_later: int, extra: timedelta
) -> None:
    schedule = Cron.parse(expr, tz)
    tick = schedule.first_tick(start)
    later = list(islice(schedule.cron.iter_after(tick), ticks_later))
    now = (later[-1] if later else tick) + extra
    assert schedule.last_at_or_before(tick, now) == brute_last(schedule.cron, tick, now)
    first = schedule.first_after(tick, now)
    assert first > now
    assert first == schedule.cron.next_after(now)


def test_cron_last_at_or_before_after_a_long_downtime_is_exact() -> None:
    every_second = Cron.parse("* * * * * *")
    now = T0 + timedelta(days=365, microseconds=500)
    assert every_second.last_at_or_before(T0, now) == T0 + timedelta(days=365)
    leap = Cron.parse("0 0 29 2 *")
    tick = leap.first_tick(T0)
    assert tick == datetime(2028, 2, 29, tzinfo=UTC)
    assert leap.last_at_or_before(tick, datetime(2040, 1, 1, tzinfo=UTC)) == datetime(
        2036, 2, 29, tzinfo=UTC
    )


def test_schedules_are_plain_values() -> None:
    assert Continuous.every("1 min") == Continuous.every("60 s")
    assert Continuous.cron("0 * * * *") == Continuous.cron("0 * * * *")
    assert Continuous.cron("0 * * * *") != Continuous.cron("0 * * * *", tz="Europe/Paris")
