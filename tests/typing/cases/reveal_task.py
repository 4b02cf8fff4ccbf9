# Revealed types of Task jobs: the definition is typed by its state schema and its event type
# (taken from on_event's annotation when event_schema is a union of tagged Structs), and a
# handle taken by the definition object types every operation.
# Nothing here runs: pytest imports this file (doctest collection) and finds only functions.
# mypy: disable-error-code="unused-awaitable, unused-coroutine"
# ruff: noqa: E501
from __future__ import annotations

from typing import reveal_type

import msgspec

from durable_effect import Effect, Gen, ValidationError
from durable_effect._client._jobs_client import JobsClient
from durable_effect.jobs._task import Task
from durable_effect.jobs._task_context import (
    TaskContext,
    TaskErrorContext,
    TaskEventContext,
    TaskIdleContext,
)


class Order(msgspec.Struct):
    order_id: str
    status: str


class Placed(msgspec.Struct, tag=True):
    order_id: str


class Paid(msgspec.Struct, tag=True):
    pass


@Effect.gen
def on_event(event: Placed | Paid, ctx: TaskEventContext[Order]) -> Gen[None, ValidationError]:
    state = yield from ctx.state
    reveal_type(state)  # R: Order | None
    reveal_type(ctx.state)  # R: Effect[Order | None, Never]
    reveal_type(ctx.set_state(Order(order_id="o", status="new")))  # R: Effect[None, ValidationError]
    reveal_type(ctx.update_state(lambda s: s))  # R: Effect[None, ValidationError]
    reveal_type(ctx.schedule("5 minutes"))  # R: Effect[None, ValidationError]
    reveal_type(ctx.cancel_schedule())  # R: Effect[None, Never]
    reveal_type(ctx.get_scheduled_time())  # R: Effect[datetime | None, Never]
    reveal_type(ctx.terminate())  # R: Effect[Never, Never]
    reveal_type(ctx.event_count)  # R: Effect[int, Never]
    reveal_type(ctx.execute_count)  # R: Effect[int, Never]
    reveal_type(ctx.created_at)  # R: Effect[datetime, Never]
    reveal_type(ctx.is_first_event)  # R: bool
    reveal_type(ctx.instance_id)  # R: str
    reveal_type(ctx.id)  # R: str
    reveal_type(ctx.job_name)  # R: str
    if isinstance(event, Placed):
        yield from ctx.set_state(Order(order_id=event.order_id, status="pending"))


def execute(ctx: TaskContext[Order]) -> Effect[None, ValidationError]:
    return ctx.schedule("1 hour")


def on_idle(ctx: TaskIdleContext[Order]) -> Effect[None]:
    reveal_type(ctx.idle_reason)  # R: Literal['on_event'] | Literal['execute']
    return Effect.succeed(None)


def on_error(error: BaseException, ctx: TaskErrorContext[Order]) -> Effect[None]:
    reveal_type(ctx.error_source)  # R: Literal['on_event'] | Literal['execute'] | Literal['on_idle'] | Literal['on_error']
    return Effect.succeed(None)


def any_handler(ctx: TaskContext[Order]) -> Effect[None]:
    return Effect.succeed(None)


def on_int(event: int, ctx: TaskContext[Order]) -> Effect[None]:
    return Effect.succeed(None)


job = Task.make(Order, Placed | Paid, on_event, execute, on_idle=on_idle, on_error=on_error)
simple = Task.make(Order, int, on_int, any_handler, any_handler)


def definitions() -> None:
    reveal_type(job)  # R: TaskDefinition[Order, Placed | Paid]
    reveal_type(simple)  # R: TaskDefinition[Order, int]
    reveal_type(Task.make(Order, Placed, on_event, execute))  # R: TaskDefinition[Order, Placed]


def handles(client: JobsClient) -> None:
    h = client.task(job)
    reveal_type(h)  # R: TaskHandle[Order, Placed | Paid]
    reveal_type(h.send(id="o1", event=Paid()))  # R: Effect[TaskSendResult, DuplicateEventError | ExecutionError | JobNotFoundError | ValidationError | StorageError]
    reveal_type(h.trigger("o1"))  # R: Effect[TaskTriggerResult, ExecutionError | JobNotFoundError | ValidationError | StorageError]
    reveal_type(h.status("o1"))  # R: Effect[TaskStatusResult, JobNotFoundError | ValidationError | StorageError]
    reveal_type(h.get_state("o1"))  # R: Effect[TaskGetStateResult[Order], JobNotFoundError | ValidationError | StorageError]
    reveal_type(h.terminate("o1"))  # R: Effect[TaskTerminateResult, JobNotFoundError | ValidationError | StorageError]
    reveal_type(client.task("orders"))  # R: TaskHandle[object, object]


async def results(client: JobsClient) -> None:
    h = client.task(job)
    sent = await h.send(id="o1", event=Placed(order_id="o1"), event_id="evt-1")
    reveal_type(sent.created)  # R: bool
    reveal_type(sent.instance_id)  # R: str
    reveal_type(sent.scheduled_at)  # R: datetime | None
    reveal_type((await h.trigger("o1")).triggered)  # R: bool
    status = await h.status("o1")
    reveal_type(status.status)  # R: Literal['active'] | Literal['idle'] | Literal['not_found']
    reveal_type(status.scheduled_at)  # R: datetime | None
    reveal_type(status.event_count)  # R: int
    reveal_type(status.execute_count)  # R: int
    reveal_type(status.created_at)  # R: datetime | None
    got = await h.get_state("o1")
    reveal_type(got.state)  # R: Order | None
    reveal_type(got.scheduled_at)  # R: datetime | None
    reveal_type(got.created_at)  # R: datetime | None
    reveal_type((await h.terminate("o1")).terminated)  # R: bool
