"""Where the PostgreSQL test server comes from, and what happens when there is none.

``make test`` on a fresh machine: the ``pgserver`` wheel (dev extra) brings the binaries,
Debian's package is the fallback, and with neither the run stops before any test with the
fix in one line — not one error per PostgreSQL test.
"""

from __future__ import annotations

import os
import platform
import subprocess
import sys
from pathlib import Path

import pytest

from tests.pg_harness import MISSING_SERVER, find_bindir, pgserver_bindir

ROOT = Path(__file__).resolve().parent.parent
#: Where pyproject's dev extra installs pgserver (where a wheel of it exists).
WHEEL_PLATFORM = (sys.platform == "linux" and platform.machine() == "x86_64") or (
    sys.platform == "darwin"
)


def test_the_pgserver_wheel_is_found_first(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("DURABLE_EFFECT_PG_BIN", raising=False)
    bundled = pgserver_bindir()
    if not WHEEL_PLATFORM:  # no pgserver wheel here: the harness uses the system's server
        assert bundled is None
        return
    assert bundled is not None, "the dev extra installs pgserver on this platform"
    assert (bundled / "initdb").exists()
    assert find_bindir() == bundled


@pytest.mark.live
def test_without_a_server_the_run_stops_once_before_any_test(tmp_path: Path) -> None:
    env = {k: v for k, v in os.environ.items() if not k.startswith("DURABLE_EFFECT_")}
    env["DURABLE_EFFECT_PG_BIN"] = str(tmp_path)  # nothing there: as if no server anywhere
    env.pop("CI", None)
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "pytest",
            "-p",
            "no:cacheprovider",
            "tests/storage/test_postgres.py",
            "tests/storage/test_postgres_contract.py",
            "tests/core/test_codec.py",
        ],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert result.returncode == 4, result.stdout[-2000:]
    out = result.stdout + result.stderr
    assert "no tests ran" in out
    [line] = [ln for ln in out.splitlines() if "the PostgreSQL tests cannot run" in ln]
    assert MISSING_SERVER in line
    assert "pip install pgserver" in line
    assert "FAILED" not in out
    assert "ERROR " not in out
