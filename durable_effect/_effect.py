"""`Effect[A, E]`: lazy, typed programs — the data type, its constructors and combinators.

An ``Effect[A, E]`` describes a program that succeeds with ``A`` or fails with a typed error
``E`` (``Never`` by default). Nothing runs until ``run_sync``/``run_async``/``run_promise``
(or ``await eff``) hands it to the interpreter (``_interpreter``), and the same value can be
run any number of times.

Exceptions escaping user thunks are *defects*: they are never turned into typed failures.
They propagate out of the run functions as the original exception (finalizers run first).

>>> prog = Effect.succeed(20).map(lambda n: n + 1).flat_map(lambda n: Effect.succeed(n * 2))
>>> Effect.run_sync(prog)
<Success: 42>
>>> @Effect.gen
... def program(n: int) -> Gen[int, InstanceNotFoundError]:
...     doubled = yield from Effect.succeed(n * 2)
...     if doubled > 10:
...         yield from InstanceNotFoundError(instance_id="small")
...     return doubled
>>> Effect.run_sync(program(3))
<Success: 6>
>>> Effect.run_sync(program(30))
<Failure: InstanceNotFoundError: no instance 'small'>
"""

from __future__ import annotations

import asyncio
import contextlib
import functools
import random
from collections.abc import Awaitable, Callable, Generator, Iterable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, ClassVar, Generic, Literal, Never, cast, overload

import attrs
from returns.future import FutureResult
from returns.io import IOFailure, IOResult, IOSuccess
from returns.pipeline import is_successful
from returns.result import Failure, Result, Success
from typing_extensions import ParamSpec, TypeAliasType, TypeVar

from durable_effect import _clock, _log
from durable_effect._exit import Exit
from durable_effect._interpreter import ASYNC as _ASYNC
from durable_effect._interpreter import ASYNC_EFFECT as _ASYNC_EFFECT
from durable_effect._interpreter import CATCH as _CATCH
from durable_effect._interpreter import CATCH_TAG as _CATCH_TAG
from durable_effect._interpreter import ENSURING as _ENSURING
from durable_effect._interpreter import EXIT_OF as _EXIT_OF
from durable_effect._interpreter import FAIL as _FAIL
from durable_effect._interpreter import FLAT_MAP as _FLAT_MAP
from durable_effect._interpreter import GEN as _GEN
from durable_effect._interpreter import LOG as _LOG
from durable_effect._interpreter import MAP as _MAP
from durable_effect._interpreter import SUCCEED as _SUCCEED
from durable_effect._interpreter import SUSPEND as _SUSPEND
from durable_effect._interpreter import SYNC as _SYNC
from durable_effect._interpreter import TRY as _TRY
from durable_effect._interpreter import TRY_ASYNC as _TRY_ASYNC
from durable_effect._interpreter import Node, run_exit, run_promise, run_sync_exit
from durable_effect.errors import TimeoutException

if TYPE_CHECKING:
    from durable_effect._backoff import Retry

__all__ = ["Effect", "Err", "Gen", "Ok", "async_effect", "exit_of", "from_exit"]

A = TypeVar("A", covariant=True)
E = TypeVar("E", bound=BaseException, covariant=True, default=Never)
B = TypeVar("B")
E2 = TypeVar("E2", bound=BaseException)
T = TypeVar("T")
U = TypeVar("U")
X = TypeVar("X")
P = ParamSpec("P")
ErrT = TypeVar("ErrT", bound=BaseException)


