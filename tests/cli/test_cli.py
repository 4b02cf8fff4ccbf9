"""The CLI through its real entry point (a subprocess) against a real SQLite file."""

from __future__ import annotations

import json
import os
import sqlite3
import subprocess
import sys
from pathlib import Path

import pytest

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("durable-effect")
APP = "tests.cli.sample_app:jobs"


def cli(db: Path, *args: str) -> subprocess.CompletedProcess[str]:
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "durable_effect.cli"]
    env = {**os.environ, "DE_TEST_DB": str(db)}
    return subprocess.run(
        [*command, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def records(db: Path) -> int:
    if not db.exists():
        return 0
    with sqlite3.connect(db) as conn:
        tables = [r[0] for r in conn.execute("select name from sqlite_master where type='table'")]
        return sum(
            conn.execute(f'select count(*) from "{t}"').fetchone()[0]
            for t in tables
            if "record" in t or "alarm" in t
        )


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "cli.db"


def test_start_status_state_terminate_roundtrip(db: Path) -> None:
    started = cli(db, "start", APP, "heartbeat", "a", "--input", '{"beats": 3}', "--json")
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["created"] is True

    status = cli(db, "status", APP, "heartbeat", "a", "--json")
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["status"] == "running"

    state = cli(db, "state", APP, "heartbeat", "a", "--json")
    assert json.loads(state.stdout)["state"] == {"beats": 4}  # the first run happened at start

    human = cli(db, "status", APP, "heartbeat", "a")
    assert "running" in human.stdout
    assert "status" in human.stdout

    gone = cli(db, "terminate", APP, "heartbeat", "a", "--reason", "done", "--json")
    assert json.loads(gone.stdout)["terminated"] is True
    after = cli(db, "status", APP, "heartbeat", "a", "--json")
    assert json.loads(after.stdout)["status"] == "not_found"


def test_add_flush_and_send_through_the_cli(db: Path) -> None:
    added = cli(db, "add", APP, "clicks", "site", "--event", '{"page": "/"}', "--json")
    assert added.returncode == 0, added.stderr
    assert json.loads(added.stdout)["event_count"] == 1
    flushed = cli(db, "flush", APP, "clicks", "site", "--json")
    assert json.loads(flushed.stdout)["flushed"] is True

    sent = cli(
        db, "send", APP, "orders", "o1", "--event", '{"type": "placed", "item": "pen"}', "--json"
    )
    assert sent.returncode == 0, sent.stderr
    state = cli(db, "state", APP, "orders", "o1", "--json")
    assert json.loads(state.stdout)["state"]["status"] == "awaiting payment"


def test_instances_list_filters_by_type(db: Path) -> None:
    cli(db, "start", APP, "heartbeat", "x", "--input", '{"beats": 0}')
    cli(db, "send", APP, "orders", "o9", "--event", '{"type": "placed", "item": "cup"}')
    listing = cli(db, "instances", "list", APP, "--type", "task", "--json")
    assert listing.returncode == 0, listing.stderr
    rows = json.loads(listing.stdout)["instances"]
    assert [(r["type"], r["id"]) for r in rows] == [("task", "o9")]


def test_unknown_job_is_a_clear_error_and_writes_nothing(db: Path) -> None:
    result = cli(db, "start", APP, "nope", "a", "--input", "{}")
    assert result.returncode == 3
    assert "no job named 'nope'" in result.stderr
    assert records(db) == 0


def test_invalid_json_is_refused_before_anything_is_written(db: Path) -> None:
    result = cli(db, "start", APP, "heartbeat", "a", "--input", "{beats: 1")
    assert result.returncode == 2
    assert "--input is not valid JSON" in result.stderr
    assert records(db) == 0


def test_schema_mismatch_names_the_field_and_writes_nothing(db: Path) -> None:
    result = cli(db, "start", APP, "heartbeat", "a", "--input", '{"beats": "many"}')
    assert result.returncode == 2
    assert "$.beats" in result.stderr
    assert records(db) == 0
    event = cli(db, "add", APP, "clicks", "site", "--event", '{"page": 5}')
    assert event.returncode == 2
    assert "$.page" in event.stderr
    assert records(db) == 0


def test_command_on_the_wrong_job_type_is_refused(db: Path) -> None:
    result = cli(db, "add", APP, "heartbeat", "a", "--event", "{}")
    assert result.returncode == 2
    assert "is a continuous job" in result.stderr


def test_bad_app_spec_is_a_usage_error(db: Path) -> None:
    result = cli(db, "status", "no_such_module:jobs", "heartbeat", "a")
    assert result.returncode == 2
    assert "cannot import" in result.stderr


def test_migrate_creates_the_schema(db: Path) -> None:
    result = cli(db, "migrate", "--storage", f"sqlite:///{db}", "--json")
    assert result.returncode == 0, result.stderr
    assert json.loads(result.stdout)["migrated"] is True
    assert db.exists()


def test_terminate_on_a_debounce_job_is_refused(db: Path) -> None:
    result = cli(db, "terminate", APP, "clicks", "site")
    assert result.returncode == 2
    assert "is a debounce job" in result.stderr


def test_unsupported_storage_url_is_a_usage_error(db: Path) -> None:
    result = cli(db, "status", APP, "heartbeat", "a", "--storage", "redis://x")
    assert result.returncode == 2
    assert "unsupported storage URL" in result.stderr
    assert "Traceback" not in result.stderr


def test_workflow_runs_list_and_show(db: Path) -> None:
    listing = cli(db, "runs", "list", APP, "importCsv", "--json")
    assert listing.returncode == 0, listing.stderr
    assert json.loads(listing.stdout) == {
        "runs": [],
        "next_cursor": None,
        "counts": dict.fromkeys(
            ["pending", "leased", "sleeping", "completed", "failed", "cancelled"], 0
        ),
    }
    missing = cli(db, "runs", "show", APP, "importCsv", "nope")
    assert missing.returncode == 3


def test_trigger_a_run_then_list_show_and_cancel_it(db: Path) -> None:
    trig = cli(
        db,
        "runs",
        "trigger",
        APP,
        "importCsv",
        "--input",
        '{"filename": "a.csv", "rows": 10}',
        "--label",
        "team=ops",
        "--json",
    )
    assert trig.returncode == 0, trig.stderr
    run_id = json.loads(trig.stdout)["run_id"]
    listing = json.loads(
        cli(db, "runs", "list", APP, "importCsv", "--label", "team=ops", "--json").stdout
    )["runs"]
    assert [(r["id"], r["status"]) for r in listing] == [(run_id, "pending")]
    shown = json.loads(cli(db, "runs", "show", APP, "importCsv", run_id, "--json").stdout)
    assert shown["run"]["input"] == {"filename": "a.csv", "rows": 10}
    assert shown["steps"] == []
    cancelled = cli(db, "runs", "cancel", APP, "importCsv", run_id)
    assert cancelled.returncode == 0, cancelled.stderr
    again = cli(db, "runs", "cancel", APP, "importCsv", run_id)
    assert again.returncode == 1
    assert "InvalidStateError" in again.stderr


def test_trigger_with_a_bad_input_names_the_field(db: Path) -> None:
    bad = cli(db, "runs", "trigger", APP, "importCsv", "--input", '{"filename": 1, "rows": 1}')
    assert bad.returncode == 2
    assert "$.filename" in bad.stderr


def test_listings_page_with_after_and_show_counts(db: Path) -> None:
    run_ids = []
    for n in range(3):
        trig = cli(
            db,
            "runs",
            "trigger",
            APP,
            "importCsv",
            "--input",
            '{"filename": "f", "rows": 1}',
            "--label",
            f"n={n}",
            "--json",
        )
        assert trig.returncode == 0, trig.stderr
        run_ids.append(json.loads(trig.stdout)["run_id"])
    first = cli(db, "runs", "list", APP, "importCsv", "--limit", "2")
    assert first.returncode == 0, first.stderr
    lines = first.stdout.splitlines()
    assert "2 shown of 3 (pending 3)" in lines
    (after,) = [line.split("--after ", 1)[1] for line in lines if line.startswith("next page:")]
    rest = json.loads(cli(db, "runs", "list", APP, "importCsv", "--after", after, "--json").stdout)
    assert [r["id"] for r in rest["runs"]] == [run_ids[0]]
    assert rest["next_cursor"] is None
    assert rest["counts"]["pending"] == 3
    bad = cli(db, "runs", "list", APP, "importCsv", "--after", "nonsense")
    assert bad.returncode == 2
    assert "after" in bad.stderr
    assert "Traceback" not in bad.stderr

    for n in range(3):
        sent = cli(db, "send", APP, "orders", f"o{n}", "--event", '{"type": "placed", "item": "x"}')
        assert sent.returncode == 0, sent.stderr
    page = json.loads(
        cli(db, "instances", "list", APP, "--type", "task", "--limit", "2", "--json").stdout
    )
    assert [r["id"] for r in page["instances"]] == ["o2", "o1"]
    assert sum(page["counts"].values()) == 3
    more = cli(
        db, "instances", "list", APP, "--type", "task", "--after", page["next_cursor"], "--json"
    )
    assert [r["id"] for r in json.loads(more.stdout)["instances"]] == ["o0"]
    human = cli(db, "instances", "list", APP, "--name", "orders", "--limit", "1")
    assert "1 shown of 3" in human.stdout
    assert "next page: --after " in human.stdout
