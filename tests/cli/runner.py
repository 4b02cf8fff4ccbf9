"""Running the real ``durable-effect`` entry point in a subprocess, for the CLI tests."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Mapping
from pathlib import Path

ROOT = Path(__file__).resolve().parents[2]
SCRIPT = Path(sys.executable).with_name("durable-effect")
#: The console script when installed, else ``python -m durable_effect``.
COMMAND = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "durable_effect"]


def environment(db: Path | None = None, extra: Mapping[str, str] | None = None) -> dict[str, str]:
    """The test process's environment, 100 columns wide, without a storage override."""
    env = {k: v for k, v in os.environ.items() if k != "DURABLE_EFFECT_STORAGE"}
    env["COLUMNS"] = "100"
    if db is not None:
        env["DE_TEST_DB"] = str(db)
    env.update(extra or {})
    return env


def spawn(db: Path | None, *args: str, cwd: Path = ROOT) -> subprocess.Popen[str]:
    """Start one CLI command (stdout and stderr piped, text) for a test to read and stop."""
    return subprocess.Popen(
        [*COMMAND, *args],
        cwd=cwd,
        env=environment(db),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def cli(
    db: Path | None,
    *args: str,
    env: Mapping[str, str] | None = None,
    cwd: Path = ROOT,
    command: list[str] | None = None,
) -> subprocess.CompletedProcess[str]:
    """Run one CLI command to its end (60 s at most)."""
    return subprocess.run(
        [*(command or COMMAND), *args],
        cwd=cwd,
        env=environment(db, env),
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
