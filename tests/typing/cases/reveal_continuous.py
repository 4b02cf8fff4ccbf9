# Revealed types of Continuous jobs: the definition is typed by its state schema, and a
# handle taken by the definition object types every operation.
# Nothing here runs: pytest imports this file (doctest collection) and finds only functions.
# mypy: disable-error-code="unused-awaitable, unused-coroutine"
# ruff: noqa: E501
from __future__ import annotations

from typing import reveal_type

import msgspec

from durable_effect import Effect, Gen, ValidationError
from durable_effect._client._jobs_client import JobsClient
from durable_effect.jobs._continuous import Continuous, ContinuousContext


class Tokens(msgspec.Struct):
    access: str
    refresh: str


@Effect.gen
def refresh(ctx: ContinuousContext[Tokens]) -> Gen[None, ValidationError]:
    state = yield from ctx.state
    reveal_type(state)  # R: Tokens
    reveal_type(ctx.state)  # R: Effect[Tokens, Never]
    reveal_type(ctx.set_state(state))  # R: Effect[None, ValidationError]
    reveal_type(ctx.update_state(lambda s: s))  # R: Effect[None, ValidationError]
    reveal_type(ctx.terminate("done"))  # R: Effect[Never, Never]
    reveal_type(ctx.run_count)  # R: int
    reveal_type(ctx.attempt)  # R: int
    reveal_type(ctx.is_retry)  # R: bool
    reveal_type(ctx.scheduled_at)  # R: datetime
    reveal_type(ctx.instance_id)  # R: str
    reveal_type(ctx.id)  # R: str
    reveal_type(ctx.job_name)  # R: str
    yield from ctx.set_state(Tokens(access="new", refresh=state.refresh))


job = Continuous.make(Tokens, Continuous.every("30 minutes"), refresh)


def definitions() -> None:
    reveal_type(job)  # R: ContinuousDefinition[Tokens]
    reveal_type(refresh)  # R: def (ctx: ContinuousContext[Tokens]) -> Effect[None, ValidationError]
    reveal_type(Continuous.every("5 min"))  # R: Every
    reveal_type(Continuous.cron("0 * * * *", tz="Europe/Paris"))  # R: Cron


def handles(client: JobsClient) -> None:
    h = client.continuous(job)
    reveal_type(h)  # R: ContinuousHandle[Tokens]
    reveal_type(h.start(id="u1", input=Tokens(access="", refresh="rt")))  # R: Effect[ContinuousStartResult, ValidationError | ExecutionError | JobNotFoundError | StorageError]
    reveal_type(h.trigger("u1"))  # R: Effect[ContinuousTriggerResult, ValidationError | ExecutionError | JobNotFoundError | StorageError]
    reveal_type(h.status("u1"))  # R: Effect[ContinuousStatusResult, ValidationError | JobNotFoundError | StorageError]
    reveal_type(h.get_state("u1"))  # R: Effect[ContinuousGetStateResult[Tokens], ValidationError | JobNotFoundError | StorageError]
    reveal_type(h.pause("u1"))  # R: Effect[ContinuousPauseResult, ValidationError | JobNotFoundError | StorageError]
    reveal_type(h.resume("u1"))  # R: Effect[ContinuousResumeResult, ValidationError | JobNotFoundError | StorageError]
    reveal_type(h.terminate("u1", reason="bye"))  # R: Effect[ContinuousTerminateResult, ValidationError | JobNotFoundError | StorageError]
    reveal_type(client.continuous("tokens"))  # R: ContinuousHandle[object]


async def results(client: JobsClient) -> None:
    h = client.continuous(job)
    reveal_type((await h.get_state("u1")).state)  # R: Tokens | None
    status = await h.status("u1")
    reveal_type(status.status)  # R: Literal['running'] | Literal['paused'] | Literal['not_found']
    reveal_type(status.run_count)  # R: int
    reveal_type(status.next_run_at)  # R: datetime | None
    reveal_type(status.last_run_at)  # R: datetime | None
    reveal_type(status.last_error)  # R: str | None
    started = await h.start(id="u1", input=Tokens(access="", refresh=""))
    reveal_type(started.created)  # R: bool
    reveal_type(started.instance_id)  # R: str
    reveal_type(started.status)  # R: Literal['running'] | Literal['paused'] | Literal['terminated']
    triggered = await h.trigger("u1")
    reveal_type(triggered.terminated)  # R: bool
    reveal_type((await h.pause("u1")).paused)  # R: bool
    reveal_type((await h.resume("u1")).resumed)  # R: bool
    reveal_type((await h.terminate("u1")).reason)  # R: str | None
