# Revealed types of Debounce jobs: the definition is typed by its state and event schemas
# (the state is the event type without a state schema), and a handle taken by the
# definition object types every operation.
# Nothing here runs: pytest imports this file (doctest collection) and finds only functions.
# mypy: disable-error-code="unused-awaitable, unused-coroutine"
# ruff: noqa: E501
from __future__ import annotations

from typing import reveal_type

import msgspec

from durable_effect import Debounce, DebounceContext, DebounceEventContext, Effect, Gen
from durable_effect._client._jobs_client import JobsClient


class Hook(msgspec.Struct):
    contact: str


class Hooks(msgspec.Struct):
    contacts: list[str]


class Created(msgspec.Struct, tag=True):
    name: str


class Deleted(msgspec.Struct, tag=True):
    reason: str


@Effect.gen
def send(ctx: DebounceContext[Hooks]) -> Gen[None, Exception]:
    state = yield from ctx.state
    reveal_type(state)  # R: Hooks
    reveal_type(ctx.state)  # R: Effect[Hooks, Never]
    reveal_type(ctx.event_count)  # R: Effect[int, Never]
    reveal_type(ctx.debounce_started_at)  # R: Effect[datetime, Never]
    reveal_type(ctx.flush_reason)  # R: Literal['max_events', 'flush_after', 'idle', 'manual']
    reveal_type(ctx.attempt)  # R: int
    reveal_type(ctx.is_retry)  # R: bool
    reveal_type(ctx.instance_id)  # R: str
    reveal_type(ctx.id)  # R: str
    reveal_type(ctx.job_name)  # R: str


def collect(ctx: DebounceEventContext[Hooks, Hook]) -> Effect[Hooks]:
    reveal_type(ctx.event)  # R: Hook
    reveal_type(ctx.state)  # R: Hooks | None
    reveal_type(ctx.event_count)  # R: int
    reveal_type(ctx.instance_id)  # R: str
    prev = ctx.state.contacts if ctx.state is not None else []
    return Effect.succeed(Hooks(contacts=[*prev, ctx.event.contact]))


def latest(ctx: DebounceContext[Hook]) -> Effect[None]:
    return Effect.succeed(None)


def changes(ctx: DebounceContext[Created | Deleted]) -> Effect[None]:
    return Effect.succeed(None)


batcher = Debounce.make(Hook, send, "5 s", state_schema=Hooks, on_event=collect, max_events=100)
keep_latest = Debounce.make(Hook, latest, flush_after="1 minute")
def add_up(ctx: DebounceEventContext[int, int]) -> Effect[int]:
    return Effect.succeed((ctx.state or 0) + ctx.event)


summed = Debounce.make(int, lambda ctx: Effect.succeed(None), "1 s", on_event=add_up)
union = Debounce.make(Created | Deleted, changes, "1 s")


def count_changes(ctx: DebounceEventContext[int, Created | Deleted]) -> Effect[int]:
    return Effect.succeed((ctx.state or 0) + 1)


def report_count(ctx: DebounceContext[int]) -> Effect[None]:
    return Effect.succeed(None)


counted = Debounce.make(Created | Deleted, report_count, "1 s", state_schema=int, on_event=count_changes)


def definitions() -> None:
    reveal_type(batcher)  # R: DebounceDefinition[Hooks, Hook]
    reveal_type(keep_latest)  # R: DebounceDefinition[Hook, Hook]
    reveal_type(summed)  # R: DebounceDefinition[int, int]
    reveal_type(union)  # R: DebounceDefinition[Created | Deleted, Created | Deleted]
    reveal_type(counted)  # R: DebounceDefinition[int, Created | Deleted]


def handles(client: JobsClient) -> None:
    h = client.debounce(batcher)
    reveal_type(h)  # R: DebounceHandle[Hooks, Hook]
    reveal_type(h.add(id="c1", event=Hook(contact="c1")))  # R: Effect[DebounceAddResult, ValidationError | DuplicateEventError | ExecutionError | JobNotFoundError | StorageError]
    reveal_type(h.add(id="c1", event=Hook(contact="c1"), event_id="evt-1"))  # R: Effect[DebounceAddResult, ValidationError | DuplicateEventError | ExecutionError | JobNotFoundError | StorageError]
    reveal_type(h.flush("c1"))  # R: Effect[DebounceFlushResult, ValidationError | ExecutionError | JobNotFoundError | StorageError]
    reveal_type(h.clear("c1"))  # R: Effect[DebounceClearResult, ValidationError | JobNotFoundError | StorageError]
    reveal_type(h.status("c1"))  # R: Effect[DebounceStatusResult, ValidationError | JobNotFoundError | StorageError]
    reveal_type(h.get_state("c1"))  # R: Effect[DebounceStateResult[Hooks], ValidationError | JobNotFoundError | StorageError]
    reveal_type(client.debounce(keep_latest).get_state("c1"))  # R: Effect[DebounceStateResult[Hook], ValidationError | JobNotFoundError | StorageError]
    reveal_type(client.debounce("webhooks"))  # R: DebounceHandle[object, object]
    reveal_type(client.debounce(counted).add(id="c1", event=Deleted(reason="x")))  # R: Effect[DebounceAddResult, ValidationError | DuplicateEventError | ExecutionError | JobNotFoundError | StorageError]


async def results(client: JobsClient) -> None:
    h = client.debounce(batcher)
    added = await h.add(id="c1", event=Hook(contact="c1"))
    reveal_type(added.created)  # R: bool
    reveal_type(added.event_count)  # R: int
    reveal_type(added.will_flush_at)  # R: datetime | None
    flushed = await h.flush("c1")
    reveal_type(flushed.reason)  # R: Literal['manual', 'empty']
    reveal_type(flushed.retry_scheduled)  # R: bool
    status = await h.status("c1")
    reveal_type(status.status)  # R: Literal['debouncing', 'idle', 'not_found']
    reveal_type(status.started_at)  # R: datetime | None
    reveal_type((await h.get_state("c1")).state)  # R: Hooks | None
    reveal_type((await h.clear("c1")).discarded_events)  # R: int


# Handlers given as lambdas: the types still come from the schemas (issue 12, item 8).
lambda_state = Debounce.make(
    Hook,
    lambda ctx: Effect.succeed(None),
    "5 s",
    state_schema=Hooks,
    on_event=lambda ctx: Effect.succeed(Hooks(contacts=[ctx.event.contact])),
)
reveal_type(lambda_state)  # R: DebounceDefinition[Hooks, Hook]
lambda_latest = Debounce.make(Hook, lambda ctx: Effect.succeed(None), "5 s")
reveal_type(lambda_latest)  # R: DebounceDefinition[Hook, Hook]


async def lambda_results(client: JobsClient) -> None:
    h = client.debounce(lambda_state)
    reveal_type(h.add)  # R: def (*, id: str, event: Hook, event_id: str | None =) -> Effect[DebounceAddResult, ValidationError | DuplicateEventError | ExecutionError | JobNotFoundError | StorageError]
    reveal_type((await h.get_state("c1")).state)  # R: Hooks | None