class Effect(Node, Generic[A, E]):
    """A lazy, immutable program that succeeds with ``A`` or fails with ``E``.

    Build one with the static constructors, compose with the methods, run with
    ``Effect.run_sync`` / ``Effect.run_async`` / ``Effect.run_promise`` or ``await``.
    (A ``Node`` of the interpreter: an opcode and its operands.)
    """

    __slots__ = ()
    __match_args__ = ()

    def __repr__(self) -> str:
        return f"<Effect op={self._op}>"

    # -- generator support ---------------------------------------------------------------

    def __iter__(self) -> Generator[Effect[A, E], Any, A]:
        """``x = yield from eff`` inside ``Effect.gen``: runs ``eff`` and gives its value."""
        return (yield self)  # type: ignore[no-any-return]

    def __await__(self) -> Generator[Any, None, A]:
        """``await eff`` is ``await Effect.run_promise(eff)``."""
        return cast("Generator[Any, None, A]", run_promise(self).__await__())

    # -- constructors --------------------------------------------------------------------

    @staticmethod
    def succeed(value: T) -> Effect[T, Never]:
        """A program that succeeds with ``value``.

        >>> Effect.run_sync(Effect.succeed("hi"))
        <Success: hi>
        """
        return Effect(_SUCCEED, value)

    @staticmethod
    def fail(error: ErrT) -> Effect[Never, ErrT]:
        """A program that fails with the typed error ``error``.

        >>> Effect.run_sync(Effect.fail(InstanceNotFoundError(instance_id="x")))
        <Failure: InstanceNotFoundError: no instance 'x'>
        """
        return Effect(_FAIL, error)

    @staticmethod
    def sync(thunk: Callable[[], T]) -> Effect[T, Never]:
        """Run ``thunk`` when the program runs; an exception it raises is a defect.

        >>> Effect.run_sync(Effect.sync(lambda: 2 + 2))
        <Success: 4>
        """
        return Effect(_SYNC, thunk)

    @staticmethod
    def try_(thunk: Callable[[], T], *, catch: Callable[[Exception], ErrT]) -> Effect[T, ErrT]:
        """Run ``thunk``; an ``Exception`` it raises becomes the typed error ``catch(exc)``.

        >>> def missing(e: Exception) -> InstanceNotFoundError:
        ...     return InstanceNotFoundError(instance_id="n")
        >>> Effect.run_sync(Effect.try_(lambda: int("x"), catch=missing))
        <Failure: InstanceNotFoundError: no instance 'n'>
        """
        return Effect(_TRY, thunk, catch)

    @staticmethod
    def promise(thunk: Callable[[], Awaitable[T]]) -> Effect[T, Never]:
        """Await a fresh awaitable made by ``thunk`` each run; exceptions are defects.

        >>> async def fetch() -> int:
        ...     return 7
        >>> asyncio.run(Effect.run_promise(Effect.promise(fetch)))
        7
        """
        return Effect(_ASYNC, thunk)

    @staticmethod
    def try_promise(
        thunk: Callable[[], Awaitable[T]], *, catch: Callable[[Exception], ErrT]
    ) -> Effect[T, ErrT]:
        """Like ``promise``, but an ``Exception`` becomes the typed error ``catch(exc)``."""
        return Effect(_TRY_ASYNC, thunk, catch)

    @staticmethod
    def suspend(thunk: Callable[[], Effect[T, ErrT]]) -> Effect[T, ErrT]:
        """Build the program lazily, when it runs (each run calls ``thunk`` again).

        >>> calls = []
        >>> eff = Effect.suspend(lambda: Effect.succeed(calls.append(1)))
        >>> calls
        []
        >>> _ = Effect.run_sync(eff); calls
        [1]
        """
        return Effect(_SUSPEND, thunk)

    @staticmethod
    def sleep(duration: timedelta | int | float | str) -> Effect[None, Never]:
        """Sleep through the runtime clock (a ``TestClock`` in tests: nothing really sleeps).

        ``duration`` is anything ``Duration.parse`` accepts (a number is milliseconds).
        """
        from durable_effect._duration import Duration

        delay = Duration.parse(duration)
        return Effect(_ASYNC, functools.partial(_clock.sleep_for, delay))

    @staticmethod
    def all(effects: Iterable[Effect[T, ErrT]]) -> Effect[list[T], ErrT]:
        """Run ``effects`` in order and collect their values; the first failure stops it.

        >>> Effect.run_sync(Effect.all([Effect.succeed(1), Effect.succeed(2)]))
        <Success: [1, 2]>
        """
        items = tuple(effects)

        def run() -> Generator[Effect[T, ErrT], Any, list[T]]:
            out: list[T] = []
            append = out.append
            for item in items:
                append((yield item))
            return out

        return Effect(_GEN, run, ())

    @staticmethod
    def gen(fn: Callable[P, Generator[Effect[Any, ErrT], Any, T]]) -> Callable[P, Effect[T, ErrT]]:
        """Generator do-notation: ``x = yield from eff`` binds, ``return`` succeeds.

        Annotate the generator ``-> Gen[A, E1 | E2]``; mypy rejects a ``yield from`` whose
        error type is outside it. The generator is created afresh on every run; a yielded
        effect that fails closes it (its ``finally`` blocks run, ``except`` never sees it).
        """

        @functools.wraps(fn)
        def make(*args: P.args, **kwargs: P.kwargs) -> Effect[T, ErrT]:
            return Effect(_GEN, fn, (args, kwargs))

        return make

    @staticmethod
    def log_debug(message: str, **fields: object) -> Effect[None, Never]:
        """Log at DEBUG through ``logging`` (logger ``durable_effect``), with job annotations."""
        return Effect(_LOG, (_log.DEBUG, message), fields)

    @staticmethod
    def log_info(message: str, **fields: object) -> Effect[None, Never]:
        """Log at INFO; see ``log_debug``."""
        return Effect(_LOG, (_log.INFO, message), fields)

    @staticmethod
    def log_warning(message: str, **fields: object) -> Effect[None, Never]:
        """Log at WARNING; see ``log_debug``."""
        return Effect(_LOG, (_log.WARNING, message), fields)

    @staticmethod
    def log_error(message: str, **fields: object) -> Effect[None, Never]:
        """Log at ERROR; see ``log_debug``."""
        return Effect(_LOG, (_log.ERROR, message), fields)

    # -- returns bridges -----------------------------------------------------------------

    @staticmethod
    def from_result(result: Result[T, ErrT]) -> Effect[T, ErrT]:
        """Lift a ``returns`` ``Result``: ``Success(a)`` succeeds, ``Failure(e)`` fails.

        >>> Effect.run_sync(Effect.from_result(Success(3)))
        <Success: 3>
        """
        if is_successful(result):
            return Effect(_SUCCEED, result.unwrap())
        return Effect(_FAIL, result.failure())

    @staticmethod
    def from_io_result(result: IOResult[T, ErrT]) -> Effect[T, ErrT]:
        """Lift a ``returns`` ``IOResult`` (``IOSuccess``/``IOFailure``)."""
        if isinstance(result, IOSuccess):
            return Effect(_SUCCEED, result.unwrap()._inner_value)
        if isinstance(result, IOFailure):
            return Effect(_FAIL, result.failure()._inner_value)
        raise TypeError(f"expected IOSuccess or IOFailure, got {type(result).__name__}")

    @staticmethod
    def from_future_result(future: FutureResult[T, ErrT]) -> Effect[T, ErrT]:
        """Await a ``returns`` ``FutureResult`` when the program runs."""

        async def await_it() -> Effect[T, ErrT]:
            io_result = await future.awaitable()
            return Effect.from_io_result(io_result)

        return Effect(_ASYNC_EFFECT, await_it)

    # -- combinators ---------------------------------------------------------------------

    def map(self, f: Callable[[A], B]) -> Effect[B, E]:
        """Transform the success value.

        >>> Effect.run_sync(Effect.succeed(2).map(str))
        <Success: 2>
        """
        return Effect(_MAP, self, f)

    def flat_map(self, f: Callable[[A], Effect[B, E2]]) -> Effect[B, E | E2]:
        """Continue with the program ``f`` makes from the success value."""
        return Effect(_FLAT_MAP, self, f)

    def tap(self, f: Callable[[A], Effect[object, E2]]) -> Effect[A, E | E2]:
        """Run ``f(value)`` for its effect and keep the original value."""

        def run_then_keep(value: Any) -> Effect[Any, Any]:
            return Effect(_MAP, f(value), lambda _: value)

        return Effect(_FLAT_MAP, self, run_then_keep)

    def map_error(self, f: Callable[[E], ErrT]) -> Effect[A, ErrT]:
        """Transform the typed error.

        >>> missing = Effect.fail(InstanceNotFoundError(instance_id="a"))
        >>> to_storage = lambda e: StorageError(operation="load", cause=str(e))
        >>> Effect.run_sync(missing.map_error(to_storage))
        <Failure: StorageError: load failed: InstanceNotFoundError: no instance 'a'>
        """
        return Effect(_CATCH, self, lambda e: Effect(_FAIL, _checked_error(f(e))))

    def catch_all(self, handler: Callable[[E], Effect[B, E2]]) -> Effect[A | B, E2]:
        """Recover from every typed failure with ``handler`` (defects are not caught).

        >>> Effect.run_sync(Effect.fail(InstanceNotFoundError(instance_id="a")).catch_all(
        ...     lambda e: Effect.succeed(e.instance_id)))
        <Success: a>
        """
        return Effect(_CATCH, self, handler)

    def catch_tag(
        self, cls: type[ErrT]
    ) -> Callable[[Callable[[ErrT], Effect[B, E2]]], Effect[A | B, E | E2]]:
        """Recover from failures of class ``cls`` only; curried: ``eff.catch_tag(C)(handler)``.

        mypy cannot remove ``cls`` from the error union; the result keeps ``E``.

        >>> eff = Effect.fail(InstanceNotFoundError(instance_id="a")).catch_tag(
        ...     InstanceNotFoundError)(lambda e: Effect.succeed(0))
        >>> Effect.run_sync(eff)
        <Success: 0>
        """

        def with_handler(handler: Callable[[ErrT], Effect[B, E2]]) -> Effect[A | B, E | E2]:
            # The interpreter selects by class itself (no closure per node, no extra call).
            return Effect(_CATCH_TAG, self, (cls, handler))

        return with_handler

    def either(self) -> Effect[Ok[A] | Err[E], Never]:
        """Turn the outcome into a value: ``Ok(value)`` or ``Err(error)``.

        >>> Effect.run_sync(Effect.fail(InstanceNotFoundError(instance_id="a")).either())
        <Success: Err(error=InstanceNotFoundError(instance_id='a'))>
        """
        return Effect(_CATCH, Effect(_MAP, self, Ok), _fail_to_err)

    def ensuring(self, finalizer: Effect[object, Never]) -> Effect[A, E]:
        """Run ``finalizer`` after this program however it ends (success, failure, defect)."""
        return Effect(_ENSURING, self, finalizer)

    def retry(self, policy: Retry) -> Effect[A, E]:
        """Run again after a typed failure, per ``policy`` (sleeps through the runtime clock).

        ``policy.max_attempts`` counts all attempts. Defects are never retried. This is an
        in-memory retry; job-level retries are durable alarms (``retry=`` on definitions).
        """
        rng = random.Random()
        inner = self
        # ``max_duration`` counts from the start of the first attempt (``Retry.should_retry``).
        return Effect(_SUSPEND, lambda: _retrying(inner, policy, 1, _clock_now(), rng))

    def timeout(self, duration: timedelta | int | float | str) -> Effect[A, E | TimeoutException]:
        """Fail with ``TimeoutException`` if not finished within ``duration`` (runtime clock)."""
        from durable_effect._duration import Duration

        delay = Duration.parse(duration)
        inner = self

        async def race() -> Effect[A, E | TimeoutException]:
            task = asyncio.ensure_future(run_exit(inner))
            timer = asyncio.ensure_future(_clock.sleep_for(delay))
            try:
                done, _ = await asyncio.wait({task, timer}, return_when=asyncio.FIRST_COMPLETED)
            except BaseException:  # this run was cancelled: interrupt the inner effect too
                task.cancel()
                raise
            finally:
                timer.cancel()
            if task in done:
                return from_exit(task.result())
            task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await task
            millis = round(delay.total_seconds() * 1000)
            return Effect(_FAIL, TimeoutException(timeout_ms=millis))

        return Effect(_ASYNC_EFFECT, race)

    @overload
    def pipe(self, f1: Callable[[Effect[A, E]], T], /) -> T: ...
    @overload
    def pipe(self, f1: Callable[[Effect[A, E]], T], f2: Callable[[T], U], /) -> U: ...
    @overload
    def pipe(
        self, f1: Callable[[Effect[A, E]], T], f2: Callable[[T], U], f3: Callable[[U], X], /
    ) -> X: ...
    @overload
    def pipe(
        self,
        f1: Callable[[Effect[A, E]], T],
        f2: Callable[[T], U],
        f3: Callable[[U], X],
        f4: Callable[[X], B],
        /,
    ) -> B: ...
    def pipe(self, *fns: Callable[[Any], Any]) -> Any:
        """Apply functions left to right: ``eff.pipe(f, g)`` is ``g(f(eff))``.

        mypy types a chain of several lambdas as ``Any``; prefer methods or named functions.
        """
        value: Any = self
        for fn in fns:
            value = fn(value)
        return value

    # -- running -------------------------------------------------------------------------

    @staticmethod
    def run_sync(effect: Effect[T, ErrT]) -> Result[T, ErrT]:
        """Run to completion without an event loop; refuses effects that truly await.

        Typed failures come back as ``Failure(e)``; defects raise the original exception.
        """
        exit_ = run_sync_exit(effect)
        if exit_ is None:
            raise RuntimeError(
                "Effect.run_sync cannot run an effect that awaits (promise, sleep, timeout); "
                "use `await Effect.run_async(eff)` or `await eff`"
            )
        return _to_result(exit_)

    @staticmethod
    async def run_async(effect: Effect[T, ErrT]) -> Result[T, ErrT]:
        """Run on the current event loop; ``Success(a)`` or ``Failure(e)``; defects raise."""
        return _to_result(await run_exit(effect))

    @staticmethod
    async def run_promise(effect: Effect[T, ErrT]) -> T:
        """Run and return the value; a typed failure is raised (``runPromise``)."""
        return cast(T, await run_promise(effect))


