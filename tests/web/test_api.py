"""The JSON routes of ``durable_effect.web`` through an ASGI client, on SQLite and PostgreSQL.

Time is a ``TestClock`` (``TestRuntime``); runs execute when the test says so
(``run_until_idle``/``advance``). Every body is checked as a client of the API sees it.
"""

from __future__ import annotations

from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from durable_effect import Effect
from durable_effect.testing import TestRuntime
from durable_effect.web import create_app
from tests.conftest_pg import pg_server, pg_store  # noqa: F401
from tests.jobs.conftest import POSTGRES, postgres_job_stores, storage_for  # noqa: F401
from tests.web._support import client
from tests.web.sample_app import DEFINITIONS, ImportRequest

pytestmark = pytest.mark.parametrize("kind", ["sqlite", POSTGRES])

STATUSES = {"pending", "leased", "sleeping", "completed", "failed", "cancelled"}


@pytest.fixture
async def rt(kind: str, tmp_path: Path) -> AsyncIterator[TestRuntime]:
    async with TestRuntime(DEFINITIONS, storage=storage_for(kind, tmp_path, "web.db")) as rt:
        yield rt


@pytest.fixture
async def http(rt: TestRuntime) -> AsyncIterator[httpx.AsyncClient]:
    async with client(create_app(rt.jobs)) as c:
        yield c


async def trigger(http: httpx.AsyncClient, body: object, wf: str = "imports") -> httpx.Response:
    return await http.post(f"/api/workflows/{wf}/runs", json=body)


# -- workflows and runs ------------------------------------------------------------------------


async def test_workflows_list_every_status_count(http: httpx.AsyncClient, rt: TestRuntime) -> None:
    empty = (await http.get("/api/workflows")).json()
    assert empty == {
        "workflows": [
            {"name": "imports", "counts": dict.fromkeys(sorted(STATUSES), 0)},
            {"name": "waits", "counts": dict.fromkeys(sorted(STATUSES), 0)},
            {"name": "approvals", "counts": dict.fromkeys(sorted(STATUSES), 0)},
        ]
    }
    await trigger(http, {"input": {"filename": "a.csv", "rows": 8}})
    await trigger(http, {"input": "note"}, wf="waits")
    await rt.run_until_idle()
    counts = {
        w["name"]: w["counts"] for w in (await http.get("/api/workflows")).json()["workflows"]
    }
    assert counts["imports"]["sleeping"] == 1
    assert counts["waits"]["sleeping"] == 1
    assert sum(counts["imports"].values()) == 1


async def test_trigger_creates_then_is_idempotent(http: httpx.AsyncClient) -> None:
    body = {
        "input": {"filename": "a.csv", "rows": 8},
        "idempotency_key": "k1",
        "labels": {"tenant": "acme"},
    }
    created = await trigger(http, body)
    assert created.status_code == 201
    assert created.headers["content-type"] == "application/json"
    run_id = created.json()["run_id"]
    assert created.json() == {"run_id": run_id, "disposition": "created"}
    again = await trigger(http, body)
    assert again.status_code == 200
    assert again.json() == {"run_id": run_id, "disposition": "idempotent"}
    run = (await http.get(f"/api/workflows/imports/runs/{run_id}")).json()
    assert run["id"] == run_id
    assert run["status"] == "pending"
    assert run["input"] == {"filename": "a.csv", "rows": 8}
    assert run["labels"] == {"tenant": "acme"}
    assert run["idempotency_key"] == "k1"
    assert run["created_at"].endswith("Z")
    assert "T" in run["created_at"]
    assert {"workflow", "attempt", "started_at", "completed_at", "current_step"} <= set(run)


async def test_bad_input_is_422_naming_the_field_and_writes_nothing(
    http: httpx.AsyncClient,
) -> None:
    wrong = await trigger(http, {"input": {"filename": "a.csv", "rows": "many"}})
    assert wrong.status_code == 422
    assert wrong.json()["error"] == "ValidationError"
    assert wrong.json()["path"] == "$.input.rows"
    assert "int" in wrong.json()["message"]
    cases = [
        ({"inptu": {}}, "$.inptu"),
        ({}, "$.input"),
        ({"input": {"filename": "a", "rows": 1}, "labels": {"k": 1}}, "$.labels"),
        ({"input": {"filename": "a", "rows": 1}, "idempotency_key": 5}, "$.idempotency_key"),
        ([1, 2], "$"),
    ]
    for body, path in cases:
        response = await trigger(http, body)
        assert response.status_code == 422, body
        assert response.json()["path"] == path, body
    not_json = await http.post(
        "/api/workflows/imports/runs",
        content=b"{oops",
        headers={"content-type": "application/json"},
    )
    assert not_json.status_code == 422
    assert not_json.json()["error"] == "ValidationError"
    runs = (await http.get("/api/workflows/imports/runs")).json()
    assert runs == {"runs": [], "next_cursor": None}


