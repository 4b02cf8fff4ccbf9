# Revealed types of workflows: the definition is typed by its input schema and run's output,
# a handle taken by the definition object types every operation, and steps keep the types
# of the effects they checkpoint.
# Nothing here runs: pytest imports this file (doctest collection) and finds only functions.
# mypy: disable-error-code="unused-awaitable, unused-coroutine"
# ruff: noqa: E501
from __future__ import annotations

from typing import ClassVar, Literal, reveal_type

import attrs
import msgspec

from durable_effect import Effect, Gen, RetryExhaustedError, TaggedError
from durable_effect._backoff import Retry
from durable_effect._client._jobs_client import JobsClient
from durable_effect.workflow import Step, TriggerRequest, Workflow


class ImportCsv(msgspec.Struct):
    filename: str


class Summary(msgspec.Struct):
    rows: int


@attrs.frozen(kw_only=True, eq=False)
class HttpError(TaggedError):
    tag: ClassVar[Literal["HttpError"]] = "HttpError"
    status: int


def fetch(name: str) -> Effect[list[str], HttpError]:
    return Effect.succeed([name])


@Effect.gen
def run(step: Step, job: ImportCsv) -> Gen[Summary, HttpError | RetryExhaustedError]:
    rows = yield from step.run("fetch", fetch(job.filename))
    reveal_type(rows)  # R: list[str]
    reveal_type(step.run("fetch", fetch(job.filename)))  # R: Effect[list[str], HttpError]
    reveal_type(step.run("fetch", fetch("x"), timeout="5 s"))  # R: Effect[list[str], HttpError | StepTimeoutError]
    reveal_type(step.run("fetch", fetch("x"), retry=Retry(3)))  # R: Effect[list[str], RetryExhaustedError]
    reveal_type(step.sleep("nap", "1 hour"))  # R: Effect[None, Never]
    reveal_type(step.progress(1, 2, "half"))  # R: Effect[None, Never]
    reveal_type(step.log.info("fetched", rows=len(rows)))  # R: Effect[None, Never]
    reveal_type(step.run_id)  # R: str
    reveal_type(step.attempt)  # R: int
    yield from step.run("retried", fetch("y"), retry=Retry(3))
    return Summary(rows=len(rows))


importer = Workflow.make(ImportCsv, run, output_schema=Summary)
untyped_output = Workflow.make(ImportCsv, run)


class Email(msgspec.Struct, tag=True):
    address: str


class Sms(msgspec.Struct, tag=True):
    number: str


def notify(step: Step, message: Email | Sms) -> Effect[int]:
    return Effect.succeed(1)


notifier = Workflow.make(Email | Sms, notify)


def definitions() -> None:
    reveal_type(importer)  # R: WorkflowDefinition[ImportCsv, Summary, Never, object]
    reveal_type(untyped_output)  # R: WorkflowDefinition[ImportCsv, Summary, Never, object]
    reveal_type(notifier)  # R: WorkflowDefinition[Email | Sms, int, Never, object]


def handles(client: JobsClient) -> None:
    h = client.workflow(importer)
    reveal_type(h)  # R: WorkflowHandle[ImportCsv, Summary, Never, object]
    reveal_type(h.trigger(ImportCsv(filename="a.csv"), idempotency_key="k"))  # R: Effect[TriggerResult, ConflictError | JobNotFoundError | ValidationError | StorageError]
    reveal_type(h.batch_trigger([ImportCsv(filename="a"), TriggerRequest(input=ImportCsv(filename="b"))]))  # R: Effect[list[TriggerResult], ConflictError | JobNotFoundError | ValidationError | StorageError]
    reveal_type(h.trigger_and_wait(ImportCsv(filename="a.csv")))  # R: Effect[Summary, RunFailedError | RunTimeoutError | RunCancelledError | RetryExhaustedError | StepTimeoutError | NonDeterminismError | ConflictError | InstanceNotFoundError | TimeoutException | JobNotFoundError | ValidationError | StorageError]
    reveal_type(h.get_run("r"))  # R: Effect[Run[ImportCsv, Summary], InstanceNotFoundError | JobNotFoundError | ValidationError | StorageError]
    reveal_type(h.list_runs(status="failed", labels={"org": "a"}))  # R: Effect[RunPage[ImportCsv, Summary], JobNotFoundError | ValidationError | StorageError]
    reveal_type(h.steps("r"))  # R: Effect[list[StepRecord], InstanceNotFoundError | JobNotFoundError | ValidationError | StorageError]
    reveal_type(h.wait("r", timeout="1 minute"))  # R: Effect[Run[ImportCsv, Summary], InstanceNotFoundError | TimeoutException | JobNotFoundError | ValidationError | StorageError]
    reveal_type(h.cancel("r"))  # R: Effect[None, InstanceNotFoundError | InvalidStateError | JobNotFoundError | ValidationError | StorageError]
    reveal_type(h.retrigger("r"))  # R: Effect[TriggerResult, InstanceNotFoundError | InvalidStateError | ConflictError | JobNotFoundError | ValidationError | StorageError]
    reveal_type(h.delete_run("r"))  # R: Effect[None, InstanceNotFoundError | InvalidStateError | JobNotFoundError | ValidationError | StorageError]
    reveal_type(client.workflow("importCsv"))  # R: WorkflowHandle[object, object, TaggedError, object]


async def results(client: JobsClient) -> None:
    h = client.workflow(importer)
    triggered = await h.trigger(ImportCsv(filename="a.csv"))
    reveal_type(triggered.run_id)  # R: str
    reveal_type(triggered.disposition)  # R: Literal['created'] | Literal['idempotent'] | Literal['coalesced']
    run_ = await h.get_run(triggered.run_id)
    reveal_type(run_.input)  # R: ImportCsv
    reveal_type(run_.output)  # R: Summary | None
    reveal_type(run_.status)  # R: Literal['pending'] | Literal['leased'] | Literal['sleeping'] | Literal['completed'] | Literal['failed'] | Literal['cancelled']
    reveal_type(run_.error)  # R: str | None
    reveal_type(run_.progress)  # R: Progress | None
    reveal_type(run_.labels)  # R: dict[str, str]
    reveal_type((await h.steps(run_.id))[0].output)  # R: object
    reveal_type(await h.trigger_and_wait(ImportCsv(filename="b")))  # R: Summary


def positional_request() -> None:
    reveal_type(TriggerRequest(ImportCsv(filename="a"), labels={"org": "o1"}))  # R: TriggerRequest[ImportCsv]
