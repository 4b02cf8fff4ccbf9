"""The demo's workflow: an "import" of a few batches, with a checkpoint and progress per batch."""

from __future__ import annotations

import msgspec

from durable_effect._effect import Effect, Gen
from durable_effect._jobs import DurableJobs
from durable_effect.errors import ValidationError
from durable_effect.workflow import Step, Workflow

__all__ = ["import_csv", "trigger_import"]

BATCHES = 5


class ImportRequest(msgspec.Struct, frozen=True):
    filename: str
    rows: int


class ImportSummary(msgspec.Struct, frozen=True):
    filename: str
    imported: int


@Effect.gen
def run_import(step: Step, job: ImportRequest) -> Gen[ImportSummary, ValidationError]:
    per_batch = max(job.rows // BATCHES, 1)
    imported = 0
    for batch in range(BATCHES):
        imported += yield from step.run(f"batch-{batch}", Effect.succeed(per_batch))
        yield from step.progress(batch + 1, BATCHES, f"{imported} rows")
        yield from step.sleep(f"pause-{batch}", "1 second")  # durable: no worker held
    return ImportSummary(filename=job.filename, imported=imported)


import_csv = Workflow.make(ImportRequest, run_import, output_schema=ImportSummary)


async def trigger_import(jobs: DurableJobs) -> None:
    """Start one import run (at most one pending at a time, by concurrency key)."""
    request = ImportRequest(filename="users.csv", rows=500)
    handle = jobs.client.workflow(import_csv)
    await Effect.run_async(handle.trigger(request, concurrency_key="imports", coalesce="skip"))
