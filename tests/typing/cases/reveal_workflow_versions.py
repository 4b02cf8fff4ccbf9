# Revealed types of step.patched, fork, resume, run_workflow and start_workflow (issue 16).
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


@Effect.gen
def ship(step: Step, order: Order) -> Gen[int, Exception]:
    reveal_type(step.patched("add-audit"))  # R: Effect[bool, Never]
    if (yield from step.patched("add-audit")):
        yield from step.run("audit", Effect.succeed(1))
    return order.qty


wf = Workflow.make(Order, ship)


def client_calls(client: JobsClient) -> None:
    h = client.workflow(wf)
    reveal_type(h.fork("r"))  # R: Effect[TriggerResult, InstanceNotFoundError | InvalidStateError | ConflictError | JobNotFoundError | ValidationError | StorageError]
    reveal_type(h.fork("r", from_step="audit"))  # R: Effect[TriggerResult, InstanceNotFoundError | InvalidStateError | ConflictError | JobNotFoundError | ValidationError | StorageError]
    reveal_type(h.resume("r"))  # R: Effect[Run[Order, int], InstanceNotFoundError | InvalidStateError | JobNotFoundError | ValidationError | StorageError]


@Effect.gen
def parent(step: Step, order: Order) -> Gen[int, Exception]:
    reveal_type(step.run_workflow("kid", wf, Order(qty=1)))  # R: Effect[int, RunFailedError | RunTimeoutError | RunCancelledError | RetryExhaustedError | StepTimeoutError | NonDeterminismError | ValidationError]
    reveal_type(step.run_workflow("kid", "ship", {"qty": 1}))  # R: Effect[object, TaggedError]
    reveal_type(step.start_workflow("kid", wf, Order(qty=1)))  # R: Effect[str, ValidationError]
    return (yield from step.run_workflow("kid", wf, order))
