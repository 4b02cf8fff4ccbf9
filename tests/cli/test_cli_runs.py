"""``runs list/show/delete/cancel/watch`` as a user sees them: readable at 100 columns, and the
``--json`` forms whole. Through the real entry point (a subprocess) on a real SQLite file."""

from __future__ import annotations

import asyncio
import json
from datetime import UTC, datetime
from pathlib import Path

import pytest

from durable_effect import DurableJobs
from durable_effect.testing import TestClock
from tests.cli import worker_app
from tests.cli.runner import cli, spawn

pytestmark = pytest.mark.live

APP = "tests.cli.worker_app:jobs"
RUN_FIELDS = {
    "id",
    "workflow",
    "status",
    "input",
    "output",
    "error",
    "labels",
    "progress",
    "attempt",
    "created_at",
    "started_at",
    "completed_at",
    "current_step",
    "idempotency_key",
    "concurrency_key",
    "parent_run_id",
    "forked_from",
}


def _jobs(db: Path, clock: TestClock | None = None) -> DurableJobs:
    return DurableJobs(
        dict(worker_app.jobs.registry),
        storage=f"sqlite:///{db}",
        clock=clock if clock is not None else TestClock(),
    )


def make_runs(
    db: Path, *, text: str = "hello", run: bool = True, clock: TestClock | None = None
) -> tuple[str, str]:
    """A failed ``wf`` run and a completed ``ok`` run (labelled); their ids."""

    async def go() -> tuple[str, str]:
        async with _jobs(db, clock) as jobs:
            failed = await jobs.client.workflow(worker_app.wf).trigger(5, labels={"team": "ops"})
            done = await jobs.client.workflow(worker_app.ok).trigger(
                text, labels={"team": "ops", "batch": "7"}
            )
            if run:
                await jobs.worker().run_until_idle()
            return failed.run_id, done.run_id

    return asyncio.run(go())


def narrow(text: str) -> list[str]:
    lines = text.splitlines()
    too_wide = [line for line in lines if len(line) > 100]
    assert too_wide == [], too_wide
    return lines


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "runs.db"


def test_runs_list_is_a_table_that_fits_100_columns(db: Path) -> None:
    failed, done = make_runs(db)
    for workflow, run_id, status, progress, detail in (
        ("wf", failed, "failed", "explode", "RuntimeError: step exploded"),
        ("ok", done, "completed", "2/2 doubled", "team=ops batch=7"),
    ):
        shown = cli(db, "runs", "list", APP, workflow)
        assert shown.returncode == 0, shown.stderr
        header, *rows, summary = narrow(shown.stdout)
        assert summary == f"1 shown of 1 ({status} 1)"  # the counts below the table
        assert header.split() == [
            "ID",
            "STATUS",
            "PROGRESS",
            "CREATED_AT",
            "TOOK",
            "LABELS/ERROR",
        ]
        [row] = rows
        assert row.split()[:3] == [run_id, status, progress.split()[0]]
        last = row.rsplit("  ", 1)[1]
        if last.endswith("…"):  # the error is cut so that the table fits exactly
            assert len(row) == 100
            assert detail.startswith(last[:-1])
            assert len(last) >= 20
        else:
            assert last == detail


def test_tables_fit_100_columns_with_instants_of_a_real_clock(db: Path) -> None:
    """Instants with microseconds (as a real clock gives) are shown to the second in the
    tables, so the header and rows still fit; ``--json`` keeps them whole."""
    clock = TestClock(datetime(2026, 12, 7, 15, 53, 5, 790610, tzinfo=UTC))
    _, done = make_runs(db, clock=clock)
    listed = cli(db, "runs", "list", APP, "ok")
    assert listed.returncode == 0, listed.stderr
    header, row, summary = narrow(listed.stdout)
    assert summary == "1 shown of 1 (completed 1)"
    assert header.split()[-1] == "LABELS/ERROR"
    assert "  2026-12-07T15:53:05Z  " in row
    shown = cli(db, "runs", "show", APP, "ok", done)
    assert shown.returncode == 0, shown.stderr
    lines = narrow(shown.stdout)
    assert "2026-12-07T15:53:05Z" in lines[lines.index("") + 2]  # a step's started_at
    whole = cli(db, "runs", "list", APP, "ok", "--json")
    assert json.loads(whole.stdout)["runs"][0]["created_at"] == "2026-12-07T15:53:05.790610Z"


def test_runs_list_json_is_the_whole_runs(db: Path) -> None:
    _, done = make_runs(db)
    listed = cli(db, "runs", "list", APP, "ok", "--json")
    assert listed.returncode == 0, listed.stderr
    page = json.loads(listed.stdout)
    assert set(page) == {"runs", "next_cursor", "counts"}
    assert page["next_cursor"] is None
    assert page["counts"]["completed"] == 1
    [run] = page["runs"]
    assert set(run) == RUN_FIELDS
    assert (run["id"], run["status"], run["output"]) == (done, "completed", 10)
    assert run["progress"] == {"current": 2, "total": 2, "message": "doubled"}


