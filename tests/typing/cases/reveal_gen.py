# Revealed types of Effect.gen programs, either(), and the run functions.
# Nothing here runs: pytest imports this file (doctest collection) and finds only functions.
# mypy: disable-error-code="unused-awaitable, unused-coroutine"
# ruff: noqa: E501
from __future__ import annotations

from typing import Never, reveal_type

from durable_effect import Effect, Err, Gen, InstanceNotFoundError, Ok, StorageError


def lookup(key: str) -> Effect[int, InstanceNotFoundError]:
    return Effect.fail(InstanceNotFoundError(instance_id=key))


def save(n: int) -> Effect[str, StorageError]:
    return Effect.succeed(str(n))


@Effect.gen
def program(key: str, *, retries: int = 3) -> Gen[str, InstanceNotFoundError | StorageError]:
    n = yield from lookup(key)
    reveal_type(n)  # R: int
    s = yield from save(n)
    reveal_type(s)  # R: str
    reveal_type((yield from Effect.log_info("saved")))  # R: None
    if n > 10:
        reveal_type((yield from InstanceNotFoundError(instance_id=key)))  # R: Never
    return s


def undecorated() -> Gen[int, StorageError]:
    yield from save(1)
    return 1


def decorated() -> None:
    # The decorator keeps the parameters and gives an Effect of the Gen's A and E.
    reveal_type(program)  # R: def (key: str, *, retries: int =) -> Effect[str, InstanceNotFoundError | StorageError]
    reveal_type(program("k", retries=1))  # R: Effect[str, InstanceNotFoundError | StorageError]
    reveal_type(undecorated())  # R: Generator[Effect[Any, StorageError], Any, int]
    reveal_type(Effect.gen(undecorated))  # R: def () -> Effect[int, StorageError]


@Effect.gen
def by_isinstance() -> Gen[int, Never]:
    outcome = yield from lookup("k").either()
    reveal_type(outcome)  # R: Ok[int] | Err[InstanceNotFoundError]
    if isinstance(outcome, Ok):
        reveal_type(outcome.value)  # R: int
        return outcome.value
    reveal_type(outcome)  # R: Err[InstanceNotFoundError]
    reveal_type(outcome.error)  # R: InstanceNotFoundError
    reveal_type(outcome.error.instance_id)  # R: str
    return 0


@Effect.gen
def by_flag() -> Gen[int, Never]:
    outcome = yield from lookup("k").either()
    if outcome.is_ok:
        reveal_type(outcome)  # R: Ok[int]
        return outcome.value
    reveal_type(outcome)  # R: Err[InstanceNotFoundError]
    return 0


def outcomes() -> None:
    reveal_type(Ok(1))  # R: Ok[int]
    reveal_type(Ok("a").value)  # R: str
    reveal_type(Err(StorageError(operation="o", cause="c")).error)  # R: StorageError


def running() -> None:
    reveal_type(Effect.run_sync(program("k")))  # R: returns.result.Result[str, durable_effect.errors.InstanceNotFoundError | durable_effect.errors.StorageError]
    reveal_type(Effect.run_sync(Effect.succeed(1)))  # R: returns.result.Result[int, Never]
    reveal_type(Effect.run_promise(lookup("k")))  # R: Coroutine[Any, Any, int]


async def running_async() -> None:
    reveal_type(await Effect.run_promise(program("k")))  # R: str
    reveal_type(await program("k"))  # R: str
    reveal_type(await Effect.run_async(lookup("k")))  # R: returns.result.Result[int, durable_effect.errors.InstanceNotFoundError]
