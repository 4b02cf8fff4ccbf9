# Continuous misuse mypy must reject: each `# E: <code>` line must be reported with that
# error code, and no other line may be.
# Nothing here runs: pytest imports this file (doctest collection) and finds only functions.
from __future__ import annotations

import msgspec

from durable_effect import Effect, Gen, StorageError, ValidationError
from durable_effect._client._jobs_client import JobsClient
from durable_effect.jobs._continuous import Continuous, ContinuousContext


class Tokens(msgspec.Struct):
    access: str


class Invoice(msgspec.Struct):
    total: int


@Effect.gen
def refresh(ctx: ContinuousContext[Tokens]) -> Gen[None, ValidationError]:
    state = yield from ctx.state
    yield from ctx.set_state(Tokens(access=state.access + "!"))


job = Continuous.make(Tokens, Continuous.every("30 minutes"), refresh)


def on_invoices(ctx: ContinuousContext[Invoice]) -> Effect[None]:
    return Effect.succeed(None)


def counts(ctx: ContinuousContext[Tokens]) -> Effect[int]:
    return Effect.succeed(1)


@Effect.gen
def undeclared(ctx: ContinuousContext[Tokens]) -> Gen[None, StorageError]:
    yield from ctx.set_state(Tokens(access="x"))  # E: misc


@Effect.gen
def wrong_state(ctx: ContinuousContext[Tokens]) -> Gen[None, ValidationError]:
    yield from ctx.set_state(Invoice(total=1))  # E: arg-type


def state_is_an_effect(ctx: ContinuousContext[Tokens]) -> None:
    access = ctx.state.access  # E: attr-defined


def definitions() -> None:
    # The handler's context must be of the state schema's type.
    a = Continuous.make(Tokens, Continuous.every("1 min"), on_invoices)  # E: arg-type
    # execute's success type is fixed: None.
    b = Continuous.make(Tokens, Continuous.every("1 min"), counts)  # E: arg-type
    # misfire is one of three literals; the schedule is a schedule.
    c = Continuous.make(Tokens, Continuous.every("1 min"), refresh, misfire="late")  # E: arg-type
    d = Continuous.make(Tokens, "every minute", refresh)  # E: arg-type


async def client_calls(client: JobsClient) -> None:
    h = client.continuous(job)
    await h.start(id="u1", input=Invoice(total=3))  # E: arg-type
    await h.start(id="u1", input={"access": "x"})  # E: arg-type
    # A client call is a lazy Effect: forgetting to run it is an error.
    h.trigger("u1")  # E: unused-awaitable
    h.terminate("u1")  # E: unused-awaitable
    state: Invoice | None = (await h.get_state("u1")).state  # E: assignment
