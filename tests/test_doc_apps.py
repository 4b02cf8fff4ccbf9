"""The apps the docs show run both ways — ``python app.py`` and ``durable-effect worker
app:jobs`` — and Ctrl-C (SIGINT) ends each quietly: exit 0, no traceback.

Live: real processes on a real SQLite file in a fresh directory, each waited for (bounded)
by the line it prints, never by a sleep.
"""

from __future__ import annotations

import json
import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import IO

import pytest

from tests.cli.runner import COMMAND, cli, environment

pytestmark = pytest.mark.live

DOCS = Path(__file__).resolve().parents[1] / "docs"
README = DOCS.parent / "README.md"


def block_starting(path: Path, first_line: str) -> str:
    blocks = re.findall(r"```python\n(.*?)```", path.read_text(encoding="utf-8"), flags=re.S)
    [block] = [b for b in blocks if b.startswith(first_line)]
    return str(block)


def read_until(stream: IO[str], pattern: str, timeout: float) -> str:
    """The text of ``stream`` up to (and past, if it came in the same read) the first line
    matching ``pattern``; AssertionError on timeout. Reads the pipe's file descriptor
    directly, so the stream's own buffer stays empty for a later ``communicate()``."""
    fd = stream.fileno()
    selector = selectors.DefaultSelector()
    selector.register(fd, selectors.EVENT_READ)
    deadline = time.monotonic() + timeout
    data = b""
    while time.monotonic() < deadline:
        if not selector.select(timeout=max(deadline - time.monotonic(), 0)):
            continue
        chunk = os.read(fd, 65536)
        if not chunk:
            break
        data += chunk
        lines = data.decode(errors="replace").splitlines()
        complete = lines if data.endswith(b"\n") else lines[:-1]
        if any(re.search(pattern, line) for line in complete):
            return data.decode(errors="replace")
    raise AssertionError(f"no line matching {pattern!r} within {timeout} s: {data!r}")


def interrupt(proc: subprocess.Popen[str]) -> tuple[str, str]:
    proc.send_signal(signal.SIGINT)
    try:
        out, err = proc.communicate(timeout=30)
    finally:
        proc.kill()
    return out, err


def start(args: list[str], cwd: Path) -> subprocess.Popen[str]:
    return subprocess.Popen(
        args,
        cwd=cwd,
        env=environment(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


@pytest.fixture
def quickstart_app(tmp_path: Path) -> Path:
    (tmp_path / "app.py").write_text(block_starting(DOCS / "quickstart.md", "# app.py"))
    return tmp_path


def test_the_quickstart_app_runs_as_a_script_and_stops_on_ctrl_c(quickstart_app: Path) -> None:
    proc = start([sys.executable, "app.py"], quickstart_app)
    assert proc.stdout is not None
    assert read_until(proc.stdout, r"^started user-1; Ctrl-C to stop$", 30)
    _, err = interrupt(proc)
    assert proc.returncode == 0, err
    assert "Traceback" not in err
    assert "KeyboardInterrupt" not in err
    assert re.search(r" INFO tick$", err, flags=re.M), err  # the start's run logged its tick
    again = start([sys.executable, "app.py"], quickstart_app)
    assert again.stdout is not None
    assert read_until(again.stdout, r"^resumed user-1; Ctrl-C to stop$", 30)
    interrupt(again)
    assert again.returncode == 0


def test_the_quickstart_app_runs_under_the_cli_worker(quickstart_app: Path) -> None:
    started = cli(
        None,
        "start",
        "app:jobs",
        "counter",
        "user-2",
        "--input",
        '{"ticks": 0}',
        cwd=quickstart_app,
    )
    assert started.returncode == 0, started.stderr
    worker = start([*COMMAND, "worker", "app:jobs"], quickstart_app)
    assert worker.stderr is not None
    seen = read_until(worker.stderr, r"continuous:counter:user-2: tick n=1 run=2$", 30).splitlines()
    assert "on sqlite:///jobs.db; jobs: counter" in seen[0]
    assert seen[1].endswith("running (SIGINT/SIGTERM to stop)")
    _, err = interrupt(worker)
    assert worker.returncode == 0, err
    assert "Traceback" not in "".join(seen) + err
    assert re.search(r"INFO +worker \S+ stopped after firing \d+ alarms?\n$", err)
    status = cli(None, "status", "app:jobs", "counter", "user-2", "--json", cwd=quickstart_app)
    assert json.loads(status.stdout)["run_count"] >= 2


def test_the_readme_example_is_an_app_the_cli_can_operate(tmp_path: Path) -> None:
    (tmp_path / "example.py").write_text(block_starting(README, "import asyncio"))
    ran = subprocess.run(
        [sys.executable, "example.py"], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert ran.returncode == 0, ran.stderr
    status = cli(None, "status", "example:jobs", "counter", "a", "--json", cwd=tmp_path)
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["status"] == "running"
    worker = start([*COMMAND, "worker", "example:jobs"], tmp_path)
    assert worker.stderr is not None
    assert "on sqlite:///jobs.db; jobs: counter" in read_until(worker.stderr, r"running", 30)
    _, err = interrupt(worker)
    assert worker.returncode == 0, err
    assert "Traceback" not in err
