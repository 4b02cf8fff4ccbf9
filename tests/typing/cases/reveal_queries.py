# Revealed types of the queries: list_runs gives a RunPage typed by the workflow (a list of
# its runs, so list code keeps checking), count_runs a count per status, and
# client.instances an InstancePage of InstanceInfo.
# Nothing here runs: pytest imports this file (doctest collection) and finds only functions.
# mypy: disable-error-code="unused-awaitable, unused-coroutine"
# ruff: noqa: E501
from __future__ import annotations

from typing import reveal_type

import msgspec

from durable_effect import Effect, InstanceInfo, InstancePage, Run, RunPage
from durable_effect._client._jobs_client import JobsClient
from durable_effect.workflow import Step, Workflow


class ImportCsv(msgspec.Struct):
    filename: str


def run(step: Step, job: ImportCsv) -> Effect[int]:
    return Effect.succeed(len(job.filename))


importer = Workflow.make(ImportCsv, run)


async def queries(client: JobsClient) -> None:
    h = client.workflow(importer)
    reveal_type(h.list_runs())  # R: Effect[RunPage[ImportCsv, int], JobNotFoundError | ValidationError | StorageError]
    reveal_type(h.list_runs(status=["failed", "cancelled"], labels={"org": "a"}, limit=10, after="c"))  # R: Effect[RunPage[ImportCsv, int], JobNotFoundError | ValidationError | StorageError]
    page = await h.list_runs()
    reveal_type(page)  # R: RunPage[ImportCsv, int]
    reveal_type(page.next_cursor)  # R: str | None
    reveal_type(page[0])  # R: Run[ImportCsv, int]
    as_list: list[Run[ImportCsv, int]] = page
    reveal_type(as_list[0].input)  # R: ImportCsv
    reveal_type(h.count_runs(status="pending"))  # R: Effect[dict[Literal['pending', 'leased', 'sleeping', 'completed', 'failed', 'cancelled'], int], JobNotFoundError | ValidationError | StorageError]
    reveal_type(client.workflow("importCsv").list_runs())  # R: Effect[RunPage[object, object], JobNotFoundError | ValidationError | StorageError]
    reveal_type(client.instances())  # R: Effect[InstancePage, JobNotFoundError | ValidationError | StorageError]
    reveal_type(client.instances("tokenRefresher", status="running", limit=5, after="c"))  # R: Effect[InstancePage, JobNotFoundError | ValidationError | StorageError]
    instances = await client.instances()
    reveal_type(instances.next_cursor)  # R: str | None
    reveal_type(instances[0])  # R: InstanceInfo
    reveal_type(instances[0].next_alarm_at)  # R: datetime | None
    info: InstanceInfo = instances[0]
    reveal_type(info.created_at)  # R: datetime
    pages: list[InstancePage | RunPage[ImportCsv, int]] = [instances, page]
    reveal_type(pages)  # R: list[InstancePage | RunPage[ImportCsv, int]]
