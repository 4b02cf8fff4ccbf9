"""The app the CLI tests drive: the demo's jobs on the SQLite file named by $DE_TEST_DB."""

from __future__ import annotations

import os

from durable_effect.cli._demo import build_demo_jobs

jobs = build_demo_jobs(os.environ.get("DE_TEST_DB", ".demo/cli-sample.db"))
