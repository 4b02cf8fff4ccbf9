"""Typing tests: mypy (strict, the project's mypy.ini) over ``tests/typing/cases``.

mypy runs once over every case file; each file is then one test:

* ``reveal_*.py``: every ``reveal_type(expr)  # R: <type>`` line must reveal that type.
  Module qualifiers are dropped before comparing (``durable_effect._effect.Effect`` is
  ``Effect``) unless the expectation itself is qualified, which then must match exactly;
  ``Literal['a'] | Literal['b']`` and ``Literal['a', 'b']`` are the same.
  A reveal file must have no errors.
* ``reject_*.py``: mypy must report an error on exactly the lines marked
  ``# E: <code>[, <code>...]``, with exactly those error codes — no more, no fewer.

The case files are excluded from the normal mypy run (``exclude`` in mypy.ini).
"""

from __future__ import annotations

import re
import subprocess
import sys
from collections import defaultdict
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
CASES = Path(__file__).resolve().parent / "cases"
CASE_FILES = sorted(CASES.glob("reveal_*.py")) + sorted(CASES.glob("reject_*.py"))

_LINE = re.compile(r"^(?P<path>[^:]+\.py):(?P<line>\d+): (?P<kind>error|note): (?P<text>.*)$")
_CODE = re.compile(r"\s+\[(?P<code>[a-z0-9-]+)\]$")
_REVEALED = re.compile(r'^Revealed type is "(?P<type>.*)"$')
_QUALIFIER = re.compile(r"\b(?:[A-Za-z_]\w*\.)+(?=[A-Za-z_])")
_LITERALS = re.compile(r"Literal\[([^\[\]]*)\] \| Literal\[([^\[\]]*)\]")
_REVEAL_MARK = re.compile(r"#\s*R:\s*(?P<type>.+?)\s*$")
_ERROR_MARK = re.compile(r"#\s*E:\s*(?P<codes>[a-z0-9, -]+?)\s*$")


class MypyReport:
    """mypy's output, grouped by case file and line."""

    def __init__(self, output: str) -> None:
        self.output = output
        self.revealed: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
        self.errors: dict[str, dict[int, list[str]]] = defaultdict(lambda: defaultdict(list))
        for raw in output.splitlines():
            match = _LINE.match(raw)
            if match is None:
                continue
            name = Path(match["path"]).name
            line = int(match["line"])
            text = match["text"]
            if match["kind"] == "note":
                revealed = _REVEALED.match(text)
                if revealed is not None:
                    self.revealed[name][line].append(revealed["type"])
                continue
            code = _CODE.search(text)
            self.errors[name][line].append(
                f"{code['code'] if code else '?'}: {_CODE.sub('', text)}"
            )


@pytest.fixture(scope="module")
def mypy_report() -> MypyReport:
    """Run mypy once over every case file (using the project's cache)."""
    command = [
        sys.executable,
        "-m",
        "mypy",
        "--config-file",
        str(ROOT / "mypy.ini"),
        "--no-error-summary",
        "--no-pretty",
        "--no-color-output",
        "--show-error-codes",
        "--hide-error-context",
        *(str(path.relative_to(ROOT)) for path in CASE_FILES),
    ]
    done = subprocess.run(
        command, cwd=ROOT, capture_output=True, text=True, timeout=300, check=False
    )
    if done.returncode not in (0, 1) or done.stderr.strip():
        pytest.fail(f"mypy did not run (exit {done.returncode}):\n{done.stderr}\n{done.stdout}")
    return MypyReport(done.stdout)


def _merge_literals(type_text: str) -> str:
    """``Literal['a'] | Literal['b']`` (how mypy prints some unions) as ``Literal['a', 'b']``."""
    while True:
        merged = _LITERALS.sub(r"Literal[\1, \2]", type_text)
        if merged == type_text:
            return merged
        type_text = merged


def _normalise(type_text: str) -> str:
    return _merge_literals(_QUALIFIER.sub("", type_text))


def _marks(path: Path, pattern: re.Pattern[str]) -> dict[int, str]:
    found: dict[int, str] = {}
    for number, line in enumerate(path.read_text().splitlines(), start=1):
        if line.lstrip().startswith("#"):
            continue  # a comment line, not a mark after code
        match = pattern.search(line)
        if match is not None:
            found[number] = match.group(1)
    return found


def _reveal_problems(path: Path, report: MypyReport) -> list[str]:
    name = path.name
    expected = _marks(path, _REVEAL_MARK)
    revealed = report.revealed.get(name, {})
    problems: list[str] = []
    for line, want in sorted(expected.items()):
        got = revealed.get(line, [])
        if len(got) != 1:
            problems.append(f"{name}:{line}: expected one revealed type {want!r}, got {got}")
            continue
        actual = _merge_literals(got[0]) if "." in want else _normalise(got[0])
        if actual != _merge_literals(want):
            problems.append(f"{name}:{line}:\n    expected: {want}\n    revealed: {actual}")
    for line in sorted(set(revealed) - set(expected)):
        problems.append(f"{name}:{line}: reveal_type without a '# R:' mark: {revealed[line]}")
    for line, messages in sorted(report.errors.get(name, {}).items()):
        problems.extend(f"{name}:{line}: unexpected error {m}" for m in messages)
    return problems


def _reject_problems(path: Path, report: MypyReport) -> list[str]:
    name = path.name
    expected = {
        line: sorted(code.strip() for code in codes.split(",") if code.strip())
        for line, codes in _marks(path, _ERROR_MARK).items()
    }
    reported = report.errors.get(name, {})
    problems: list[str] = []
    for line in sorted(set(expected) | set(reported)):
        want = expected.get(line, [])
        messages = reported.get(line, [])
        got = sorted(message.split(":", 1)[0] for message in messages)
        if got != want:
            detail = "\n    ".join(messages) or "(no error reported)"
            wanted = want or "no error"
            problems.append(f"{name}:{line}: expected {wanted}, got {got}\n    {detail}")
    return problems


def test_there_are_cases() -> None:
    names = [path.name for path in CASE_FILES]
    assert any(n.startswith("reveal_") for n in names)
    assert any(n.startswith("reject_") for n in names)


@pytest.mark.parametrize("path", CASE_FILES, ids=lambda p: p.name)
def test_case(path: Path, mypy_report: MypyReport) -> None:
    if path.name.startswith("reveal_"):
        assert _marks(path, _REVEAL_MARK), f"{path.name} has no '# R:' marks"
        problems = _reveal_problems(path, mypy_report)
    else:
        assert _marks(path, _ERROR_MARK), f"{path.name} has no '# E:' marks"
        problems = _reject_problems(path, mypy_report)
    assert not problems, "mypy disagrees with the case file:\n" + "\n".join(problems)


def test_at_least_five_distinct_rejections() -> None:
    codes: set[tuple[str, str]] = set()
    for path in CASE_FILES:
        if path.name.startswith("reject_"):
            for line, marked in _marks(path, _ERROR_MARK).items():
                codes.add((f"{path.name}:{line}", marked))
    assert len(codes) >= 5
    assert {"misc", "return-value", "arg-type", "type-var", "unused-awaitable"} <= {
        code.strip() for _, marked in codes for code in marked.split(",")
    }
