# Typed-failure misuse mypy must reject: each `# E: <code>` line must be reported with that
# error code, and no other line may be.
# Nothing here runs: pytest imports this file (doctest collection) and finds only functions.
from __future__ import annotations

from typing import ClassVar, Literal

import attrs
import msgspec

from durable_effect import Effect, RunFailedError, TaggedError
from durable_effect._client._jobs_client import JobsClient
from durable_effect.workflow import Step, Workflow


class Order(msgspec.Struct):
    qty: int


@attrs.frozen(kw_only=True, eq=False)
class Declined(TaggedError):
    tag: ClassVar[Literal["Declined"]] = "Declined"
    reason: str


def charge(step: Step, order: Order) -> Effect[int, Declined]:
    return Effect.succeed(order.qty)


wf = Workflow.make(Order, charge, error_schema=Declined)


def make() -> None:
    # error_schema takes TaggedError classes only
    a = Workflow.make(Order, charge, error_schema=int)  # E: type-var
    b = Workflow.make(Order, charge, run_timeout=object())  # E: call-overload


def only_declined(error: Declined) -> Effect[int]:
    return Effect.succeed(0)


def only_declared(error: Declined | RunFailedError) -> Effect[int]:
    return Effect.succeed(0)


def handles(client: JobsClient) -> None:
    h = client.workflow(wf)
    # a run also fails with the library's run errors (timeouts, cancels, RunFailedError…):
    # a handler of the declared class alone cannot take them all
    c = h.wait_output("r").catch_all(only_declined)  # E: arg-type
    d = h.trigger_and_wait(Order(qty=1)).catch_all(only_declared)  # E: arg-type
    e: Effect[int, Declined] = h.wait_output("r")  # E: assignment
    # the output is the workflow's output type
    f: Effect[str, BaseException] = h.wait_output("r")  # E: assignment
