"""``runs fork`` and ``runs resume`` (one run, or every run of a workflow with a status, with
``--dry-run``) through the real entry point on a real SQLite file."""

from __future__ import annotations

import asyncio
import json
from pathlib import Path

import pytest

from durable_effect import DurableJobs
from durable_effect.testing import TestClock
from tests.cli import worker_app
from tests.cli.runner import cli

pytestmark = pytest.mark.live

APP = "tests.cli.worker_app:jobs"


def _jobs(db: Path) -> DurableJobs:
    return DurableJobs(dict(worker_app.jobs.registry), storage=f"sqlite:///{db}", clock=TestClock())


def failed_runs(db: Path, n: int) -> list[str]:
    """``n`` failed ``wf`` runs (their ``explode`` step fails) and one completed ``ok`` run."""

    async def go() -> list[str]:
        async with _jobs(db) as jobs:
            h = jobs.client.workflow(worker_app.wf)
            ids = [(await h.trigger(i)).run_id for i in range(n)]
            await jobs.client.workflow(worker_app.ok).trigger("abc")
            await jobs.worker().run_until_idle()
            return ids

    return asyncio.run(go())


def statuses(db: Path, workflow: str) -> dict[str, str]:
    async def go() -> dict[str, str]:
        async with _jobs(db) as jobs:
            runs = await jobs.client.workflow(workflow).list_runs(limit=100)
            return {r.id: r.status for r in runs}

    return asyncio.run(go())


def test_resume_by_status_dry_run_lists_and_resumes_nothing(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    ids = failed_runs(db, 3)
    shown = cli(db, "runs", "resume", APP, "--workflow", "wf", "--status", "failed", "--dry-run")
    assert shown.returncode == 0, shown.stderr
    for run_id in ids:
        assert run_id in shown.stdout
    assert "would resume 3 failed run(s) of wf" in shown.stdout
    assert "RuntimeError: step exploded" in shown.stdout
    assert set(statuses(db, "wf").values()) == {"failed"}


def test_resume_by_status_resumes_every_such_run(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    ids = failed_runs(db, 3)
    done = cli(db, "runs", "resume", APP, "--workflow", "wf", "--status", "failed", "--json")
    assert done.returncode == 0, done.stderr
    body = json.loads(done.stdout)
    assert body["dry_run"] is False
    assert sorted(r["run_id"] for r in body["runs"]) == sorted(ids)
    assert {(r["status"], r["resumed"]) for r in body["runs"]} == {("pending", True)}
    assert statuses(db, "wf") == dict.fromkeys(ids, "pending")
    assert set(statuses(db, "ok").values()) == {"completed"}  # other workflows untouched
    again = cli(db, "runs", "resume", APP, "wf", "--status", "failed")
    assert again.returncode == 0
    assert "resumed 0 failed run(s) of wf" in again.stdout


def test_resume_one_run_and_refuse_an_active_one(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    (rid,) = failed_runs(db, 1)
    one = cli(db, "runs", "resume", APP, "wf", rid, "--json")
    assert one.returncode == 0, one.stderr
    assert json.loads(one.stdout) == {"run_id": rid, "status": "pending", "resumed": True}
    twice = cli(db, "runs", "resume", APP, "wf", rid)
    assert twice.returncode != 0
    assert "Traceback" not in twice.stderr
    assert "InvalidStateError" in twice.stderr
    assert "pending" in twice.stderr


@pytest.mark.parametrize(
    "args",
    [
        ("wf",),  # neither RUN_ID nor --status
        ("wf", "some-run", "--status", "failed"),  # both
        ("--status", "failed"),  # no workflow
        ("wf", "some-run", "--dry-run"),  # --dry-run without --status
        ("wf", "--workflow", "ok", "--status", "failed"),  # two workflows
    ],
)
def test_resume_usage_errors_exit_2_without_a_traceback(tmp_path: Path, args: tuple[str]) -> None:
    got = cli(tmp_path / "r.db", "runs", "resume", APP, *args)
    assert got.returncode == 2, got.stderr
    assert "Traceback" not in got.stderr
    assert got.stderr.strip()


def test_fork_from_a_step(tmp_path: Path) -> None:
    db = tmp_path / "r.db"
    (rid,) = failed_runs(db, 1)
    forked = cli(db, "runs", "fork", APP, "wf", rid, "--from-step", "fetch", "--json")
    assert forked.returncode == 0, forked.stderr
    body = json.loads(forked.stdout)
    assert (body["disposition"], body["forked_from"]) == ("created", rid)
    assert statuses(db, "wf")[body["run_id"]] == "pending"
    shown = cli(db, "runs", "show", APP, "wf", body["run_id"], "--json")
    assert json.loads(shown.stdout)["run"]["forked_from"] == rid
    bad = cli(db, "runs", "fork", APP, "wf", rid, "--from-step", "explode")
    assert bad.returncode != 0
    assert "Traceback" not in bad.stderr
    assert "from_step" in bad.stderr
    assert "explode" in bad.stderr
