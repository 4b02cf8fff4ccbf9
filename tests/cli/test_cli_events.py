"""``runs send`` and what ``runs show`` says about events, through the real CLI (subprocesses)
against a real SQLite file, with a worker the CLI starts."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest

from tests.cli.test_cli import ROOT, SCRIPT, cli

pytestmark = pytest.mark.live

APP = "tests.cli.events_app:jobs"
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "durable_effect.cli"]


def _json(done: subprocess.CompletedProcess[str]) -> dict[str, Any]:
    assert done.returncode == 0, done.stderr
    loaded: dict[str, Any] = json.loads(done.stdout)
    return loaded


def _env(db: Path) -> dict[str, str]:
    return {**os.environ, "DE_TEST_DB": str(db)}


def _until(db: Path, rid: str, done: Callable[[dict[str, Any]], bool]) -> dict[str, Any]:
    """``runs show`` until ``done`` says so (bounded: 30 s of real time)."""
    limit = time.monotonic() + 30
    while True:
        shown = _json(cli(db, "runs", "show", APP, "approval", rid, "--json"))
        if done(shown):
            return shown
        assert time.monotonic() < limit, shown
        time.sleep(0.1)


def test_send_show_and_a_worker_resuming_the_run(tmp_path: Path) -> None:
    db = tmp_path / "events.db"
    rid = str(
        _json(cli(db, "runs", "trigger", APP, "approval", "--input", '"doc-1"', "--json"))["run_id"]
    )
    # A pending run accepts events; a repeated --event-id is a duplicate.
    early = cli(
        db,
        "runs",
        "send",
        APP,
        "approval",
        rid,
        "--event",
        '{"type": "Rejected", "reason": "no"}',
        "--event-id",
        "r1",
        "--json",
    )
    assert _json(early) == {"run_id": rid, "accepted": True, "duplicate": False}
    again = cli(
        db,
        "runs",
        "send",
        APP,
        "approval",
        rid,
        "--event",
        '{"type": "Rejected", "reason": "no"}',
        "--event-id",
        "r1",
        "--json",
    )
    assert _json(again) == {"run_id": rid, "accepted": False, "duplicate": True}
    shown = _json(cli(db, "runs", "show", APP, "approval", rid, "--json"))
    assert shown["waiting_for"] is None
    pending = shown["pending_events"]
    assert isinstance(pending, list)
    assert [(e["seq"], e["event"], e["event_id"]) for e in pending] == [
        (0, {"type": "Rejected", "reason": "no"}, "r1")
    ]
    # Bad input: one line, no traceback, nothing written.
    deep = "[" * 2000 + "]" * 2000
    for event, extra, message in (
        ("{oops", [], "--event is not valid JSON"),
        (deep, [], "--event is not valid JSON: nested too deeply"),
        ('{"type": "Approved", "by": 3}', [], "ValidationError"),
        ('{"type": "Approved", "by": ' + "[" * 500 + "]" * 500 + "}", [], "$.by"),
        ('{"type": "Maybe"}', [], "ValidationError"),
        ('{"type": "Approved", "by": "x"}', ["--event-id", ""], "event_id"),
        ('{"type": "Approved", "by": "x"}', ["--event-id", "x" * 600], "event_id"),
    ):
        bad = cli(db, "runs", "send", APP, "approval", rid, "--event", event, *extra)
        assert bad.returncode == 2, bad.stderr
        assert message in bad.stderr
        assert "Traceback" not in bad.stderr
        assert len(bad.stderr.strip().splitlines()) == 1
    after = _json(cli(db, "runs", "show", APP, "approval", rid, "--json"))["pending_events"]
    assert after == pending  # nothing was written
    valid = '{"type": "Approved", "by": "x"}'
    missing = cli(db, "runs", "send", APP, "approval", "nope", "--event", valid)
    assert missing.returncode == 3
    assert "InstanceNotFoundError" in missing.stderr

    worker = subprocess.Popen(
        [*COMMAND, "worker", APP], cwd=ROOT, env=_env(db), stderr=subprocess.DEVNULL
    )
    try:
        shown = _until(db, rid, lambda s: s["waiting_for"] is not None)
        waiting = shown["waiting_for"]
        assert isinstance(waiting, dict)
        assert (waiting["step"], waiting["event"]) == ("decision", "Approved")
        assert waiting["until"] is not None
        assert len(shown["pending_events"]) == 1  # the Rejected one stays queued
        text = cli(db, "runs", "show", APP, "approval", rid)
        assert text.returncode == 0, text.stderr
        lines = text.stdout.splitlines()
        waiting_line = next(line for line in lines if line.startswith("waiting_for"))
        assert waiting_line.split(None, 1)[1].startswith("step decision: event Approved, until ")
        head = lines.index(next(line for line in lines if line.startswith("SEQ")))
        assert lines[head].split() == ["SEQ", "EVENT_ID", "SENT_AT", "EVENT"]
        row = lines[head + 1].split(None, 3)
        assert (row[0], row[1]) == ("0", "r1")
        assert json.loads(row[3]) == {"type": "Rejected", "reason": "no"}
        sent = cli(
            db,
            "runs",
            "send",
            APP,
            "approval",
            rid,
            "--event",
            '{"type": "Approved", "by": "ann"}',
            "--json",
        )
        assert _json(sent)["accepted"] is True
        done = _until(db, rid, lambda s: s["run"]["status"] == "completed")
        assert done["run"]["output"] == "doc-1: approved by ann"
        assert done["waiting_for"] is None
    finally:
        worker.send_signal(signal.SIGTERM)
        worker.wait(timeout=30)
    late = cli(
        db, "runs", "send", APP, "approval", rid, "--event", '{"type": "Approved", "by": "bob"}'
    )
    assert late.returncode == 1
    assert "InvalidStateError: cannot send" in late.stderr
