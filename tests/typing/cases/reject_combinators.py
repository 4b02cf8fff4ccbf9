# Combinator misuse mypy must reject: each `# E: <code>` line must be reported with that
# error code, and no other line may be. Nothing here runs (pytest only imports it).
from __future__ import annotations

from durable_effect import Effect, InstanceNotFoundError, Ok, StorageError


def lookup(key: str) -> Effect[int, InstanceNotFoundError]:
    return Effect.fail(InstanceNotFoundError(instance_id=key))


def save(n: int) -> Effect[str, StorageError]:
    return Effect.succeed(str(n))


def handle_storage(e: StorageError) -> Effect[int, StorageError]:
    return Effect.succeed(0)


def needs_int(eff: Effect[int, InstanceNotFoundError]) -> None: ...


def plus_one(n: int) -> int:
    return n + 1


def rejected() -> None:
    # The catch_tag handler must take the class it catches.
    caught = lookup("k").catch_tag(InstanceNotFoundError)(handle_storage)  # E: arg-type

    # Wrong success type, or an error the parameter does not allow.
    needs_int(Effect.succeed("x"))  # E: arg-type
    needs_int(save(1).map(len))  # E: arg-type

    # E is bound to BaseException: only exceptions can be typed errors.
    not_an_error = Effect.fail("not an exception")  # E: type-var
    mapped = lookup("k").map_error(lambda e: "text")  # E: type-var

    # flat_map needs a function that returns an Effect.
    plain: Effect[int, InstanceNotFoundError] = lookup("k").flat_map(plus_one)  # E: arg-type

    # Ok has no error, Err has no value.
    missing = Ok(1).error  # E: attr-defined

    # An Effect is a description: a bare expression statement discards the program unrun.
    Effect.succeed(1)  # E: unused-awaitable
    lookup("k").map(str)  # E: unused-awaitable


async def main() -> None:
    Effect.run_promise(lookup("k"))  # E: unused-coroutine
    value: str = await lookup("k")  # E: assignment
