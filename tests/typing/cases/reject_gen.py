# Generator programs mypy must reject: each `# E: <code>` line must be reported with that
# error code, and no other line may be.
from __future__ import annotations

from typing import Never

from durable_effect import Effect, Gen, InstanceNotFoundError, StorageError


def lookup(key: str) -> Effect[int, InstanceNotFoundError]:
    return Effect.fail(InstanceNotFoundError(instance_id=key))


def save(n: int) -> Effect[str, StorageError]:
    return Effect.succeed(str(n))


@Effect.gen
def undeclared_error() -> Gen[int, InstanceNotFoundError]:
    n = yield from lookup("k")
    yield from save(n)  # E: misc
    return n


@Effect.gen
def undeclared_tagged_error() -> Gen[int, InstanceNotFoundError]:
    yield from InstanceNotFoundError(instance_id="fine")
    yield from StorageError(operation="save", cause="disk")  # E: misc
    return 1


@Effect.gen
def no_errors_declared() -> Gen[int, Never]:
    n = yield from lookup("k")  # E: misc
    return n


@Effect.gen
def wrong_return_type() -> Gen[int, Never]:
    text = yield from Effect.succeed("text")
    return text  # E: return-value


@Effect.gen
def wrong_binding_type() -> Gen[int, Never]:
    text: str = yield from Effect.succeed(1)  # E: assignment
    return len(text)


@Effect.gen
def plain_yield() -> Gen[int, Never]:
    yield 3  # E: misc
    return 0


@Effect.gen
def takes_an_int(n: int) -> Gen[int, Never]:
    m = yield from Effect.succeed(n)
    return m


bad_call = takes_an_int("three")  # E: arg-type
