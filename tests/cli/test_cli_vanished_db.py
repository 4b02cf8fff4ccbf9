"""`durable-effect worker` (a real subprocess) when its SQLite database vanishes under it."""

from __future__ import annotations

import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from tests.cli.test_cli import APP, ROOT, SCRIPT, cli

pytestmark = pytest.mark.live


def wait_for(path: Path, text: str, *, within: float) -> str:
    """The content of ``path`` once it contains ``text`` (polled; bounded)."""
    deadline = time.monotonic() + within
    while True:
        content = path.read_text() if path.exists() else ""
        if text in content:
            return content
        if time.monotonic() > deadline:
            raise AssertionError(f"no {text!r} within {within} s in:\n{content}")
        time.sleep(0.05)


def test_the_worker_reports_a_removed_directory_and_keeps_backing_off(tmp_path: Path) -> None:
    directory = tmp_path / "data"
    directory.mkdir()
    db = directory / "cli.db"
    started = cli(db, "start", APP, "heartbeat", "a", "--input", '{"beats": 1000}')
    assert started.returncode == 0, started.stderr
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "durable_effect.cli"]
    log = tmp_path / "worker.log"
    with log.open("w") as stderr:
        worker = subprocess.Popen(
            [*command, "worker", APP],
            cwd=ROOT,
            env={**os.environ, "DE_TEST_DB": str(db)},
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=stderr,
        )
        try:
            wait_for(log, "running", within=20)
            shutil.rmtree(directory)
            # Every claim now fails naming the file; the worker reports it and backs off.
            content = wait_for(log, "StorageError", within=10)
            reported = [line for line in content.splitlines() if "StorageError" in line]
            assert all(str(db) in line for line in reported), reported
            assert worker.poll() is None, "the worker died instead of backing off"
            worker.send_signal(signal.SIGTERM)
            assert worker.wait(timeout=20) == 0
        finally:
            if worker.poll() is None:
                worker.kill()
                worker.wait()
    content = log.read_text()
    assert "Traceback" not in content
    assert re.search(r"worker \S+ stopped after firing", content), content
    assert not directory.exists()  # nothing made a fresh, empty database there
