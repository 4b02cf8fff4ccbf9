"""The README's example runs as written (in a fresh directory, on a real SQLite file)."""

from __future__ import annotations

import re
import subprocess
import sys
from pathlib import Path

README = Path(__file__).resolve().parents[1] / "README.md"


def python_blocks() -> list[str]:
    return re.findall(r"```python\n(.*?)```", README.read_text(encoding="utf-8"), flags=re.S)


def test_readme_has_one_python_example() -> None:
    assert len(python_blocks()) == 1


def test_readme_example_runs_and_resumes(tmp_path: Path) -> None:
    script = tmp_path / "example.py"
    script.write_text(python_blocks()[0], encoding="utf-8")
    first = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert first.returncode == 0, first.stderr
    assert first.stdout.strip() == "created"
    again = subprocess.run(
        [sys.executable, str(script)], cwd=tmp_path, capture_output=True, text=True, check=False
    )
    assert again.returncode == 0, again.stderr
    assert again.stdout.strip() == "resumed"
    assert (tmp_path / "jobs.db").exists()
