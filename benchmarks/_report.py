"""What the web and feed benchmarks share: writing their JSON report under ``results/``."""

from __future__ import annotations

import json
import os
import platform
from pathlib import Path

RESULTS = Path(__file__).resolve().parent / "results"


def write_report(name: str, *, quick: bool, rows: list[dict[str, object]]) -> Path:
    """``benchmarks/results/{name}.json``: the rows, the Python version, the machine load."""
    RESULTS.mkdir(parents=True, exist_ok=True)
    report = {
        "quick": quick,
        "python": platform.python_version(),
        "load": os.getloadavg(),
        "rows": rows,
    }
    path = RESULTS / f"{name}.json"
    path.write_text(json.dumps(report, indent=2))
    return path
