# Workflow misuse mypy must reject: each `# E: <code>` line must be reported with that error
# code, and no other line may be.
# Nothing here runs: pytest imports this file (doctest collection) and finds only functions.
from __future__ import annotations

from typing import ClassVar, Literal

import attrs
import msgspec

from durable_effect import Effect, Gen, TaggedError
from durable_effect._client._jobs_client import JobsClient
from durable_effect.workflow import Step, Workflow


class ImportCsv(msgspec.Struct):
    filename: str


class Summary(msgspec.Struct):
    rows: int


@attrs.frozen(kw_only=True, eq=False)
class HttpError(TaggedError):
    tag: ClassVar[Literal["HttpError"]] = "HttpError"


def fetch() -> Effect[int, HttpError]:
    return Effect.succeed(1)


@Effect.gen
def run(step: Step, job: ImportCsv) -> Gen[Summary, HttpError]:
    rows = yield from step.run("fetch", fetch())
    return Summary(rows=rows)


importer = Workflow.make(ImportCsv, run)


def handles(client: JobsClient) -> None:
    h = client.workflow(importer)
    # The input must be of the workflow's input schema; run ids are strings.
    t1 = h.trigger(Summary(rows=1))  # E: arg-type
    t2 = h.trigger(ImportCsv(filename="a"), coalesce="always")  # E: arg-type
    g = h.get_run(42)  # E: arg-type
    # get_run is an Effect: the run's fields come only after running it.
    h.get_run("r").status  # E: attr-defined


def not_a_step(ctx: str, job: ImportCsv) -> Effect[Summary]:
    return Effect.succeed(Summary(rows=0))


def definitions() -> None:
    # run takes a Step (and the input: with a union input schema such as ``A | B`` the
    # input type is taken from run's annotation, so it is not checked against the schema)
    a = Workflow.make(ImportCsv, not_a_step)  # E: arg-type


@Effect.gen
def undeclared(step: Step, job: ImportCsv) -> Gen[int, Exception]:
    # the step's value has the effect's type
    text: str = yield from step.run("fetch", fetch())  # E: assignment
    return len(text)


@Effect.gen
def step_errors_must_be_declared(step: Step, job: ImportCsv) -> Gen[int, HttpError]:
    # a step with a timeout can also fail with StepTimeoutError
    return (yield from step.run("fetch", fetch(), timeout="1 s"))  # E: misc
