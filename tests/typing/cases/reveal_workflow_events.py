# Revealed types of events: wait_for_event is typed by its schema (Optional with a timeout,
# object without a schema), event_schema types the handle's V (one class; a union is object),
# and send / pending_events follow it.
# Nothing here runs: pytest imports this file (doctest collection) and finds only functions.
# mypy: disable-error-code="unused-awaitable, unused-coroutine"
# ruff: noqa: E501
from __future__ import annotations

from typing import reveal_type

import msgspec

from durable_effect import Effect, Gen
from durable_effect._client._jobs_client import JobsClient
from durable_effect.workflow import Step, Workflow


class Order(msgspec.Struct):
    qty: int


class Approved(msgspec.Struct, tag=True):
    by: str


class Rejected(msgspec.Struct, tag=True):
    reason: str


@Effect.gen
def approval(step: Step, order: Order) -> Gen[str, Exception]:
    reveal_type(step.wait_for_event("decision", Approved))  # R: Effect[Approved, Never]
    reveal_type(step.wait_for_event("decision", Approved, timeout="1 day"))  # R: Effect[Approved | None, Never]
    reveal_type(step.wait_for_event("any"))  # R: Effect[object, Never]
    reveal_type(step.wait_for_event("any", timeout="1 hour"))  # R: Effect[object | None, Never]
    got = yield from step.wait_for_event("decision", Approved, timeout="1 day")
    reveal_type(got)  # R: Approved | None
    return "ok" if got is None else got.by


one = Workflow.make(Order, approval, event_schema=Approved)
union = Workflow.make(Order, approval, event_schema=Approved | Rejected)


def definitions() -> None:
    reveal_type(one)  # R: WorkflowDefinition[Order, str, Never, Approved]
    reveal_type(union)  # R: WorkflowDefinition[Order, str, Exception, object]


async def handles(client: JobsClient) -> None:
    h = client.workflow(one)
    reveal_type(h.send("r", Approved(by="a"), event_id="e1"))  # R: Effect[SendResult, InstanceNotFoundError | InvalidStateError | JobNotFoundError | ValidationError | StorageError]
    sent = await h.send("r", Approved(by="a"))
    reveal_type(sent.accepted)  # R: bool
    reveal_type(sent.duplicate)  # R: bool
    pending = await h.pending_events("r")
    reveal_type(pending.events[0].event)  # R: Approved
    reveal_type(pending.waiting)  # R: EventWait | None
    u = client.workflow(union)
    reveal_type(u.send("r", Rejected(reason="no")))  # R: Effect[SendResult, InstanceNotFoundError | InvalidStateError | JobNotFoundError | ValidationError | StorageError]
    reveal_type((await u.pending_events("r")).events[0].event)  # R: object