Gen = TypeAliasType("Gen", Generator[Effect[Any, E], Any, A], type_params=(A, E))
"""The annotation of an ``Effect.gen`` generator: ``-> Gen[Result, Err1 | Err2]``."""


@attrs.frozen
class Ok(Generic[A]):
    """The success branch of ``Effect.either()``."""

    value: A
    is_ok: ClassVar[Literal[True]] = True


@attrs.frozen
class Err(Generic[E]):
    """The failure branch of ``Effect.either()``."""

    error: E
    is_ok: ClassVar[Literal[False]] = False


def _fail_to_err(error: Any) -> Effect[Any, Never]:
    return Effect(_SUCCEED, Err(error))


def _checked_error(error: ErrT) -> ErrT:
    if not isinstance(error, BaseException):
        raise TypeError(
            f"map_error must return an exception (a TaggedError), got {type(error).__name__}"
        )
    return error


def _clock_now() -> datetime | None:
    clock = _clock.current_clock()
    return clock.now() if clock is not None else None


def _retrying(
    effect: Effect[A, E], policy: Retry, attempt: int, started: datetime | None, rng: random.Random
) -> Effect[A, E]:
    def on_failure(error: Any) -> Effect[Any, Any]:
        clock = _clock.current_clock()
        now = clock.now() if clock is not None else None
        first = started if started is not None else now
        elapsed = now - first if now is not None and first is not None else None
        if not policy.should_retry(attempt, elapsed):
            return Effect(_FAIL, error)
        delay = policy.delay_for(attempt, rng)
        return Effect(
            _FLAT_MAP,
            Effect(_ASYNC, functools.partial(_clock.sleep_for, delay)),
            lambda _: _retrying(effect, policy, attempt + 1, first, rng),
        )

    return Effect(_CATCH, effect, on_failure)


