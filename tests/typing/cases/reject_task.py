# Task misuse mypy must reject: each `# E: <code>` line must be reported with that error
# code, and no other line may be.
# Nothing here runs: pytest imports this file (doctest collection) and finds only functions.
from __future__ import annotations

from typing import ClassVar, Literal

import attrs
import msgspec

from durable_effect import Effect, Gen, StorageError, TaggedError, ValidationError
from durable_effect._client._jobs_client import JobsClient
from durable_effect.jobs._task import Task
from durable_effect.jobs._task_context import TaskContext, TaskErrorContext, TaskEventContext


class Order(msgspec.Struct):
    order_id: str


class Invoice(msgspec.Struct):
    total: int


class Placed(msgspec.Struct, tag=True):
    order_id: str


class Paid(msgspec.Struct, tag=True):
    pass


@attrs.frozen(kw_only=True, eq=False)
class Boom(TaggedError):
    tag: ClassVar[Literal["Boom"]] = "Boom"


def on_event(event: Placed | Paid, ctx: TaskEventContext[Order]) -> Effect[None, ValidationError]:
    return ctx.set_state(Order(order_id="o"))


def execute(ctx: TaskContext[Order]) -> Effect[None]:
    return Effect.succeed(None)


job = Task.make(Order, Placed | Paid, on_event, execute)


def on_invoice_event(event: Placed | Paid, ctx: TaskEventContext[Invoice]) -> Effect[None]:
    return Effect.succeed(None)


def counts(ctx: TaskContext[Order]) -> Effect[int]:
    return Effect.succeed(1)


def only_booms(error: Boom, ctx: TaskErrorContext[Order]) -> Effect[None]:
    return Effect.succeed(None)


def handles(client: JobsClient) -> None:
    h = client.task(job)
    # The event must be of the job's event type; ids are strings.
    s1 = h.send(id="o1", event=Order(order_id="o1"))  # E: arg-type
    s2 = h.send(id="o1", event=Placed(order_id=1))  # E: arg-type
    t1 = h.trigger(42)  # E: arg-type
    # status is an Effect: its fields come only after running it.
    h.status("o1").status  # E: attr-defined


def definitions() -> None:
    # The handlers' contexts must be of the state schema's type.
    # (With a union event schema mypy reports against the first overload, whose event schema
    # is a single class: hence a second, spurious error about argument 2.)
    a = Task.make(Order, Placed | Paid, on_invoice_event, execute)  # E: arg-type, arg-type
    a2 = Task.make(Order, Placed, on_invoice_event, execute)  # E: arg-type
    # execute's success type is fixed: None.
    b = Task.make(Order, Placed | Paid, on_event, counts)  # E: arg-type, arg-type
    b2 = Task.make(Order, Placed, on_event, counts)  # E: arg-type
    # on_error gets whatever failed (typed error or defect): it must accept BaseException.
    c = Task.make(Order, Placed, on_event, execute, on_error=only_booms)  # E: arg-type


@Effect.gen
def wrong_state(event: Placed | Paid, ctx: TaskEventContext[Order]) -> Gen[None, ValidationError]:
    yield from ctx.set_state(Invoice(total=1))  # E: arg-type


@Effect.gen
def undeclared(event: Placed | Paid, ctx: TaskEventContext[Order]) -> Gen[None, StorageError]:
    yield from ctx.schedule("5 minutes")  # E: misc


@Effect.gen
def state_may_be_none(ctx: TaskContext[Order]) -> Gen[None, ValidationError]:
    state = yield from ctx.state
    yield from ctx.set_state(Order(order_id=state.order_id))  # E: union-attr


def facts_of_other_handlers(ctx: TaskContext[Order]) -> None:
    print(ctx.is_first_event)  # E: attr-defined


def bad_when(ctx: TaskContext[Order]) -> Effect[None, ValidationError]:
    return ctx.schedule([5, "minutes"])  # E: arg-type
