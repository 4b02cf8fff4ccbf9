"""Behaviour of the Effect core: constructors, combinators, running, laziness, stack safety.

Time-based combinators (``sleep``, ``retry``, ``timeout``) run against ``FakeClock``, installed
with ``durable_effect._clock.use_clock``: it advances instantly, so nothing really sleeps.
"""

from __future__ import annotations

import asyncio
import heapq
import logging
import time
from collections.abc import Callable, Coroutine, Generator, Iterator
from datetime import UTC, datetime, timedelta
from typing import Any, ClassVar, Literal, Never, TypeVar, cast

import attrs
import pytest
from returns.future import FutureResult
from returns.io import IOFailure, IOSuccess
from returns.pipeline import is_successful
from returns.result import Failure, Result, Success

import durable_effect
from durable_effect import Effect, Err, Gen, Ok, errors
from durable_effect._backoff import Backoff, Retry
from durable_effect._clock import use_clock
from durable_effect._log import annotate
from durable_effect.errors import (
    InstanceNotFoundError,
    StorageError,
    TaggedError,
    TimeoutException,
)

# -- helpers -------------------------------------------------------------------------------

T = TypeVar("T")
R = TypeVar("R")


@attrs.frozen(kw_only=True, eq=False)
class Boom(TaggedError):
    """A typed error for tests."""

    tag: ClassVar[Literal["Boom"]] = "Boom"
    code: int

    def describe(self) -> str:
        return f"boom {self.code}"


@attrs.frozen(kw_only=True, eq=False)
class Other(TaggedError):
    """A second typed error, to check that handlers select by class."""

    tag: ClassVar[Literal["Other"]] = "Other"
    reason: str


class Fatal(BaseException):
    """Not an ``Exception``: ``try_`` must not turn it into a typed failure."""


def ok_value(result: Result[Any, Any]) -> Any:
    assert is_successful(result), f"expected a Success, got {result!r}"
    return result.unwrap()


def noting(log: list[T], note: T, value: R) -> Callable[[], R]:
    """A thunk that appends ``note`` to ``log`` and returns ``value``."""

    def thunk() -> R:
        log.append(note)
        return value

    return thunk


def inc(n: int) -> Effect[int, Never]:
    return Effect.succeed(n + 1)


_SETTLE_HOPS = 5


class FakeClock:
    """A clock that never waits for real time.

    ``sleep_until`` parks the caller; once the event loop has run everything that was ready
    (a few ``call_soon`` hops), time jumps to the earliest sleeper's deadline and wakes it.
    So concurrent sleepers wake in deadline order, instantly. ``sleeps`` records every
    requested delay.
    """

    def __init__(self, start: datetime = datetime(2024, 1, 1, tzinfo=UTC)) -> None:
        self._now = start
        self.start = start
        self.sleeps: list[timedelta] = []
        self._sleepers: list[tuple[datetime, int, asyncio.Future[None]]] = []
        self._seq = 0
        self._advancing = False

    def now(self) -> datetime:
        return self._now

    @property
    def elapsed(self) -> timedelta:
        return self._now - self.start

    async def sleep_until(self, when: datetime) -> None:
        self.sleeps.append(when - self._now)
        if when <= self._now:
            return
        loop = asyncio.get_running_loop()
        future: asyncio.Future[None] = loop.create_future()
        heapq.heappush(self._sleepers, (when, self._seq, future))
        self._seq += 1
        if not self._advancing:
            self._advancing = True
            loop.call_soon(self._advance, loop, _SETTLE_HOPS)
        await future

    def _advance(self, loop: asyncio.AbstractEventLoop, hops: int) -> None:
        if hops > 0:
            loop.call_soon(self._advance, loop, hops - 1)
            return
        while self._sleepers:
            when, _, future = heapq.heappop(self._sleepers)
            if future.cancelled():
                continue
            self._now = max(self._now, when)
            future.set_result(None)
            break
        if self._sleepers:
            loop.call_soon(self._advance, loop, _SETTLE_HOPS)
        else:
            self._advancing = False


@pytest.fixture
def clock() -> Iterator[FakeClock]:
    fake = FakeClock()
    with use_clock(fake):
        yield fake


# -- constructors --------------------------------------------------------------------------


def test_succeed_runs_to_success() -> None:
    result = Effect.run_sync(Effect.succeed(42))
    assert isinstance(result, Success)
    assert result == Success(42)


def test_fail_runs_to_failure_with_the_same_error() -> None:
    err = Boom(code=1)
    result = Effect.run_sync(Effect.fail(err))
    assert isinstance(result, Failure)
    assert result.failure() is err


def test_sync_calls_the_thunk_on_every_run_and_not_before() -> None:
    calls: list[int] = []

    def thunk() -> int:
        calls.append(1)
        return len(calls)

    eff = Effect.sync(thunk)
    assert calls == []
    assert Effect.run_sync(eff) == Success(1)
    assert Effect.run_sync(eff) == Success(2)


def test_sync_exception_is_a_defect_raised_as_the_original() -> None:
    boom = ValueError("bug")

    def thunk() -> int:
        raise boom

    with pytest.raises(ValueError, match="bug") as info:
        Effect.run_sync(Effect.sync(thunk))
    assert info.value is boom