def async_effect(thunk: Callable[[], Awaitable[Effect[T, ErrT]]]) -> Effect[T, ErrT]:
    """An effect that, when run, awaits ``thunk()`` and continues with the effect it gives.

    The runtime uses it to make client calls lazy: nothing is sent until the effect runs.
    """
    return Effect(_ASYNC_EFFECT, thunk)


def exit_of(effect: Effect[T, ErrT]) -> Effect[Exit[T, ErrT], Never]:
    """An effect that runs ``effect`` and succeeds with its ``Exit`` (defects included).

    What ``await run_exit(effect)`` gives, without a nested interpreter: ``effect`` runs on
    the same continuation stack (its generators closed and finalizers run as it unwinds).
    """
    return Effect(_EXIT_OF, effect)


def from_exit(exit_: Exit[T, ErrT]) -> Effect[T, ErrT]:
    """Replay an ``Exit``: a success or failure as an effect; a defect is re-raised."""
    if exit_.is_ok:
        return Effect(_SUCCEED, exit_.value)
    if exit_.is_failure:
        return Effect(_FAIL, exit_.error)
    raise exit_.error


def _to_result(exit_: Exit[T, ErrT]) -> Result[T, ErrT]:
    if exit_.is_ok:
        return Success(exit_.value)
    if exit_.is_failure:
        return Failure(cast(ErrT, exit_.error))
    raise exit_.error
