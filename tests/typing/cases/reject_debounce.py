# Debounce misuse mypy must reject: each `# E: <code>` line must be reported with that
# error code, and no other line may be.
# Nothing here runs: pytest imports this file (doctest collection) and finds only functions.
# ruff: noqa: E501
from __future__ import annotations

import msgspec

from durable_effect import Debounce, DebounceContext, DebounceEventContext, Effect, Gen
from durable_effect._client._jobs_client import JobsClient


class Hook(msgspec.Struct):
    contact: str


class Hooks(msgspec.Struct):
    contacts: list[str]


class Invoice(msgspec.Struct):
    total: int


def send(ctx: DebounceContext[Hooks]) -> Effect[None]:
    return Effect.succeed(None)


def collect(ctx: DebounceEventContext[Hooks, Hook]) -> Effect[Hooks]:
    return Effect.succeed(Hooks(contacts=[ctx.event.contact]))


def on_invoices(ctx: DebounceContext[Invoice]) -> Effect[None]:
    return Effect.succeed(None)


def returns_a_count(ctx: DebounceContext[Hooks]) -> Effect[int]:
    return Effect.succeed(1)


def reduces_to_invoices(ctx: DebounceEventContext[Hooks, Hook]) -> Effect[Invoice]:
    return Effect.succeed(Invoice(total=1))


batcher = Debounce.make(Hook, send, "5 s", state_schema=Hooks, on_event=collect)


def wrong_event(client: JobsClient) -> None:
    _ = client.debounce(batcher).add(id="c1", event=Invoice(total=1))  # E: arg-type


def event_is_keyword_only(client: JobsClient) -> None:
    _ = client.debounce(batcher).add("c1", Hook(contact="c1"))  # E: call-arg


async def wrong_state(client: JobsClient) -> None:
    result = await client.debounce(batcher).get_state("c1")
    state: Invoice | None = result.state  # E: assignment


def execute_of_another_state() -> None:
    Debounce.make(Hook, on_invoices, "5 s", state_schema=Hooks, on_event=collect)  # E: arg-type


def execute_must_return_none() -> None:
    Debounce.make(Hook, returns_a_count, "5 s", state_schema=Hooks, on_event=collect)  # E: arg-type


def reducer_of_another_state() -> None:
    Debounce.make(Hook, send, "5 s", state_schema=Hooks, on_event=reduces_to_invoices)  # E: arg-type


def state_schema_needs_a_reducer() -> None:
    Debounce.make(Hook, send, "5 s", state_schema=Hooks)  # E: call-overload


def state_is_an_effect(ctx: DebounceContext[Hooks]) -> None:
    ctx.state.contacts  # E: attr-defined


@Effect.gen
def undeclared_error(ctx: DebounceContext[Hooks]) -> Gen[None, ValueError]:
    yield from Effect.fail(KeyError("x"))  # E: misc



lambda_job = Debounce.make(
    Hook,
    lambda ctx: Effect.succeed(None),
    "5 s",
    state_schema=Hooks,
    on_event=lambda ctx: Effect.succeed(Hooks(contacts=[ctx.event.contact])),
)


async def lambda_wrong_event(client: JobsClient) -> None:
    await client.debounce(lambda_job).add(id="a", event=12345)  # E: arg-type
