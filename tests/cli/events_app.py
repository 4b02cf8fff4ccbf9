"""The app of the CLI's event tests: an approval workflow on the SQLite file $DE_TEST_DB."""

from __future__ import annotations

import os

import msgspec

from durable_effect import Effect, Gen, create_durable_jobs
from durable_effect.workflow import Step, Workflow


class Approved(msgspec.Struct, tag=True):
    by: str


class Rejected(msgspec.Struct, tag=True):
    reason: str


@Effect.gen
def approve(step: Step, doc: str) -> Gen[str, Exception]:
    decision = yield from step.wait_for_event("decision", Approved, timeout="1 day")
    return f"{doc}: timed out" if decision is None else f"{doc}: approved by {decision.by}"


APPROVAL = Workflow.make(str, approve, event_schema=Approved | Rejected)

jobs = create_durable_jobs(
    {"approval": APPROVAL}, storage=f"sqlite:///{os.environ.get('DE_TEST_DB', 'events.db')}"
)
