# Revealed types of typed failures and deadlines: error_schema types the handle's E (one
# class as itself; a union written ``A | B`` by the errors run declares), wait_output and
# trigger_and_wait fail with E or a library run error, and [I, O] annotations keep working.
# Nothing here runs: pytest imports this file (doctest collection) and finds only functions.
# mypy: disable-error-code="unused-awaitable, unused-coroutine"
# ruff: noqa: E501
from __future__ import annotations

from typing import ClassVar, Literal, reveal_type

import attrs
import msgspec

from durable_effect import Effect, Gen, RetryExhaustedError, TaggedError, WorkflowHandle
from durable_effect._client._jobs_client import JobsClient
from durable_effect.workflow import Step, Workflow


class Order(msgspec.Struct):
    qty: int


@attrs.frozen(kw_only=True, eq=False)
class Declined(TaggedError):
    tag: ClassVar[Literal["Declined"]] = "Declined"
    reason: str


@attrs.frozen(kw_only=True, eq=False)
class OutOfStock(TaggedError):
    tag: ClassVar[Literal["OutOfStock"]] = "OutOfStock"
    sku: str


@Effect.gen
def charge(step: Step, order: Order) -> Gen[int, Declined | OutOfStock | RetryExhaustedError]:
    return (yield from Effect.succeed(order.qty))


one = Workflow.make(Order, charge, error_schema=Declined, run_timeout="1 hour")
union = Workflow.make(Order, charge, error_schema=Declined | OutOfStock)
none = Workflow.make(Order, charge, output_schema=int)


def definitions() -> None:
    reveal_type(one)  # R: WorkflowDefinition[Order, int, Declined, object]
    reveal_type(union)  # R: WorkflowDefinition[Order, int, Declined | OutOfStock | RetryExhaustedError, object]
    reveal_type(none)  # R: WorkflowDefinition[Order, int, Never, object]


def handles(client: JobsClient) -> None:
    h = client.workflow(one)
    reveal_type(h)  # R: WorkflowHandle[Order, int, Declined, object]
    reveal_type(h.wait_output("r"))  # R: Effect[int, Declined | RunFailedError | RunTimeoutError | RunCancelledError | RetryExhaustedError | StepTimeoutError | NonDeterminismError | InstanceNotFoundError | TimeoutException | JobNotFoundError | ValidationError | StorageError]
    reveal_type(h.trigger_and_wait(Order(qty=1), run_timeout="5 minutes"))  # R: Effect[int, Declined | RunFailedError | RunTimeoutError | RunCancelledError | RetryExhaustedError | StepTimeoutError | NonDeterminismError | ConflictError | InstanceNotFoundError | TimeoutException | JobNotFoundError | ValidationError | StorageError]
    reveal_type(h.trigger(Order(qty=1), run_timeout="5 minutes"))  # R: Effect[TriggerResult, ConflictError | JobNotFoundError | ValidationError | StorageError]
    reveal_type(client.workflow(union).wait_output("r"))  # R: Effect[int, Declined | OutOfStock | RetryExhaustedError | RunFailedError | RunTimeoutError | RunCancelledError | StepTimeoutError | NonDeterminismError | InstanceNotFoundError | TimeoutException | JobNotFoundError | ValidationError | StorageError]
    recovered = h.wait_output("r").catch_tag(Declined)(lambda e: Effect.succeed(e.reason))
    reveal_type(recovered)  # R: Effect[int | str, Declined | RunFailedError | RunTimeoutError | RunCancelledError | RetryExhaustedError | StepTimeoutError | NonDeterminismError | InstanceNotFoundError | TimeoutException | JobNotFoundError | ValidationError | StorageError]


def annotated(client: JobsClient) -> None:
    # E defaults to Never: two-parameter annotations keep working
    plain: WorkflowHandle[Order, int] = client.workflow(none)
    reveal_type(plain)  # R: WorkflowHandle[Order, int, Never, object]
    typed: WorkflowHandle[Order, int, Declined] = client.workflow(one)
    reveal_type(typed.wait_output("r"))  # R: Effect[int, Declined | RunFailedError | RunTimeoutError | RunCancelledError | RetryExhaustedError | StepTimeoutError | NonDeterminismError | InstanceNotFoundError | TimeoutException | JobNotFoundError | ValidationError | StorageError]


async def errors(client: JobsClient) -> None:
    h = client.workflow(one)
    failed = await h.wait_output("r").either()
    reveal_type(failed)  # R: Ok[int] | Err[Declined | RunFailedError | RunTimeoutError | RunCancelledError | RetryExhaustedError | StepTimeoutError | NonDeterminismError | InstanceNotFoundError | TimeoutException | JobNotFoundError | ValidationError | StorageError]
    exhausted = RetryExhaustedError(attempts=1, last_error="x")
    reveal_type(exhausted.last_error)  # R: BaseException | str