def test_runs_show_is_a_block_and_a_step_table(db: Path) -> None:
    failed, _ = make_runs(db)
    shown = cli(db, "runs", "show", APP, "wf", failed)
    assert shown.returncode == 0, shown.stderr
    lines = narrow(shown.stdout)
    block = dict(line.split(None, 1) for line in lines[: lines.index("")])
    assert block["id"] == failed
    assert block["status"] == "failed"
    assert block["input"] == "5"
    assert block["labels"] == "team=ops"
    assert block["error"] == "RuntimeError: step exploded"
    steps = lines[lines.index("") + 1 :]
    assert steps[0].split() == ["#", "STEP", "STATUS", "ATTEMPTS", "STARTED_AT", "TOOK", "RESULT"]
    assert steps[1].split()[:4] == ["0", "fetch", "completed", "1"]
    assert steps[1].endswith(" 5")
    assert steps[2].split()[:4] == ["1", "explode", "failed", "1"]
    assert steps[2].endswith("RuntimeError: step exploded")


def test_runs_show_wraps_long_values_and_json_keeps_them_whole(db: Path) -> None:
    text = "x" * 250
    _, done = make_runs(db, text=text)
    shown = cli(db, "runs", "show", APP, "ok", done)
    assert shown.returncode == 0, shown.stderr
    lines = narrow(shown.stdout)
    start = next(i for i, line in enumerate(lines) if line.startswith("input "))
    pieces = [lines[start].split(None, 1)[1]]
    for line in lines[start + 1 :]:
        if not line.startswith(" "):
            break
        pieces.append(line.strip())
    assert json.loads("".join(pieces)) == text
    whole = json.loads(cli(db, "runs", "show", APP, "ok", done, "--json").stdout)
    assert set(whole) == {"run", "steps", "waiting_for", "pending_events"}
    assert (whole["waiting_for"], whole["pending_events"]) == (None, [])
    assert set(whole["run"]) == RUN_FIELDS
    assert whole["run"]["input"] == text
    assert [(s["name"], s["output"]) for s in whole["steps"]] == [
        ("measure", 250),
        ("double", 500),
    ]


def test_runs_delete_says_what_it_deleted(db: Path) -> None:
    failed, done = make_runs(db)
    deleted = cli(db, "runs", "delete", APP, "ok", done)
    assert deleted.returncode == 0, deleted.stderr
    assert [line.split(None, 1) for line in deleted.stdout.splitlines()] == [
        ["deleted", "True"],
        ["run_id", done],
        ["workflow", "ok"],
        ["status", "completed"],
        ["steps", "2"],
    ]
    assert cli(db, "runs", "show", APP, "ok", done).returncode == 3
    as_json = cli(db, "runs", "delete", APP, "wf", failed, "--json")
    assert json.loads(as_json.stdout) == {
        "deleted": True,
        "run_id": failed,
        "workflow": "wf",
        "status": "failed",
        "steps": 2,
    }
    again = cli(db, "runs", "delete", APP, "wf", failed)
    assert again.returncode == 3
    assert again.stdout == ""


def test_runs_cancel_says_the_run_is_cancelled(db: Path) -> None:
    _, pending = make_runs(db, run=False)
    cancelled = cli(db, "runs", "cancel", APP, "ok", pending, "--json")
    assert cancelled.returncode == 0, cancelled.stderr
    assert json.loads(cancelled.stdout) == {
        "cancelled": True,
        "run_id": pending,
        "status": "cancelled",
    }


def test_runs_watch_json_streams_one_json_line_per_change(db: Path) -> None:
    _, pending = make_runs(db, run=False)
    watcher = spawn(db, "runs", "watch", APP, "ok", pending, "--json")
    try:
        assert watcher.stdout is not None
        first = json.loads(watcher.stdout.readline())  # it has looked once: now run it
        assert (first["id"], first["status"]) == (pending, "pending")

        async def work() -> None:
            async with DurableJobs(
                dict(worker_app.jobs.registry), storage=f"sqlite:///{db}"
            ) as jobs:
                await jobs.worker().run_until_idle()

        asyncio.run(work())
        out, err = watcher.communicate(timeout=30)
    finally:
        watcher.kill()
    assert watcher.returncode == 0, err
    runs = [first, *(json.loads(line) for line in out.splitlines())]
    assert all(set(run) == RUN_FIELDS for run in runs)
    assert runs[-1]["status"] == "completed"
    assert runs[-1]["output"] == 10
    assert len({json.dumps(run, sort_keys=True) for run in runs}) == len(runs)  # changes only


def test_runs_watch_without_a_terminal_prints_a_line_per_change(db: Path) -> None:
    failed, _ = make_runs(db)
    watched = cli(db, "runs", "watch", APP, "wf", failed)
    assert watched.returncode == 1  # the run failed
    assert narrow(watched.stdout) == ["failed     explode"]
    assert "\r" not in watched.stdout
