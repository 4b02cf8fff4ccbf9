# Query misuse mypy must reject: each `# E: <code>` line must be reported with that error
# code, and no other line may be.
# Nothing here runs: pytest imports this file (doctest collection) and finds only functions.
from __future__ import annotations

import msgspec

from durable_effect import Effect
from durable_effect._client._jobs_client import JobsClient
from durable_effect.workflow import Step, Workflow


class ImportCsv(msgspec.Struct):
    filename: str


def run(step: Step, job: ImportCsv) -> Effect[int]:
    return Effect.succeed(len(job.filename))


importer = Workflow.make(ImportCsv, run)


async def queries(client: JobsClient) -> None:
    h = client.workflow(importer)
    # statuses are the run statuses; labels are str to str; cursors are strings
    a = h.list_runs(status="done")  # E: arg-type
    b = h.list_runs(labels={"org": 1})  # E: dict-item
    c = h.list_runs(after=3)  # E: arg-type
    d = h.count_runs(status=["pending", "finished"])  # E: list-item
    # a page is a list of this workflow's runs: its items are not strings
    page = await h.list_runs()
    e: list[str] = page  # E: assignment
    # the cursor may be None (the last page)
    f: str = page.next_cursor  # E: assignment
    g = client.instances(limit="10")  # E: arg-type
    i = (await client.instances())[0].id + 1  # E: operator