def test_try_turns_an_exception_into_a_typed_failure() -> None:
    seen: list[Exception] = []

    def catch(exc: Exception) -> Other:
        seen.append(exc)
        return Other(reason=str(exc))

    result = Effect.run_sync(Effect.try_(lambda: int("x"), catch=catch))
    assert result == Failure(Other(reason="invalid literal for int() with base 10: 'x'"))
    assert isinstance(seen[0], ValueError)
    assert Effect.run_sync(Effect.try_(lambda: int("7"), catch=catch)) == Success(7)


def test_try_does_not_catch_base_exceptions() -> None:
    def thunk() -> int:
        raise Fatal

    with pytest.raises(Fatal):
        Effect.run_sync(Effect.try_(thunk, catch=lambda e: Other(reason="no")))


def test_try_catch_that_raises_is_a_defect() -> None:
    def bad_catch(exc: Exception) -> Other:
        raise KeyError("catch is buggy")

    with pytest.raises(KeyError, match="catch is buggy"):
        Effect.run_sync(Effect.try_(lambda: 1 // 0, catch=bad_catch))


async def test_promise_awaits_a_fresh_coroutine_each_run() -> None:
    made: list[int] = []

    async def fetch() -> int:
        made.append(1)
        await asyncio.sleep(0)
        return len(made)

    eff = Effect.promise(fetch)
    assert made == []
    assert await Effect.run_async(eff) == Success(1)
    assert await Effect.run_async(eff) == Success(2)


async def test_promise_exception_is_a_defect() -> None:
    async def fetch() -> int:
        raise ConnectionError("down")

    with pytest.raises(ConnectionError, match="down"):
        await Effect.run_async(Effect.promise(fetch))


async def test_try_promise_turns_an_exception_into_a_typed_failure() -> None:
    async def fetch() -> int:
        await asyncio.sleep(0)
        raise ConnectionError("down")

    eff = Effect.try_promise(fetch, catch=lambda e: StorageError(operation="fetch", cause=str(e)))
    assert await Effect.run_async(eff) == Failure(StorageError(operation="fetch", cause="down"))

    async def fine() -> str:
        return "ok"

    assert await Effect.run_async(Effect.try_promise(fine, catch=lambda e: Other(reason=""))) == (
        Success("ok")
    )


def test_suspend_builds_the_program_on_every_run() -> None:
    built: list[int] = []

    def build() -> Effect[int, Never]:
        built.append(1)
        return Effect.succeed(len(built))

    eff = Effect.suspend(build)
    assert built == []
    assert Effect.run_sync(eff) == Success(1)
    assert Effect.run_sync(eff) == Success(2)


def test_suspend_thunk_exception_and_non_effect_are_defects() -> None:
    def broken() -> Effect[int, Never]:
        raise RuntimeError("build failed")

    with pytest.raises(RuntimeError, match="build failed"):
        Effect.run_sync(Effect.suspend(broken))

    not_an_effect: Any = lambda: 3  # noqa: E731
    with pytest.raises(TypeError, match="expected an Effect"):
        Effect.run_sync(Effect.suspend(not_an_effect))


def test_all_collects_values_in_order_and_accepts_any_iterable() -> None:
    eff = Effect.all(Effect.succeed(n) for n in range(4))
    assert Effect.run_sync(eff) == Success([0, 1, 2, 3])
    assert Effect.run_sync(eff) == Success([0, 1, 2, 3])  # the generator was consumed once
    assert Effect.run_sync(Effect.all([])) == Success([])


def test_all_stops_at_the_first_failure() -> None:
    ran: list[str] = []
    effects: list[Effect[int, Boom]] = [
        Effect.sync(noting(ran, "a", 1)),
        Effect.fail(Boom(code=2)),
        Effect.sync(noting(ran, "c", 3)),
    ]
    assert Effect.run_sync(Effect.all(effects)) == Failure(Boom(code=2))
    assert ran == ["a"]


def test_all_returns_a_fresh_list_per_run() -> None:
    eff = Effect.all([Effect.succeed(1)])
    first = ok_value(Effect.run_sync(eff))
    first.append(99)
    assert Effect.run_sync(eff) == Success([1])


# -- gen do-notation -----------------------------------------------------------------------


@Effect.gen
def add_checked(a: int, b: int, *, limit: int = 100) -> Gen[int, Boom]:
    """Adds, failing over ``limit``."""
    x = yield from Effect.succeed(a)
    y = yield from Effect.sync(lambda: b)
    if x + y > limit:
        yield from Boom(code=x + y)
    return x + y


def test_gen_binds_values_and_returns_the_result() -> None:
    assert Effect.run_sync(add_checked(2, 3)) == Success(5)
    assert Effect.run_sync(add_checked(60, 50)) == Failure(Boom(code=110))
    assert Effect.run_sync(add_checked(60, 50, limit=200)) == Success(110)


def test_gen_keeps_the_function_name_and_doc() -> None:
    assert add_checked.__name__ == "add_checked"
    assert add_checked.__doc__ == "Adds, failing over ``limit``."


def test_gen_without_yield_from_still_is_an_effect() -> None:
    @Effect.gen
    def constant(skip: bool) -> Gen[str, Never]:
        if not skip:
            yield from Effect.succeed(None)
        return "done"

    assert Effect.run_sync(constant(True)) == Success("done")  # done at the first step
    assert Effect.run_sync(constant(False)) == Success("done")


def test_gen_nests_and_composes_with_combinators() -> None:
    @Effect.gen
    def outer() -> Gen[list[int], Boom]:
        a = yield from add_checked(1, 1)
        b = yield from add_checked(a, 10).map(lambda n: n * 10)
        c = yield from Effect.fail(Boom(code=0)).catch_all(lambda e: Effect.succeed(e.code))
        return [a, b, c]

    assert Effect.run_sync(outer()) == Success([2, 120, 0])


def test_yield_from_a_tagged_error_fails_the_program() -> None:
    after: list[str] = []

    @Effect.gen
    def prog() -> Gen[int, InstanceNotFoundError]:
        yield from InstanceNotFoundError(instance_id="gone")
        after.append("resumed")
        return 1

    assert Effect.run_sync(prog()) == Failure(InstanceNotFoundError(instance_id="gone"))
    assert after == []


def test_generator_finally_runs_when_a_yielded_effect_fails_but_except_never_sees_it() -> None:
    seen: list[object] = []

    @Effect.gen
    def prog() -> Gen[int, Boom]:
        try:
            yield from Effect.fail(Boom(code=7))
        except Exception as exc:  # pragma: no cover - must never happen
            seen.append(exc)
        finally:
            seen.append("finally")
        seen.append("after")
        return 0

    assert Effect.run_sync(prog()) == Failure(Boom(code=7))
    assert seen == ["finally"]


def test_generator_finally_runs_on_a_defect_in_a_yielded_effect() -> None:
    seen: list[str] = []

    def explode() -> int:
        raise ZeroDivisionError("inner bug")

    @Effect.gen
    def prog() -> Gen[int, Never]:
        try:
            return (yield from Effect.sync(explode))
        finally:
            seen.append("finally")

    with pytest.raises(ZeroDivisionError, match="inner bug"):
        Effect.run_sync(prog())
    assert seen == ["finally"]


def test_an_exception_raised_by_the_generator_is_a_defect() -> None:
    @Effect.gen
    def prog() -> Gen[int, Never]:
        yield from Effect.succeed(1)
        raise LookupError("bug in the body")

    with pytest.raises(LookupError, match="bug in the body"):
        Effect.run_sync(prog())


@pytest.mark.parametrize("first", [True, False], ids=["first-yield", "later-yield"])
def test_yielding_a_plain_value_is_a_type_error_defect(first: bool) -> None:
    closed: list[str] = []
    finalized: list[str] = []

    def body() -> Generator[Any, Any, int]:
        try:
            if not first:
                yield Effect.succeed(None)
            yield 3
            return 0
        finally:
            closed.append("closed")

    eff = Effect.gen(body)().ensuring(Effect.sync(lambda: finalized.append("fin")))
    with pytest.raises(TypeError, match=r"yield from") as info:
        Effect.run_sync(eff)
    assert "int" in str(info.value)
    assert closed == ["closed"]
    assert finalized == ["fin"]


def test_a_gen_runs_a_fresh_generator_on_every_run() -> None:
    started: list[int] = []

    @Effect.gen
    def prog() -> Gen[int, Never]:
        started.append(1)
        n = yield from Effect.succeed(len(started))
        return n

    eff = prog()
    assert started == []
    assert Effect.run_sync(eff) == Success(1)
    assert Effect.run_sync(eff) == Success(2)


# -- logging -------------------------------------------------------------------------------


def test_log_info_emits_a_record_with_fields_and_annotations(
    caplog: pytest.LogCaptureFixture,
) -> None:
    caplog.set_level(logging.DEBUG, logger="durable_effect")
    eff = Effect.log_info("hello", k=1)
    assert caplog.records == []  # lazy
    with annotate({"job_type": "continuous", "instance_id": "continuous:j:1"}):
        assert Effect.run_sync(eff) == Success(None)
    [record] = caplog.records
    assert record.name == "durable_effect"
    assert record.levelno == logging.INFO
    assert record.getMessage() == "hello"
    assert record.__dict__["fields"] == {"k": 1}
    assert record.__dict__["job_type"] == "continuous"
    assert record.__dict__["instance_id"] == "continuous:j:1"


@pytest.mark.parametrize(
    ("make", "level"),
    [
        (Effect.log_debug, logging.DEBUG),
        (Effect.log_info, logging.INFO),
        (Effect.log_warning, logging.WARNING),
        (Effect.log_error, logging.ERROR),
    ],
)
def test_each_log_constructor_uses_its_level(
    caplog: pytest.LogCaptureFixture, make: Any, level: int
) -> None:
    caplog.set_level(logging.DEBUG, logger="durable_effect")
    Effect.run_sync(make("m"))
    assert [r.levelno for r in caplog.records] == [level]
    assert caplog.records[0].__dict__["fields"] == {}


def test_the_threshold_suppresses_lower_levels(caplog: pytest.LogCaptureFixture) -> None:
    caplog.set_level(logging.DEBUG, logger="durable_effect")
    eff = Effect.all(
        [
            Effect.log_debug("d"),
            Effect.log_info("i"),
            Effect.log_warning("w"),
            Effect.log_error("e"),
        ]
    )
    with annotate({"job_name": "j"}, threshold=logging.WARNING):
        Effect.run_sync(eff)
    assert [r.getMessage() for r in caplog.records] == ["w", "e"]
    assert all(r.__dict__["job_name"] == "j" for r in caplog.records)
    caplog.clear()
    Effect.run_sync(eff)  # outside the block the threshold is gone
    assert [r.getMessage() for r in caplog.records] == ["d", "i", "w", "e"]


# -- combinators ---------------------------------------------------------------------------


def test_map_transforms_success_and_skips_failure() -> None:
    assert Effect.run_sync(Effect.succeed(2).map(lambda n: n * 10)) == Success(20)
    called: list[int] = []
    failing: Effect[int, Boom] = Effect.fail(Boom(code=1))
    assert Effect.run_sync(failing.map(called.append)) == Failure(Boom(code=1))
    assert called == []


def test_map_function_raising_is_a_defect() -> None:
    with pytest.raises(ZeroDivisionError):
        Effect.run_sync(Effect.succeed(0).map(lambda n: 1 // n))


def test_flat_map_sequences_and_short_circuits_on_failure() -> None:
    assert Effect.run_sync(Effect.succeed(1).flat_map(inc).flat_map(inc)) == Success(3)

    def fail_on_two(n: int) -> Effect[int, Boom]:
        return Effect.fail(Boom(code=n)) if n == 2 else Effect.succeed(n)

    after: list[int] = []
    eff = (
        Effect.succeed(1)
        .flat_map(inc)
        .flat_map(fail_on_two)
        .flat_map(lambda n: Effect.sync(noting(after, n, n)))
    )
    assert Effect.run_sync(eff) == Failure(Boom(code=2))
    assert after == []


def test_flat_map_returning_a_plain_value_is_a_type_error_defect() -> None:
    plain: Any = lambda n: n + 1  # noqa: E731
    with pytest.raises(TypeError, match="return a plain value from flat_map"):
        Effect.run_sync(Effect.succeed(1).flat_map(plain))


def test_tap_runs_the_effect_and_keeps_the_value() -> None:
    seen: list[int] = []
    eff = Effect.succeed(5).tap(lambda n: Effect.sync(lambda: seen.append(n)))
    assert Effect.run_sync(eff) == Success(5)
    assert seen == [5]


def test_tap_failure_fails_the_program() -> None:
    eff = Effect.succeed(5).tap(lambda n: Effect.fail(Boom(code=n)))
    assert Effect.run_sync(eff) == Failure(Boom(code=5))


def test_map_error_transforms_the_failure_only() -> None:
    failing: Effect[int, Boom] = Effect.fail(Boom(code=3))
    mapped = failing.map_error(lambda e: Other(reason=f"was {e.code}"))
    assert Effect.run_sync(mapped) == Failure(Other(reason="was 3"))
    fine: Effect[int, Boom] = Effect.succeed(1)
    assert Effect.run_sync(fine.map_error(lambda e: Other(reason="no"))) == Success(1)


def test_map_error_must_return_an_exception() -> None:
    bad: Any = lambda e: "not an error"  # noqa: E731
    with pytest.raises(TypeError, match="map_error must return an exception"):
        Effect.run_sync(Effect.fail(Boom(code=1)).map_error(bad))


def test_catch_all_recovers_with_the_handler() -> None:
    failing: Effect[int, Boom] = Effect.fail(Boom(code=4))
    assert Effect.run_sync(failing.catch_all(lambda e: Effect.succeed(e.code * 2))) == Success(8)
    rethrown = failing.catch_all(lambda e: Effect.fail(Other(reason=str(e))))
    assert Effect.run_sync(rethrown) == Failure(Other(reason="Boom: boom 4"))
    untouched: Effect[int, Boom] = Effect.succeed(1)
    assert Effect.run_sync(untouched.catch_all(lambda e: Effect.succeed(-1))) == Success(1)


def test_catch_all_does_not_catch_defects() -> None:
    handled: list[object] = []

    def explode() -> int:
        raise Boom(code=1)  # raised, not failed: a defect even though it is a TaggedError

    eff = Effect.sync(explode).catch_all(lambda e: Effect.sync(lambda: handled.append(e)))
    with pytest.raises(Boom):
        Effect.run_sync(eff)
    assert handled == []


def test_catch_tag_is_curried_and_selects_by_class() -> None:
    def lookup(key: str) -> Effect[int, Boom | Other]:
        if key == "boom":
            return Effect.fail(Boom(code=1))
        if key == "other":
            return Effect.fail(Other(reason="nope"))
        return Effect.succeed(len(key))

    seen: list[Boom] = []

    def recover(e: Boom) -> Effect[int, Never]:
        seen.append(e)
        return Effect.succeed(-e.code)

    def handled(key: str) -> Effect[int, Boom | Other]:
        return lookup(key).catch_tag(Boom)(recover)

    assert Effect.run_sync(handled("boom")) == Success(-1)
    assert seen == [Boom(code=1)]
    other = Effect.run_sync(handled("other"))
    assert other == Failure(Other(reason="nope"))
    assert Effect.run_sync(handled("abc")) == Success(3)
    assert len(seen) == 1


def test_catch_tag_passes_the_very_same_error_through() -> None:
    err = Other(reason="x")
    eff = Effect.fail(err).catch_tag(Boom)(lambda e: Effect.succeed(0))
    result = Effect.run_sync(eff)
    assert isinstance(result, Failure)
    assert result.failure() is err


def test_catch_tag_matches_subclasses_and_chains() -> None:
    @attrs.frozen(kw_only=True, eq=False)
    class SpecialBoom(Boom):
        pass

    eff = (
        Effect.fail(SpecialBoom(code=9))
        .catch_tag(Other)(lambda e: Effect.succeed("other"))
        .catch_tag(Boom)(lambda e: Effect.succeed(f"boom {e.code}"))
    )
    assert Effect.run_sync(eff) == Success("boom 9")


def test_catch_tag_does_not_catch_defects() -> None:
    def explode() -> int:
        raise Boom(code=1)

    with pytest.raises(Boom):
        Effect.run_sync(Effect.sync(explode).catch_tag(Boom)(lambda e: Effect.succeed(0)))


def test_either_turns_outcomes_into_values() -> None:
    ok = ok_value(Effect.run_sync(Effect.succeed(3).either()))
    assert ok == Ok(3)
    assert isinstance(ok, Ok)
    assert ok.value == 3
    assert ok.is_ok is True
    err = ok_value(Effect.run_sync(Effect.fail(Boom(code=2)).either()))
    assert err == Err(Boom(code=2))
    assert isinstance(err, Err)
    assert err.error == Boom(code=2)
    assert err.is_ok is False


def test_either_leaves_defects_alone() -> None:
    with pytest.raises(ZeroDivisionError):
        Effect.run_sync(Effect.sync(lambda: 1 // 0).either())


def test_ensuring_runs_on_success_failure_and_defect() -> None:
    ran: list[str] = []
    fin = Effect.sync(lambda: ran.append("fin"))

    assert Effect.run_sync(Effect.succeed(1).ensuring(fin)) == Success(1)
    assert ran == ["fin"]
    assert Effect.run_sync(Effect.fail(Boom(code=1)).ensuring(fin)) == Failure(Boom(code=1))
    assert ran == ["fin", "fin"]
    with pytest.raises(ZeroDivisionError):
        Effect.run_sync(Effect.sync(lambda: 1 // 0).ensuring(fin))
    assert ran == ["fin", "fin", "fin"]


def test_ensuring_finalizers_run_inner_first_after_the_body() -> None:
    ran: list[str] = []

    def note(s: str) -> Effect[None, Never]:
        return Effect.sync(lambda: ran.append(s))

    eff = (
        note("body")
        .ensuring(note("inner"))
        .flat_map(lambda _: note("next").flat_map(lambda _: Effect.fail(Boom(code=1))))
        .ensuring(note("outer"))
    )
    assert Effect.run_sync(eff) == Failure(Boom(code=1))
    assert ran == ["body", "inner", "next", "outer"]


def test_ensuring_finalizer_runs_after_generator_finally() -> None:
    ran: list[str] = []

    @Effect.gen
    def prog() -> Gen[int, Boom]:
        try:
            return (yield from Effect.fail(Boom(code=1)))
        finally:
            ran.append("finally")

    eff = prog().ensuring(Effect.sync(lambda: ran.append("ensuring")))
    assert Effect.run_sync(eff) == Failure(Boom(code=1))
    assert ran == ["finally", "ensuring"]


def test_ensuring_finalizer_defect_replaces_the_outcome() -> None:
    def broken() -> None:
        raise RuntimeError("finalizer bug")

    with pytest.raises(RuntimeError, match="finalizer bug"):
        Effect.run_sync(Effect.succeed(1).ensuring(Effect.sync(broken)))


def test_ensuring_keeps_the_value_for_later_steps() -> None:
    eff = Effect.succeed(2).ensuring(Effect.succeed("ignored")).map(lambda n: n + 1)
    assert Effect.run_sync(eff) == Success(3)


def test_pipe_applies_functions_left_to_right() -> None:
    def double(eff: Effect[int, Never]) -> Effect[int, Never]:
        return eff.map(lambda n: n * 2)

    def describe(eff: Effect[int, Never]) -> Effect[str, Never]:
        return eff.map(lambda n: f"n={n}")

    assert Effect.run_sync(Effect.succeed(3).pipe(double)) == Success(6)
    assert Effect.run_sync(Effect.succeed(3).pipe(double, double, describe)) == Success("n=12")
    assert Effect.succeed(3).pipe(Effect.run_sync) == Success(3)


# -- time: sleep, retry, timeout (FakeClock: nothing really sleeps) ------------------------


def flaky(attempts: list[int], succeed_on: int | None) -> Effect[str, Boom]:
    """Fails with ``Boom(code=attempt)`` until attempt ``succeed_on`` (never if None)."""

    def attempt() -> Effect[str, Boom]:
        attempts.append(len(attempts) + 1)
        n = len(attempts)
        if succeed_on is not None and n >= succeed_on:
            return Effect.succeed(f"ok on {n}")
        return Effect.fail(Boom(code=n))

    return Effect.suspend(attempt)


async def test_sleep_goes_through_the_installed_clock(clock: FakeClock) -> None:
    eff = Effect.sleep("5s").flat_map(lambda _: Effect.sleep(250)).map(lambda _: "woke")
    assert clock.sleeps == []
    assert await Effect.run_async(eff) == Success("woke")
    assert clock.sleeps == [timedelta(seconds=5), timedelta(milliseconds=250)]
    assert clock.elapsed == timedelta(seconds=5, milliseconds=250)
    await Effect.run_async(Effect.sleep(timedelta(minutes=2)))
    assert clock.elapsed == timedelta(minutes=2, seconds=5, milliseconds=250)


def test_sleep_rejects_a_bad_duration_when_built() -> None:
    with pytest.raises(ValueError, match="soonish"):
        _ = Effect.sleep("soonish")


async def test_sleep_without_a_clock_uses_the_event_loop() -> None:
    assert await Effect.run_async(Effect.sleep(0)) == Success(None)


def test_run_sync_refuses_a_sleep() -> None:
    with pytest.raises(RuntimeError):
        Effect.run_sync(Effect.sleep("1s"))


async def test_retry_follows_the_backoff_and_counts_all_attempts(clock: FakeClock) -> None:
    attempts: list[int] = []
    policy = Retry(4, delay=Backoff.exponential("1s", factor=3), jitter=False)
    result = await Effect.run_async(flaky(attempts, None).retry(policy))
    assert result == Failure(Boom(code=4))  # the last error
    assert attempts == [1, 2, 3, 4]
    assert clock.sleeps == [timedelta(seconds=1), timedelta(seconds=3), timedelta(seconds=9)]
    assert clock.elapsed == timedelta(seconds=13)


async def test_retry_stops_at_the_first_success(clock: FakeClock) -> None:
    attempts: list[int] = []
    policy = Retry(5, delay=Backoff.linear("1s", "2s"), jitter=False)
    assert await Effect.run_async(flaky(attempts, 3).retry(policy)) == Success("ok on 3")
    assert attempts == [1, 2, 3]
    assert clock.sleeps == [timedelta(seconds=1), timedelta(seconds=3)]


async def test_retry_with_one_attempt_never_retries(clock: FakeClock) -> None:
    attempts: list[int] = []
    assert await Effect.run_async(flaky(attempts, 2).retry(Retry(1))) == Failure(Boom(code=1))
    assert attempts == [1]
    assert clock.sleeps == []


async def test_retry_never_retries_a_defect(clock: FakeClock) -> None:
    calls: list[int] = []

    def explode() -> int:
        calls.append(1)
        raise ZeroDivisionError("bug")

    with pytest.raises(ZeroDivisionError):
        await Effect.run_async(Effect.sync(explode).retry(Retry(5, jitter=False)))
    assert calls == [1]
    assert clock.sleeps == []


async def test_retry_reruns_a_gen_from_scratch(clock: FakeClock) -> None:
    steps: list[str] = []

    @Effect.gen
    def prog() -> Gen[str, Boom]:
        steps.append("start")
        n = yield from Effect.sync(lambda: len(steps))
        if n < 3:
            yield from Boom(code=n)
        return f"done after {n}"

    policy = Retry(3, delay="10ms", jitter=False)
    assert await Effect.run_async(prog().retry(policy)) == Success("done after 3")
    assert steps == ["start", "start", "start"]


async def test_retry_jitter_stays_within_ten_percent(clock: FakeClock) -> None:
    policy = Retry(30, delay=Backoff.constant("1s"), jitter=True)
    await Effect.run_async(flaky([], None).retry(policy))
    assert len(clock.sleeps) == 29
    assert all(timedelta(seconds=0.9) <= d <= timedelta(seconds=1.1) for d in clock.sleeps)
    assert len(set(clock.sleeps)) > 1


async def test_retry_max_duration_bounds_the_retries(clock: FakeClock) -> None:
    attempts: list[int] = []
    policy = Retry(10, delay=Backoff.constant("1s"), jitter=False, max_duration="2.5s")
    assert await Effect.run_async(flaky(attempts, None).retry(policy)) == Failure(Boom(code=3))
    assert attempts == [1, 2, 3]  # a third retry would end at 3 s > 2.5 s
    assert clock.sleeps == [timedelta(seconds=1), timedelta(seconds=1)]


async def test_retry_max_duration_counts_from_the_start_of_the_first_attempt(
    clock: FakeClock,
) -> None:
    attempts: list[int] = []
    slow = Effect.sleep("10s").flat_map(lambda _: flaky(attempts, None))
    policy = Retry(5, delay=Backoff.constant("10s"), jitter=False, max_duration="15s")
    assert await Effect.run_async(slow.retry(policy)) == Failure(Boom(code=1))
    assert attempts == [1]  # 10 s spent + 10 s delay > 15 s: no retry
    assert clock.elapsed == timedelta(seconds=10)


async def test_retry_runs_the_policy_afresh_on_every_run(clock: FakeClock) -> None:
    attempts: list[int] = []
    eff = flaky(attempts, None).retry(Retry(2, delay="1s", jitter=False))
    assert await Effect.run_async(eff) == Failure(Boom(code=2))
    assert await Effect.run_async(eff) == Failure(Boom(code=4))
    assert attempts == [1, 2, 3, 4]
    assert clock.sleeps == [timedelta(seconds=1), timedelta(seconds=1)]


async def test_timeout_fails_when_the_effect_takes_longer(clock: FakeClock) -> None:
    finalized: list[str] = []
    slow = (
        Effect.sleep("5s")
        .map(lambda _: "late")
        .ensuring(Effect.sync(lambda: finalized.append("fin")))
    )
    result = await Effect.run_async(slow.timeout("1s"))
    assert result == Failure(TimeoutException(timeout_ms=1000))
    assert clock.elapsed == timedelta(seconds=1)
    assert finalized == ["fin"]  # the interrupted effect's finalizers ran


async def test_timeout_gives_the_value_when_the_effect_is_faster(clock: FakeClock) -> None:
    fast = Effect.sleep("1s").map(lambda _: "in time")
    assert await Effect.run_async(fast.timeout("5s")) == Success("in time")
    assert clock.elapsed == timedelta(seconds=1)
    assert await Effect.run_async(Effect.succeed(1).timeout(10)) == Success(1)


async def test_timeout_keeps_typed_failures_and_defects(clock: FakeClock) -> None:
    failing = Effect.sleep("1s").flat_map(lambda _: Effect.fail(Boom(code=1)))
    assert await Effect.run_async(failing.timeout("5s")) == Failure(Boom(code=1))

    def explode() -> int:
        raise ZeroDivisionError("bug")

    with pytest.raises(ZeroDivisionError):
        await Effect.run_async(Effect.sync(explode).timeout("5s"))


async def test_timeout_can_be_caught_and_retried(clock: FakeClock) -> None:
    slow = Effect.sleep("5s").map(lambda _: "late").timeout("1s")
    recovered = slow.catch_tag(TimeoutException)(lambda e: Effect.succeed(f"{e.timeout_ms} ms"))
    assert await Effect.run_async(recovered) == Success("1000 ms")
    retried = slow.retry(Retry(3, delay="2s", jitter=False))
    assert await Effect.run_async(retried) == Failure(TimeoutException(timeout_ms=1000))
    # 1 s + (1 s + 2 s) * 2 for the first run, and the catch_tag run
    assert clock.elapsed == timedelta(seconds=1 + 1 + 2 + 1 + 2 + 1)


async def test_cancelling_a_run_interrupts_the_effect_inside_a_timeout(clock: FakeClock) -> None:
    ran: list[str] = []
    inner = (
        Effect.sleep("10s")
        .flat_map(lambda _: Effect.sync(lambda: ran.append("body went on")))
        .ensuring(Effect.sync(lambda: ran.append("fin")))
    )
    run = asyncio.ensure_future(Effect.run_async(inner.timeout("20s")))
    for _ in range(3):
        await asyncio.sleep(0)  # let it start sleeping
    run.cancel()
    with pytest.raises(asyncio.CancelledError):
        await run
    for _ in range(50):
        await asyncio.sleep(0)  # the fake clock would have woken a leaked sleeper by now
    assert ran == ["fin"]


# -- running -------------------------------------------------------------------------------


def test_run_sync_refuses_an_effect_that_truly_awaits() -> None:
    async def waits() -> int:
        await asyncio.sleep(0)
        return 1

    with pytest.raises(RuntimeError, match="cannot run an effect that awaits"):
        Effect.run_sync(Effect.promise(waits))


def test_run_sync_runs_a_promise_that_never_suspends() -> None:
    async def immediate() -> int:
        return 7

    assert Effect.run_sync(Effect.promise(immediate)) == Success(7)


async def test_run_async_returns_success_or_failure_and_raises_defects() -> None:
    assert await Effect.run_async(Effect.succeed(1)) == Success(1)
    assert await Effect.run_async(Effect.fail(Boom(code=1))) == Failure(Boom(code=1))
    with pytest.raises(ZeroDivisionError):
        await Effect.run_async(Effect.sync(lambda: 1 // 0))


async def test_run_promise_returns_the_value_and_raises_the_typed_error() -> None:
    assert await Effect.run_promise(Effect.succeed("v")) == "v"
    err = Boom(code=5)
    with pytest.raises(Boom) as info:
        await Effect.run_promise(Effect.fail(err))
    assert info.value is err
    with pytest.raises(ZeroDivisionError):
        await Effect.run_promise(Effect.sync(lambda: 1 // 0))


async def test_await_an_effect_is_run_promise() -> None:
    assert await Effect.succeed(3).map(lambda n: n + 1) == 4
    with pytest.raises(Boom):
        await Effect.fail(Boom(code=1))


def test_from_result() -> None:
    assert Effect.run_sync(Effect.from_result(Success(1))) == Success(1)
    failure: Result[int, Boom] = Failure(Boom(code=1))
    assert Effect.run_sync(Effect.from_result(failure)) == Failure(Boom(code=1))


def test_from_io_result() -> None:
    assert Effect.run_sync(Effect.from_io_result(IOSuccess(2))) == Success(2)
    assert Effect.run_sync(Effect.from_io_result(IOFailure(Boom(code=2)))) == Failure(Boom(code=2))


async def test_from_future_result_awaits_when_run() -> None:
    awaited: list[int] = []

    async def compute() -> Result[int, Boom]:
        awaited.append(1)
        await asyncio.sleep(0)
        return Success(10)

    eff = Effect.from_future_result(FutureResult(compute()))
    assert awaited == []
    assert await Effect.run_async(eff) == Success(10)
    assert awaited == [1]
    failing = Effect.from_future_result(FutureResult.from_failure(Boom(code=3)))
    assert await Effect.run_async(failing) == Failure(Boom(code=3))
    assert await Effect.run_async(Effect.from_future_result(FutureResult.from_value(4))) == (
        Success(4)
    )


# -- laziness ------------------------------------------------------------------------------


def test_building_an_effect_runs_nothing() -> None:
    ran: list[str] = []

    @Effect.gen
    def body() -> Gen[int, Never]:
        ran.append("gen")
        yield from Effect.succeed(None)
        return 1

    async def coro() -> int:  # pragma: no cover - never awaited
        ran.append("promise")
        return 1

    def build() -> Effect[int, Never]:
        ran.append("suspend")
        return Effect.succeed(1)

    def make_coro() -> Coroutine[Any, Any, int]:  # pragma: no cover - never called
        ran.append("thunk")
        return coro()

    effects: list[Effect[object, BaseException]] = [
        Effect.sync(lambda: ran.append("sync")),
        Effect.promise(make_coro),
        Effect.suspend(build),
        body(),
        Effect.succeed(1).map(lambda n: ran.append("map")),
        Effect.succeed(1).flat_map(lambda n: Effect.sync(lambda: ran.append("flat_map"))),
        Effect.fail(Boom(code=1)).catch_all(lambda e: Effect.sync(lambda: ran.append("catch"))),
        Effect.succeed(1).ensuring(Effect.sync(lambda: ran.append("ensuring"))),
        Effect.log_error("not logged"),
    ]
    assert len(effects) == 9
    assert ran == []


def test_the_same_effect_value_runs_twice_independently() -> None:
    counter = iter(range(100))
    eff = (
        Effect.sync(lambda: next(counter))
        .flat_map(lambda n: Effect.succeed(n * 10))
        .ensuring(Effect.succeed(None))
    )
    assert Effect.run_sync(eff) == Success(0)
    assert Effect.run_sync(eff) == Success(10)


# -- stack safety --------------------------------------------------------------------------


def test_a_million_flat_maps_run_without_recursion_error() -> None:
    started = time.perf_counter()
    eff: Effect[int, Never] = Effect.succeed(0)
    for _ in range(1_000_000):
        eff = eff.flat_map(inc)
    assert Effect.run_sync(eff) == Success(1_000_000)
    assert time.perf_counter() - started < 10


def test_a_deep_right_nested_flat_map_recursion_runs() -> None:
    def count_down(n: int) -> Effect[int, Never]:
        if n == 0:
            return Effect.succeed(0)
        return Effect.succeed(n - 1).flat_map(count_down).map(lambda r: r + 1)

    assert Effect.run_sync(count_down(200_000)) == Success(200_000)


def test_a_100k_deep_recursive_gen_runs() -> None:
    @Effect.gen
    def depth(n: int) -> Gen[int, Never]:
        if n == 0:
            return 0
        below = yield from depth(n - 1)
        return below + 1

    started = time.perf_counter()
    assert Effect.run_sync(depth(100_000)) == Success(100_000)
    assert time.perf_counter() - started < 10


def test_a_deep_recursive_gen_failure_closes_every_frame() -> None:
    closed: list[int] = []

    @Effect.gen
    def depth(n: int) -> Gen[int, Boom]:
        try:
            if n == 0:
                yield from Boom(code=0)
            return (yield from depth(n - 1))
        finally:
            closed.append(n)

    assert Effect.run_sync(depth(50_000)) == Failure(Boom(code=0))
    assert closed == list(range(50_001))


# -- TaggedError ---------------------------------------------------------------------------


def test_tagged_errors_are_values() -> None:
    a = InstanceNotFoundError(instance_id="x")
    b = InstanceNotFoundError(instance_id="x")
    assert a == b
    assert hash(a) == hash(b)
    assert a != InstanceNotFoundError(instance_id="y")
    assert len({a, b, InstanceNotFoundError(instance_id="y")}) == 2
    assert Boom(code=1) != Other(reason="1")


def test_tagged_errors_of_different_classes_with_equal_fields_differ() -> None:
    @attrs.frozen(kw_only=True, eq=False)
    class Boom2(TaggedError):
        tag: ClassVar[Literal["Boom2"]] = "Boom2"
        code: int

    assert Boom(code=1) != Boom2(code=1)


def test_tagged_error_str_is_tag_and_message() -> None:
    assert str(InstanceNotFoundError(instance_id="x")) == "InstanceNotFoundError: no instance 'x'"
    assert str(Boom(code=3)) == "Boom: boom 3"
    assert str(Other(reason="why")) == "Other: reason='why'"


def test_tagged_errors_are_frozen() -> None:
    err = InstanceNotFoundError(instance_id="x")
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        err.instance_id = "y"  # type: ignore[misc]
    assert err.instance_id == "x"


def _sample_kwargs(cls: type[TaggedError]) -> dict[str, object]:
    samples: dict[str, object] = {"str": "s", "int": 3, "timedelta": timedelta(seconds=5)}
    kwargs: dict[str, object] = {}
    for field in attrs.fields(cast(Any, cls)):
        kwargs[field.name] = samples.get(str(field.type), ValueError("cause"))
    return kwargs


@pytest.mark.parametrize("name", [n for n in errors.__all__ if n != "TaggedError"])
def test_every_error_is_constructible_and_exported(name: str) -> None:
    cls = getattr(errors, name)
    assert getattr(durable_effect, name) is cls
    assert issubclass(cls, TaggedError)
    assert cls.tag == name
    kwargs = _sample_kwargs(cls)
    assert kwargs, f"{name} has no fields"
    err = cls(**kwargs)
    again = cls(**kwargs)
    assert err == again
    assert hash(err) == hash(again)
    assert str(err).startswith(f"{name}: ")
    assert len(str(err)) > len(name) + 2
    assert Effect.run_sync(Effect.fail(err)) == Failure(again)


def test_tagged_error_base_is_exported() -> None:
    assert durable_effect.TaggedError is TaggedError
    assert issubclass(TaggedError, Exception)
    assert "TaggedError" in durable_effect.__all__
    assert TimeoutException(timeout_ms=5) == TimeoutException(timeout_ms=5)
