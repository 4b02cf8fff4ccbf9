# Revealed types of the Effect constructors and combinators. Each `# R:` comment is the
# expected type; names are compared without their module unless the expectation has one.
# Nothing here runs: pytest imports this file (doctest collection) and finds only functions.
# mypy: disable-error-code="unused-awaitable, unused-coroutine"
# ruff: noqa: E501
from __future__ import annotations

from collections.abc import Callable
from datetime import timedelta
from typing import ClassVar, Literal, Never, reveal_type

import attrs
from returns.future import FutureResult
from returns.io import IOResult
from returns.result import Result

from durable_effect import (
    Effect,
    InstanceNotFoundError,
    StorageError,
    TaggedError,
    ValidationError,
)
from durable_effect._backoff import Retry


@attrs.frozen(kw_only=True, eq=False)
class Boom(TaggedError):
    tag: ClassVar[Literal["Boom"]] = "Boom"
    code: int


def lookup(key: str) -> Effect[int, InstanceNotFoundError]:
    return Effect.fail(InstanceNotFoundError(instance_id=key))


def save(n: int) -> Effect[str, StorageError]:
    return Effect.succeed(str(n))


def to_boom(e: Exception) -> Boom:
    return Boom(code=len(str(e)))


async def fetch() -> bytes:
    return b""


def constructors() -> None:
    reveal_type(Effect.succeed(1))  # R: Effect[int, Never]
    reveal_type(Effect.fail(Boom(code=1)))  # R: Effect[Never, Boom]
    reveal_type(Effect.sync(lambda: "x"))  # R: Effect[str, Never]
    reveal_type(Effect.try_(lambda: 1.5, catch=to_boom))  # R: Effect[float, Boom]
    reveal_type(Effect.promise(fetch))  # R: Effect[bytes, Never]
    reveal_type(Effect.try_promise(fetch, catch=to_boom))  # R: Effect[bytes, Boom]
    reveal_type(Effect.suspend(lambda: lookup("k")))  # R: Effect[int, InstanceNotFoundError]
    reveal_type(Effect.sleep("5s"))  # R: Effect[None, Never]
    reveal_type(Effect.sleep(timedelta(seconds=1)))  # R: Effect[None, Never]
    reveal_type(Effect.log_info("hi", k=1))  # R: Effect[None, Never]
    reveal_type(Effect.all([lookup("a"), lookup("b")]))  # R: Effect[list[int], InstanceNotFoundError]
    # Effects with different errors in one list join to their common base, not a union:
    reveal_type(Effect.all([lookup("a"), Effect.fail(Boom(code=1))]))  # R: Effect[list[int], TaggedError]


def bridges(
    result: Result[int, Boom], io_result: IOResult[str, Boom], future: FutureResult[bytes, Boom]
) -> None:
    reveal_type(Effect.from_result(result))  # R: Effect[int, Boom]
    reveal_type(Effect.from_io_result(io_result))  # R: Effect[str, Boom]
    reveal_type(Effect.from_future_result(future))  # R: Effect[bytes, Boom]


def combinators() -> None:
    reveal_type(lookup("k").map(str))  # R: Effect[str, InstanceNotFoundError]
    reveal_type(lookup("k").flat_map(save))  # R: Effect[str, InstanceNotFoundError | StorageError]
    reveal_type(lookup("k").flat_map(save).flat_map(lambda s: Effect.fail(Boom(code=1))))  # R: Effect[Never, InstanceNotFoundError | StorageError | Boom]
    reveal_type(lookup("k").tap(save))  # R: Effect[int, InstanceNotFoundError | StorageError]
    reveal_type(lookup("k").map_error(lambda e: Boom(code=len(e.instance_id))))  # R: Effect[int, Boom]
    reveal_type(lookup("k").catch_all(lambda e: Effect.succeed(e.instance_id)))  # R: Effect[int | str, Never]
    reveal_type(lookup("k").catch_all(lambda e: save(0)))  # R: Effect[int | str, StorageError]
    reveal_type(lookup("k").either())  # R: Effect[Ok[int] | Err[InstanceNotFoundError], Never]
    reveal_type(lookup("k").ensuring(Effect.log_info("done")))  # R: Effect[int, InstanceNotFoundError]
    reveal_type(lookup("k").retry(Retry(3)))  # R: Effect[int, InstanceNotFoundError]
    reveal_type(lookup("k").timeout("1s"))  # R: Effect[int, InstanceNotFoundError | TimeoutException]


def catch_tag() -> None:
    # Curried: the handler's parameter is the class given; the union keeps the caught class.
    reveal_type(lookup("k").catch_tag(InstanceNotFoundError))  # R: def [B, E2 <: BaseException] (def (InstanceNotFoundError) -> Effect[B, E2]) -> Effect[int | B, InstanceNotFoundError | E2]
    lookup("k").catch_tag(InstanceNotFoundError)(lambda e: Effect.succeed(reveal_type(e)))  # R: InstanceNotFoundError
    reveal_type(lookup("k").flat_map(save).catch_tag(StorageError)(lambda e: Effect.succeed(0)))  # R: Effect[str | int, InstanceNotFoundError | StorageError]


def double(eff: Effect[int, InstanceNotFoundError]) -> Effect[int, InstanceNotFoundError]:
    return eff.map(lambda n: n * 2)


def describe(eff: Effect[int, InstanceNotFoundError]) -> Effect[str, InstanceNotFoundError]:
    return eff.map(str)


def pipe() -> None:
    reveal_type(lookup("k").pipe(double, describe))  # R: Effect[str, InstanceNotFoundError]
    reveal_type(lookup("k").pipe(Effect.run_sync))  # R: returns.result.Result[int, durable_effect.errors.InstanceNotFoundError]


def needs(eff: Effect[int, InstanceNotFoundError | ValidationError]) -> None: ...


def variance() -> None:
    # An Effect with fewer errors, or a narrower value, is accepted: both parameters are covariant.
    needs(Effect.succeed(1))
    needs(Effect.succeed(True))
    needs(lookup("k"))
    needs(Effect.fail(ValidationError(schema="S", message="m", path="$")))
    handler: Callable[[int], Effect[int, Never]] = Effect.succeed
    reveal_type(handler)  # R: def (int) -> Effect[int, Never]
