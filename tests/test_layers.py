"""The layering of docs/design.md, enforced: imports only go downward.

A pure core, C ports, B job semantics, D runtime, E adapters, F shells. Also: only adapters
and shells touch sqlite3/psycopg or read the wall clock.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

PACKAGE = Path(__file__).resolve().parent.parent / "durable_effect"

A = "A"
B = "B"
C = "C"
D = "D"
E = "E"
F = "F"

ALLOWED: dict[str, set[str]] = {
    A: {A},
    C: {A, C},
    B: {A, B, C},
    D: {A, B, C, D},
    E: {A, C, E},
    F: {A, B, C, D, E, F},
}

CORE = {
    "durable_effect.errors",
    "durable_effect._effect",
    "durable_effect._exit",
    "durable_effect._interpreter",
    "durable_effect._duration",
    "durable_effect._backoff",
    "durable_effect._cron",
    "durable_effect._codec",
    "durable_effect._clock",
    "durable_effect._log",
    "durable_effect._events",
}
ADAPTERS = {"durable_effect._system_clock"}


def layer_of(module: str) -> str:
    if module in CORE:
        return A
    if module == "durable_effect.storage._port":
        return C
    if module.startswith(("durable_effect.jobs", "durable_effect.workflow")):
        return B
    if module.startswith("durable_effect._runtime"):
        return D
    if module in ADAPTERS or (
        module.startswith("durable_effect.storage._") and module != "durable_effect.storage._port"
    ):
        return E
    return F


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def package_imports(path: Path) -> list[tuple[int, str]]:
    tree = ast.parse(path.read_text(encoding="utf-8"))
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.extend((node.lineno, f"{node.module}.{a.name}") for a in node.names)
    return [(n, m) for n, m in found if m.startswith("durable_effect")]


def resolve(target: str) -> str:
    """The deepest existing module named by an import target."""
    parts = target.split(".")
    while parts:
        candidate = PACKAGE.parent.joinpath(*parts)
        if candidate.with_suffix(".py").exists() or (candidate / "__init__.py").exists():
            return ".".join(parts)
        parts.pop()
    return target


SOURCES = sorted(PACKAGE.rglob("*.py"))


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_imports_go_downward(path: Path) -> None:
    here = module_name(path)
    mine = layer_of(here)
    bad = []
    for lineno, target in package_imports(path):
        module = resolve(target)
        theirs = layer_of(module)
        if theirs not in ALLOWED[mine]:
            bad.append(f"{path.name}:{lineno} {here} ({mine}) imports {module} ({theirs})")
    assert not bad, "\n".join(bad)


FORBIDDEN = re.compile(
    r"\bimport sqlite3\b|\bimport psycopg\b|\bfrom psycopg\b|\btime\.time\(|"
    r"\bdatetime\.now\(|\bdatetime\.utcnow\(|\btime\.monotonic\("
)


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(PACKAGE.parent)))
def test_only_adapters_and_shells_touch_drivers_and_wall_clock(path: Path) -> None:
    mine = layer_of(module_name(path))
    if mine in (E, F):
        return
    hits = [
        f"{path.name}:{n}: {line.strip()}"
        for n, line in enumerate(path.read_text(encoding="utf-8").splitlines(), 1)
        if FORBIDDEN.search(line)
    ]
    assert not hits, "\n".join(hits)


def test_layer_map_knows_the_core() -> None:
    assert layer_of("durable_effect._effect") == A
    assert layer_of("durable_effect.storage._sqlite") == E
    assert layer_of("durable_effect.storage._port") == C
    assert layer_of("durable_effect._runtime._engine") == D
    assert layer_of("durable_effect.jobs._continuous") == B
    assert layer_of("durable_effect._worker") == F
