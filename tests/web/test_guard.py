"""The token guard, cross-site refusals, the audit log, mounting under a prefix, the page."""

from __future__ import annotations

import logging
import re
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest
from starlette.applications import Starlette
from starlette.responses import PlainTextResponse
from starlette.routing import Mount, Route

from durable_effect._jobs import DurableJobs
from durable_effect.web import create_app
from tests.web._support import AsgiStream, client
from tests.web.sample_app import jobs_on

TOKEN = "s3cret-token"


@pytest.fixture
async def jobs(tmp_path: Path) -> AsyncIterator[DurableJobs]:
    async with jobs_on(f"sqlite:///{tmp_path}/guard.db") as jobs:
        yield jobs


async def test_every_route_needs_the_token_when_one_is_set(jobs: DurableJobs) -> None:
    app = create_app(jobs, token=TOKEN)
    async with client(app) as anonymous:
        for path in ("/api/workflows", "/api/jobs", "/api/workflows/imports/runs"):
            response = await anonymous.get(path)
            assert response.status_code == 401, path
            assert response.headers["www-authenticate"] == "Bearer"
            assert response.json()["error"] == "Unauthorized"
        post = await anonymous.post("/api/workflows/waits/runs", json={"input": "x"})
        assert post.status_code == 401
        page = await anonymous.get("/")
        assert page.status_code == 401
        assert 'name="token"' in page.text  # a form asking for it
        stream = await anonymous.get("/api/stream")
        assert stream.status_code == 401
    async with client(app, token="wrong") as wrong:
        assert (await wrong.get("/api/jobs")).status_code == 401
    async with client(app, token=TOKEN) as good:
        assert (await good.get("/api/jobs")).status_code == 200
        created = await good.post("/api/workflows/waits/runs", json={"input": "x"})
        assert created.status_code == 201
    async with client(app) as by_query:
        assert (await by_query.get("/api/jobs", params={"token": TOKEN})).status_code == 200
        assert (await by_query.get("/", params={"token": TOKEN})).status_code == 200
        refused = await by_query.post(
            "/api/workflows/waits/runs", params={"token": TOKEN}, json={"input": "x"}
        )
        assert refused.status_code == 401  # ?token= is for GET routes only
    async with AsgiStream(app, "/api/stream", query=f"token={TOKEN}") as streaming:
        assert streaming.status == 200
    assert not any(r for r in (created.headers.get("set-cookie"),))  # no cookies, ever


def test_an_empty_token_is_refused(jobs: DurableJobs) -> None:
    with pytest.raises(ValueError, match="token"):
        create_app(jobs, token=" ")


async def test_cross_site_writes_are_refused_even_without_a_token(jobs: DurableJobs) -> None:
    async with client(create_app(jobs)) as http:
        form = await http.post(
            "/api/workflows/waits/runs",
            content=b'{"input": "x"}',
            headers={"content-type": "text/plain"},
        )
        assert form.status_code == 415
        other_site = await http.post(
            "/api/workflows/waits/runs",
            json={"input": "x"},
            headers={"origin": "https://evil.example"},
        )
        assert other_site.status_code == 403
        assert other_site.json()["error"] == "CrossOriginRequest"
        same_site = await http.post(
            "/api/workflows/waits/runs",
            json={"input": "x"},
            headers={"origin": "http://testserver"},
        )
        assert same_site.status_code == 201
        runs = (await http.get("/api/workflows/waits/runs")).json()["runs"]
        assert len(runs) == 1  # only the same-site one was written


async def test_mutating_requests_are_audited(
    jobs: DurableJobs, caplog: pytest.LogCaptureFixture
) -> None:
    caplog.set_level(logging.INFO, logger="durable_effect.web.audit")
    async with client(create_app(jobs, token=TOKEN)) as http:
        await http.get("/api/jobs", headers={"authorization": f"Bearer {TOKEN}"})
        await http.post("/api/workflows/waits/runs", json={"input": "x"})
        await http.post(
            "/api/workflows/waits/runs",
            json={"input": "y"},
            headers={"authorization": f"Bearer {TOKEN}"},
        )
        await http.post(
            "/api/workflows/approvals/runs/nope/events",
            json={"event": {"type": "Approval", "by": "ann"}},
            headers={"authorization": f"Bearer {TOKEN}"},
        )
    lines = [r.getMessage() for r in caplog.records if r.name == "durable_effect.web.audit"]
    assert lines == [
        "POST /api/workflows/waits/runs -> 401 (client 127.0.0.1)",
        "POST /api/workflows/waits/runs -> 201 (client 127.0.0.1)",
        "POST /api/workflows/approvals/runs/nope/events -> 404 (client 127.0.0.1)",
    ]
    assert all(TOKEN not in line for line in lines)


async def test_the_app_works_mounted_under_a_prefix(jobs: DurableJobs) -> None:
    async def home(request: object) -> PlainTextResponse:
        return PlainTextResponse("the user's own app")

    outer = Starlette(
        routes=[Route("/", home), Mount("/ops/jobs", app=create_app(jobs, token=TOKEN))]
    )
    async with client(outer, token=TOKEN) as http:
        assert (await http.get("/")).text == "the user's own app"
        created = await http.post("/ops/jobs/api/workflows/waits/runs", json={"input": "x"})
        assert created.status_code == 201
        run_id = created.json()["run_id"]
        run = await http.get(f"/ops/jobs/api/workflows/waits/runs/{run_id}")
        assert run.json()["id"] == run_id
        page = await http.get("/ops/jobs/")
        assert page.status_code == 200
        assert '<meta name="api-base" content="/ops/jobs">' in page.text
        assert (await http.get("/api/workflows")).status_code == 404  # not at the root
    async with client(outer) as anonymous:
        assert (await anonymous.get("/")).status_code == 200  # the guard covers ours only
        assert (await anonymous.get("/ops/jobs/api/jobs")).status_code == 401


async def test_the_page_is_one_document_locked_down_by_its_policy(jobs: DurableJobs) -> None:
    async with client(create_app(jobs)) as http:
        page = await http.get("/")
    assert page.status_code == 200
    assert page.headers["content-type"].startswith("text/html")
    policy = page.headers["content-security-policy"]
    assert "default-src 'none'" in policy
    assert "connect-src 'self'" in policy
    assert re.search(r"script-src 'sha256-[A-Za-z0-9+/=]+'", policy)
    assert "unsafe-inline" not in policy
    assert page.headers["referrer-policy"] == "no-referrer"
    assert page.headers["x-content-type-options"] == "nosniff"
    assert "<script>" in page.text
    assert "<script src" not in page.text
    assert "http://" not in page.text  # nothing loaded from elsewhere
    assert "https://" not in page.text
    assert "set-cookie" not in page.headers


async def test_json_responses_are_not_cached(jobs: DurableJobs) -> None:
    async with client(create_app(jobs)) as http:
        response = await http.get("/api/workflows")
    assert response.headers["cache-control"] == "no-store"
    assert isinstance(response, httpx.Response)
