# Event misuse mypy must reject: each `# E: <code>` line must be reported with that error
# code, and no other line may be.
# Nothing here runs: pytest imports this file (doctest collection) and finds only functions.
from __future__ import annotations

import msgspec

from durable_effect import Effect, Gen
from durable_effect._client._jobs_client import JobsClient
from durable_effect.workflow import Step, Workflow


class Order(msgspec.Struct):
    qty: int


class Approved(msgspec.Struct):
    by: str


class Rejected(msgspec.Struct):
    reason: str


@Effect.gen
def approval(step: Step, order: Order) -> Gen[str, Exception]:
    # with a timeout the event may be None
    got: Approved = yield from step.wait_for_event("d", Approved, timeout="1 day")  # E: assignment
    # the value has the schema's type
    name: int = yield from step.wait_for_event("d", Approved)  # E: assignment
    # without a schema the event is an object
    text: str = yield from step.wait_for_event("any")  # E: assignment
    # the schema is a class
    bad = yield from step.wait_for_event("d", "Approved")  # E: call-overload
    return got.by + text


wf = Workflow.make(Order, approval, event_schema=Approved)


def handles(client: JobsClient) -> None:
    h = client.workflow(wf)
    # send takes the workflow's event type
    a = h.send("r", Rejected(reason="no"))  # E: arg-type
    b = h.send("r", Approved(by="a"), event_id=3)  # E: arg-type
    c = h.send(42, Approved(by="a"))  # E: arg-type
