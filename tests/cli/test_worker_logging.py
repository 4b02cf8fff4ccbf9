"""SPEC 10.2: ``durable-effect worker`` output an operator can act on.

A real worker process on a real SQLite file runs ``tests/cli/worker_app.py``: a Task whose
``execute`` logs and then raises (a defect), a Task failing with a typed error and retried
once, and a workflow whose second step raises. Each failed execution is one line naming the
instance (run and step for workflows), the attempt, whether it will retry and the error; a
defect's traceback follows its line, once; the jobs' own ``Effect.log_*`` lines appear at
their level. Waits are bounded and wait for lines, never for time.
"""

from __future__ import annotations

import asyncio
import json
import re
import subprocess
from pathlib import Path

import pytest

from durable_effect import DurableJobs
from tests.cli import worker_app
from tests.cli.runner import COMMAND, ROOT, environment
from tests.test_doc_apps import interrupt, read_until

pytestmark = pytest.mark.live

APP = "tests.cli.worker_app:jobs"
TIME = r"\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z"


def prepare(db: Path) -> str:
    """Work for the worker: two task events and a workflow run; the run's id."""

    async def go() -> str:
        async with DurableJobs(dict(worker_app.jobs.registry), storage=f"sqlite:///{db}") as jobs:
            await jobs.client.task(worker_app.boom).send(id="a", event=1)
            await jobs.client.task(worker_app.typed).send(id="t", event=2)
            return (await jobs.client.workflow(worker_app.wf).trigger(5)).run_id

    return asyncio.run(go())


def run_worker(db: Path, *flags: str, until: str) -> tuple[int, list[str]]:
    """Run a worker until a stderr line matches ``until``, then Ctrl-C it; (exit code, lines)."""
    worker = subprocess.Popen(
        [*COMMAND, "worker", APP, *flags],
        cwd=ROOT,
        env=environment(db),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )
    assert worker.stderr is not None
    seen = read_until(worker.stderr, until, 60)
    out, err = interrupt(worker)
    assert out == ""
    text = seen + err
    return worker.returncode, [line for line in text.splitlines() if line]


def records(lines: list[str]) -> list[tuple[str, list[str]]]:
    """Text log lines grouped: each record's first line with its indented continuation."""
    grouped: list[tuple[str, list[str]]] = []
    for line in lines:
        if line.startswith("  ") and grouped:
            grouped[-1][1].append(line)
        else:
            assert re.match(rf"^{TIME} (DEBUG|INFO|WARNING|ERROR) +\S", line), line
            grouped.append((line, []))
    return grouped


@pytest.fixture
def db(tmp_path: Path) -> Path:
    return tmp_path / "worker.db"


def test_text_logs_name_every_failure_and_show_a_defects_traceback_once(db: Path) -> None:
    run_id = prepare(db)
    code, lines = run_worker(db, until=r"task:typed:t gave up after 2 attempts")
    assert code == 0, lines
    grouped = records(lines)
    messages = [re.sub(rf"^{TIME} ", "", first) for first, _ in grouped]
    traces = {re.sub(rf"^{TIME} ", "", first): "\n".join(rest) for first, rest in grouped}

    assert "INFO    task:boom:a: working n=1" in messages
    assert not any("details" in m for m in messages)  # DEBUG: below the default level

    boom = "ERROR   task:boom:a failed (attempt 1, will retry): ValueError: kaboom"
    assert boom in messages
    assert 'raise ValueError("kaboom")' in traces[boom]
    assert traces[boom].rstrip().endswith("ValueError: kaboom")

    step = (
        f"ERROR   workflow:wf:{run_id} step 'explode' failed (attempt 1, no retry): "
        "RuntimeError: step exploded"
    )
    run = f"ERROR   workflow:wf:{run_id} failed at step 'explode': RuntimeError: step exploded"
    assert step in messages
    assert run in messages
    assert 'raise RuntimeError("step exploded")' in traces[step]
    assert traces[run] == ""  # the run's line does not repeat the step's traceback
    assert sum(
        "\n".join(rest).count("Traceback (most recent call last)") for _, rest in grouped
    ) == (sum(1 for m in messages if "task:boom:a failed" in m) + 1)

    typed = [m for m in messages if m.startswith("ERROR   task:typed:t")]
    assert typed[:3] == [
        "ERROR   task:typed:t failed (attempt 1, will retry): Refused: why='no stock'",
        "ERROR   task:typed:t failed (attempt 2, no retry): Refused: why='no stock'",
        "ERROR   task:typed:t gave up after 2 attempts (max_attempts): Refused: why='no stock'",
    ]
    assert all(traces[m] == "" for m in typed)  # typed failures: no traceback

    assert "Traceback" not in "\n".join(
        lines[lines.index(next(line for line in lines if "stopping" in line)) :]
    )
    assert re.search(r"INFO +worker \S+ stopped after firing \d+ alarms?$", lines[-1])


def test_json_logs_are_one_object_per_line(db: Path) -> None:
    run_id = prepare(db)
    code, lines = run_worker(db, "--log-format", "json", until=r"failed at step")
    assert code == 0, lines
    objects = [json.loads(line) for line in lines]
    assert all({"time", "level", "logger", "message"} <= set(o) for o in objects)
    working = next(o for o in objects if o["message"] == "working")
    assert working["level"] == "info"
    assert (working["instance_id"], working["job_type"], working["job_name"]) == (
        "task:boom:a",
        "task",
        "boom",
    )
    assert working["fields"] == {"n": 1}
    boom = next(o for o in objects if o.get("instance_id") == "task:boom:a" and "error" in o)
    assert {k: boom[k] for k in ("level", "id", "attempt", "will_retry", "error")} == {
        "level": "error",
        "id": "a",
        "attempt": 1,
        "will_retry": True,
        "error": "ValueError: kaboom",
    }
    assert 'raise ValueError("kaboom")' in boom["traceback"]
    step = next(o for o in objects if o.get("step") == "explode" and o.get("attempt") == 1)
    assert (step["run_id"], step["will_retry"]) == (run_id, False)
    assert "traceback" in step
    failed_run = next(
        o
        for o in objects
        if o["message"].endswith("failed at step 'explode': RuntimeError: step exploded")
    )
    assert "traceback" not in failed_run


def test_log_level_debug_and_error(db: Path) -> None:
    prepare(db)
    code, lines = run_worker(db, "--log-level", "debug", until=r"task:boom:a failed")
    assert code == 0, lines
    assert any(line.endswith("DEBUG   task:boom:a: details n=1") for line in lines)
    code, lines = run_worker(db, "--log-level", "error", until=r"task:boom:a failed")
    assert code == 0, lines
    firsts = [first for first, _ in records(lines)]
    assert firsts
    assert all(" ERROR " in first for first in firsts), firsts


def test_the_stop_line_counts_alarms_in_english(db: Path) -> None:
    async def one_run() -> None:
        async with DurableJobs(dict(worker_app.jobs.registry), storage=f"sqlite:///{db}") as jobs:
            await jobs.client.workflow(worker_app.wf).trigger(5)

    asyncio.run(one_run())
    code, lines = run_worker(db, until=r"failed at step")
    assert code == 0, lines
    assert re.search(r"INFO +worker \S+ stopped after firing 1 alarm$", lines[-1]), lines[-1]