async def test_too_large_a_body_is_413(http: httpx.AsyncClient) -> None:
    big = b'{"input": "' + b"x" * (1024 * 1024) + b'"}'
    response = await http.post(
        "/api/workflows/waits/runs", content=big, headers={"content-type": "application/json"}
    )
    assert response.status_code == 413
    assert response.json()["error"] == "PayloadTooLarge"


async def test_unknown_workflow_and_run_are_404(http: httpx.AsyncClient) -> None:
    for path in ("/api/workflows/nope/runs", "/api/workflows/heartbeat/runs"):
        missing = await http.get(path)
        assert missing.status_code == 404
        assert missing.json()["error"] == "JobNotFoundError"
    assert (await trigger(http, {"input": None}, wf="nope")).status_code == 404
    for suffix in ("", "/steps", "/logs"):
        response = await http.get(f"/api/workflows/imports/runs/0000-nope{suffix}")
        assert response.status_code == 404, suffix
        assert response.json()["error"] == "InstanceNotFoundError"
    assert (await http.get("/api/no/such/route")).status_code == 404


async def test_runs_filter_by_status_and_label_and_page_by_cursor(
    http: httpx.AsyncClient, rt: TestRuntime
) -> None:
    ids = []
    for n in range(5):
        body = {"input": f"n{n}", "labels": {"parity": "even" if n % 2 == 0 else "odd"}}
        ids.append((await trigger(http, body, wf="waits")).json()["run_id"])
    await rt.run_until_idle()
    await http.post(f"/api/workflows/waits/runs/{ids[0]}/cancel", json={})
    listed = (await http.get("/api/workflows/waits/runs")).json()
    assert [r["id"] for r in listed["runs"]] == ids[::-1]  # newest first
    assert listed["next_cursor"] is None
    sleeping = (await http.get("/api/workflows/waits/runs", params={"status": "sleeping"})).json()
    assert [r["id"] for r in sleeping["runs"]] == ids[:0:-1]
    both = await http.get(
        "/api/workflows/waits/runs", params=[("status", "sleeping"), ("status", "cancelled")]
    )
    assert len(both.json()["runs"]) == 5
    even = await http.get(
        "/api/workflows/waits/runs", params=[("label", "parity:even"), ("status", "sleeping")]
    )
    assert [r["id"] for r in even.json()["runs"]] == [ids[4], ids[2]]
    seen: list[str] = []
    cursor = None
    for _ in range(5):
        params: dict[str, str | int] = {"limit": 2}
        if cursor is not None:
            params["after"] = cursor
        page = (await http.get("/api/workflows/waits/runs", params=params)).json()
        seen += [r["id"] for r in page["runs"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert seen == ids[::-1]
    for params2 in (
        {"status": "done"},
        {"limit": "0"},
        {"limit": "x"},
        {"label": "nocolon"},
        {"after": "not-a-cursor"},
    ):
        bad = await http.get("/api/workflows/waits/runs", params=params2)
        assert bad.status_code == 422, params2
        assert bad.json()["error"] == "ValidationError"
        assert bad.json()["path"] == next(iter(params2))


async def test_a_run_its_steps_and_logs(http: httpx.AsyncClient, rt: TestRuntime) -> None:
    run_id = (await trigger(http, {"input": {"filename": "a.csv", "rows": 8}})).json()["run_id"]
    await rt.run_until_idle()
    await rt.advance("1 second")
    run = (await http.get(f"/api/workflows/imports/runs/{run_id}")).json()
    assert run["progress"] == {"current": 2, "total": 4, "message": "4 rows"}
    steps = (await http.get(f"/api/workflows/imports/runs/{run_id}/steps")).json()["steps"]
    assert [(s["name"], s["status"], s["output"]) for s in steps] == [
        ("batch-0", "completed", 2),
        ("pause-0", "completed", None),
        ("batch-1", "completed", 2),
    ]
    assert all(s["started_at"].endswith("Z") for s in steps)
    logs = (await http.get(f"/api/workflows/imports/runs/{run_id}/logs")).json()["logs"]
    assert [(x["level"], x["message"], x["data"]) for x in logs] == [
        ("info", "batch 0 imported", {"rows": 2}),
        ("info", "batch 1 imported", {"rows": 2}),
    ]
    for _ in range(3):
        await rt.advance("1 second")
    done = (await http.get(f"/api/workflows/imports/runs/{run_id}")).json()
    assert done["status"] == "completed"
    assert done["output"] == {"filename": "a.csv", "imported": 8}


async def test_cancel_retrigger_delete(http: httpx.AsyncClient, rt: TestRuntime) -> None:
    run_id = (await trigger(http, {"input": "x"}, wf="waits")).json()["run_id"]
    await rt.run_until_idle()
    path = f"/api/workflows/waits/runs/{run_id}"
    assert (await http.post(f"{path}/retrigger", json={})).status_code == 409
    assert (await http.delete(path)).json()["error"] == "InvalidStateError"
    cancelled = await http.post(f"{path}/cancel", json={})
    assert cancelled.status_code == 200
    assert cancelled.json() == {"run_id": run_id, "cancelled": True}
    assert (await http.get(path)).json()["status"] == "cancelled"
    again = await http.post(f"{path}/cancel", json={})
    assert again.status_code == 409
    assert again.json()["error"] == "InvalidStateError"
    retriggered = await http.post(f"{path}/retrigger", json={})
    assert retriggered.status_code == 200
    new_id = retriggered.json()["run_id"]
    assert new_id != run_id
    assert retriggered.json()["disposition"] == "created"
    assert (await http.get(f"/api/workflows/waits/runs/{new_id}")).json()["input"] == "x"
    deleted = await http.delete(path)
    assert deleted.status_code == 204
    assert deleted.content == b""
    assert (await http.get(path)).status_code == 404
    assert (await http.post(f"{path}/cancel", json={})).status_code == 404


async def test_resume_a_cancelled_run_and_fork_a_completed_one(
    http: httpx.AsyncClient, rt: TestRuntime
) -> None:
    run_id = (await trigger(http, {"input": "x"}, wf="waits")).json()["run_id"]
    await rt.run_until_idle()
    path = f"/api/workflows/waits/runs/{run_id}"
    sleeping = await http.post(f"{path}/resume", json={})
    assert sleeping.status_code == 409
    assert sleeping.json()["error"] == "InvalidStateError"
    assert (await http.post(f"{path}/fork", json={})).status_code == 409
    await http.post(f"{path}/cancel", json={})
    resumed = await http.post(f"{path}/resume", json={})
    assert resumed.status_code == 200
    assert (resumed.json()["id"], resumed.json()["status"]) == (run_id, "pending")
    await rt.run_until_idle()
    assert (await http.get(path)).json()["status"] == "sleeping"
    assert (await http.post("/api/workflows/waits/runs/nope/resume", json={})).status_code == 404

    done = (await trigger(http, {"input": {"filename": "a.csv", "rows": 8}})).json()["run_id"]
    await rt.run_until_idle()
    for _ in range(3):
        await rt.advance("1 second")
    imports = f"/api/workflows/imports/runs/{done}"
    assert (await http.get(imports)).json()["status"] == "completed"
    bad = await http.post(f"{imports}/fork", json={"from_step": "no-such-step"})
    assert bad.status_code == 422
    assert bad.json()["path"] == "$.from_step"
    unknown = await http.post(f"{imports}/fork", json={"from": "batch-2"})
    assert (unknown.status_code, unknown.json()["path"]) == (422, "$.from")
    forked = await http.post(f"{imports}/fork", json={"from_step": "batch-2"})
    assert forked.status_code == 201
    assert forked.json()["disposition"] == "created"
    new = (await http.get(f"/api/workflows/imports/runs/{forked.json()['run_id']}")).json()
    assert new["forked_from"] == done
    assert new["status"] == "pending"


async def test_an_event_sent_resumes_a_waiting_run(
    http: httpx.AsyncClient, rt: TestRuntime
) -> None:
    run_id = (await trigger(http, {"input": 120}, wf="approvals")).json()["run_id"]
    path = f"/api/workflows/approvals/runs/{run_id}"
    early = await http.post(f"{path}/events", json={"event": {"type": "Refusal", "reason": "no"}})
    assert early.status_code == 202  # a pending run accepts events: queued for its wait
    early_pending = (await http.get(f"{path}/events")).json()
    assert early_pending["waiting"] is None
    assert [e["event"] for e in early_pending["events"]] == [{"type": "Refusal", "reason": "no"}]
    await rt.run_until_idle()  # the wait takes the queued event at once
    assert (await http.get(path)).json()["output"] == "refused: no"

    run_id = (await trigger(http, {"input": 80}, wf="approvals")).json()["run_id"]
    path = f"/api/workflows/approvals/runs/{run_id}"
    await rt.run_until_idle()
    assert (await http.get(path)).json()["status"] == "sleeping"
    waiting = (await http.get(f"{path}/events")).json()
    assert waiting["run_id"] == run_id
    assert waiting["events"] == []
    assert waiting["waiting"]["step"] == "decision"
    assert waiting["waiting"]["since"].endswith("Z")
    assert waiting["waiting"]["until"].endswith("Z")  # the one-day timeout
    body = {"event": {"type": "Approval", "by": "ann"}, "event_id": "ticket-81"}
    sent = await http.post(f"{path}/events", json=body)
    assert sent.status_code == 202
    assert sent.json() == {"run_id": run_id, "accepted": True, "duplicate": False}
    again = await http.post(f"{path}/events", json=body)
    assert again.status_code == 200
    assert again.json() == {"run_id": run_id, "accepted": False, "duplicate": True}
    queued = (await http.get(f"{path}/events")).json()["events"]
    assert [(e["event"], e["event_id"]) for e in queued] == [
        ({"type": "Approval", "by": "ann"}, "ticket-81")
    ]
    assert queued[0]["sent_at"].endswith("Z")
    await rt.run_until_idle()  # the send woke the run: no clock advanced
    done = (await http.get(path)).json()
    assert (done["status"], done["output"]) == ("completed", "approved by ann")
    after = (await http.get(f"{path}/events")).json()
    assert (after["waiting"], after["events"]) == (None, [])
    late = await http.post(f"{path}/events", json={"event": {"type": "Approval", "by": "bob"}})
    assert late.status_code == 409
    assert late.json()["error"] == "InvalidStateError"


async def test_a_bad_event_is_422_naming_the_field_and_queues_nothing(
    http: httpx.AsyncClient, rt: TestRuntime
) -> None:
    run_id = (await trigger(http, {"input": 5}, wf="approvals")).json()["run_id"]
    await rt.run_until_idle()
    path = f"/api/workflows/approvals/runs/{run_id}"
    cases = [
        ({}, "$.event"),
        ({"event": {"type": "Approval", "by": 7}}, "$.event.by"),
        ({"event": {"type": "Maybe"}}, "$.event.type"),
        ({"event": {"type": "Approval", "by": "ann"}, "event_id": 3}, "$.event_id"),
        ({"event": {"type": "Approval", "by": "ann"}, "event_id": ""}, "$.event_id"),
        ({"event": {"type": "Approval", "by": "ann"}, "evnet_id": "x"}, "$.evnet_id"),
        ([{"type": "Approval", "by": "ann"}], "$"),
    ]
    for body, field in cases:
        response = await http.post(f"{path}/events", json=body)
        assert response.status_code == 422, body
        assert response.json()["error"] == "ValidationError", body
        assert response.json()["path"] == field, (body, response.json())
    too_big = {"event": {"type": "Approval", "by": "x" * (1024 * 1024)}}
    assert (await http.post(f"{path}/events", json=too_big)).status_code == 413
    assert (await http.get(f"{path}/events")).json()["events"] == []
    await rt.run_until_idle()
    assert (await http.get(path)).json()["status"] == "sleeping"


async def test_events_of_an_unknown_run_or_workflow_are_404(http: httpx.AsyncClient) -> None:
    event = {"event": {"type": "Approval", "by": "ann"}}
    for wf, run_id in (("approvals", "nope"), ("nope", "nope")):
        path = f"/api/workflows/{wf}/runs/{run_id}/events"
        sent = await http.post(path, json=event)
        assert sent.status_code == 404, wf
        assert sent.json()["error"] in ("InstanceNotFoundError", "JobNotFoundError")
        assert (await http.get(path)).status_code == 404


async def test_a_pending_concurrency_key_is_409(http: httpx.AsyncClient) -> None:
    body = {"input": "a", "concurrency_key": "one-at-a-time"}
    assert (await trigger(http, body, wf="waits")).status_code == 201
    conflict = await trigger(http, body, wf="waits")
    assert conflict.status_code == 409
    assert conflict.json()["error"] == "ConflictError"


# -- jobs and instances ------------------------------------------------------------------------


async def test_jobs_are_listed_with_types_and_schedules(http: httpx.AsyncClient) -> None:
    jobs = (await http.get("/api/jobs")).json()["jobs"]
    by_name = {j["name"]: j for j in jobs}
    assert set(by_name) == {"heartbeat", "reminders", "clicks"}
    assert by_name["heartbeat"]["type"] == "continuous"
    assert by_name["heartbeat"]["schedule"] == "cron 0 3 * * * (UTC)"
    ticks = by_name["heartbeat"]["next_ticks"]
    assert len(ticks) == 3
    assert all(t.endswith("T03:00:00Z") for t in ticks)
    assert by_name["reminders"]["actions"] == ["trigger", "terminate"]
    assert by_name["clicks"]["type"] == "debounce"


async def test_instances_their_state_and_actions(http: httpx.AsyncClient, rt: TestRuntime) -> None:
    client = rt.client
    await Effect.run_async(client.continuous("heartbeat").start(id="main", input={"beats": 0}))
    await Effect.run_async(client.task("reminders").send(id="r1", event={"text": "call"}))
    listed = (await http.get("/api/jobs/heartbeat/instances")).json()
    assert listed["next_cursor"] is None
    (one,) = listed["instances"]
    assert one["id"] == "main"
    assert one["status"] == "running"
    assert one["job_type"] == "continuous"
    assert one["next_alarm_at"].endswith("T03:00:00Z")
    got = (await http.get("/api/jobs/heartbeat/instances/main")).json()
    assert got["status"] == "running"
    assert got["state"] == {"beats": 1}  # started immediately: one run
    assert got["run_count"] == 1
    task = (await http.get("/api/jobs/reminders/instances/r1")).json()
    assert task["state"] == {"text": "call"}
    assert task["status"] == "active"
    paused = await http.post("/api/jobs/heartbeat/instances/main/pause", json={})
    assert paused.status_code == 200
    assert paused.json() == {"paused": True, "status": "paused"}
    status = (await http.get("/api/jobs/heartbeat/instances", params={"status": "paused"})).json()
    assert [i["id"] for i in status["instances"]] == ["main"]
    assert (await http.get("/api/jobs/heartbeat/instances", params={"status": "running"})).json()[
        "instances"
    ] == []
    missing = await http.post("/api/jobs/heartbeat/instances/ghost/pause", json={})
    assert missing.status_code == 200
    assert missing.json() == {"paused": False, "status": "not_found"}
    assert (await http.get("/api/jobs/heartbeat/instances/ghost")).status_code == 404
    unsupported = await http.post("/api/jobs/reminders/instances/r1/pause", json={})
    assert unsupported.status_code == 405
    assert unsupported.json()["error"] == "MethodNotAllowed"
    terminated = await http.post("/api/jobs/reminders/instances/r1/terminate", json={})
    assert terminated.json() == {"terminated": True}
    assert (await http.get("/api/jobs/reminders/instances/r1")).status_code == 404
    assert (await http.get("/api/jobs/nope/instances")).status_code == 404
    assert (await http.get("/api/jobs/imports/instances")).status_code == 404


async def test_instances_page_by_cursor(http: httpx.AsyncClient, rt: TestRuntime) -> None:
    for n in range(5):
        await Effect.run_async(rt.client.task("reminders").send(id=f"r{n}", event={"text": "x"}))
    seen: list[str] = []
    cursor = None
    while True:
        params: dict[str, str | int] = {"limit": 2}
        if cursor is not None:
            params["after"] = cursor
        page = (await http.get("/api/jobs/reminders/instances", params=params)).json()
        seen += [i["id"] for i in page["instances"]]
        cursor = page["next_cursor"]
        if cursor is None:
            break
    assert sorted(seen) == [f"r{n}" for n in range(5)]
    assert len(seen) == 5


async def test_a_workflow_input_object_round_trips(rt: TestRuntime) -> None:
    """The trigger body's input is validated into the workflow's schema type."""
    async with client(create_app(rt.jobs)) as http:
        run_id = (await trigger(http, {"input": {"filename": "f", "rows": 4}})).json()["run_id"]
    run = (await Effect.run_async(rt.client.workflow("imports").get_run(run_id))).unwrap()
    assert run.input == ImportRequest(filename="f", rows=4)
