"""The layering of docs/design.md, enforced: imports only go downward.

A pure core, B job semantics (the instance kit, then the kinds), C ports, D runtime,
E adapters, F shells — each row of the table in docs/design.md is one test here:

* which package modules a layer may import (B only the port's *value* classes, each job
  kind only the kit and itself, E never B or D);
* which third-party packages it may import (below the shells, croniter only in ``_cron``,
  msgspec and cattrs only in ``_codec``; each driver only in its own adapter: sqlite3 in
  ``storage/_sqlite…``, psycopg in ``storage/_postgres…``);
* that layers A to D use no stdlib I/O module (of ``os``, only ``urandom``) and never read
  the wall clock;
* that no module imports another that (directly or not) imports it back. Imports under
  ``if TYPE_CHECKING:`` are for annotations only and take no part in this rule.
"""

from __future__ import annotations

import ast
import re
import sys
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
    B: {A, B, C},
    C: {A, C},
    D: {A, B, C, D},
    E: {A, C, E},
    F: {A, B, C, D, E, F},
}

CORE = {
    "durable_effect._exit",
    "durable_effect._interpreter",
    "durable_effect.errors",
    "durable_effect._effect",
    "durable_effect._duration",
    "durable_effect._backoff",
    "durable_effect._cron",
    "durable_effect._codec",
    "durable_effect._clock",
    "durable_effect._log",
    "durable_effect._events",
}
ADAPTERS = {"durable_effect._system_clock"}
PORT = "durable_effect.storage._port"
#: What job semantics may take from the port: its values, never the ``Storage`` itself.
PORT_VALUES = {
    "KEEP",
    "Keep",
    "AlarmChange",
    "GuardFailed",
    "Lease",
    "InstanceSnapshot",
    "InstanceWrite",
    "Acquired",
    "Claimed",
    "IndexHit",
    "MAX_INDEX_KEY",
    "MAX_SCAN_INDEXES",
}
#: The instance kit every job kind is written against (layer B, below the kinds).
KIT = {
    "durable_effect.jobs._instance",
    "durable_effect.jobs._records",
    "durable_effect.jobs._exec",
    "durable_effect.jobs._dedupe",
    "durable_effect.jobs._checks",
    "durable_effect.jobs._base",
}
KINDS = ("continuous", "debounce", "task", "workflow")

#: Third-party packages each layer may import (stdlib aside).
THIRD_PARTY: dict[str, set[str]] = {
    A: {"attrs", "returns", "typing_extensions"},
    B: {"attrs", "returns", "typing_extensions"},
    C: {"attrs", "returns", "typing_extensions"},
    D: {"attrs", "returns", "typing_extensions"},
    E: {"attrs", "returns", "typing_extensions", "psycopg", "psycopg_pool"},
}
#: The only importer of a third-party package among layers A to E, where the table names one
#: (shells import anything: the demo app declares its schemas with msgspec, as users do).
ONLY_IN = {
    "croniter": "durable_effect._cron",
    "msgspec": "durable_effect._codec",
    "cattrs": "durable_effect._codec",
}
#: Each storage driver and the modules of the one adapter that may import it (outside shells).
DRIVERS = {
    "sqlite3": "durable_effect.storage._sqlite",
    "psycopg": "durable_effect.storage._postgres",
    "psycopg_pool": "durable_effect.storage._postgres",
}
#: stdlib modules that do I/O (files, sockets, processes, databases).
STDLIB_IO = {
    "sqlite3",
    "socket",
    "ssl",
    "http",
    "urllib",
    "subprocess",
    "shutil",
    "tempfile",
    "pathlib",
    "io",
    "select",
    "selectors",
    "multiprocessing",
    "mmap",
    "signal",
    "fcntl",
}
#: What layers A to D may use of ``os`` (the rest opens files and starts processes).
OS_ALLOWED = {"urandom"}


def layer_of(module: str) -> str:
    if module in CORE:
        return A
    if module == PORT:
        return C
    if module.startswith(("durable_effect.jobs", "durable_effect.workflow")):
        return B
    if module.startswith("durable_effect._runtime"):
        return D
    if module in ADAPTERS or (module.startswith("durable_effect.storage._") and module != PORT):
        return E
    return F


def kind_of(module: str) -> str | None:
    """The job kind a B module belongs to (``None`` for the kit and the packages)."""
    if module.startswith("durable_effect.workflow"):
        return "workflow"
    last = module.rsplit(".", 1)[-1]
    for kind in KINDS:
        if last == f"_{kind}" or last.startswith(f"_{kind}_"):
            return kind
    return None


def module_name(path: Path) -> str:
    rel = path.relative_to(PACKAGE.parent).with_suffix("")
    parts = list(rel.parts)
    if parts[-1] == "__init__":
        parts.pop()
    return ".".join(parts)


def _type_checking_nodes(tree: ast.AST) -> set[int]:
    inside: set[int] = set()
    for node in ast.walk(tree):
        if isinstance(node, ast.If) and getattr(node.test, "id", None) == "TYPE_CHECKING":
            inside.update(id(child) for body in node.body for child in ast.walk(body))
    return inside


def imports_of(path: Path, *, runtime_only: bool = False) -> list[tuple[int, str]]:
    """``(line, dotted target)`` of every absolute import in ``path``."""
    tree = ast.parse(path.read_text(encoding="utf-8"))
    skip = _type_checking_nodes(tree) if runtime_only else set()
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if id(node) in skip:
            continue
        if isinstance(node, ast.Import):
            found.extend((node.lineno, a.name) for a in node.names)
        elif isinstance(node, ast.ImportFrom) and node.module and node.level == 0:
            found.extend((node.lineno, f"{node.module}.{a.name}") for a in node.names)
    return found


def package_imports(path: Path) -> list[tuple[int, str]]:
    return [(n, m) for n, m in imports_of(path) if m.startswith("durable_effect")]


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
IDS = [str(p.relative_to(PACKAGE.parent)) for p in SOURCES]


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_imports_go_downward(path: Path) -> None:
    here = module_name(path)
    mine = layer_of(here)
    bad = []
    for lineno, target in package_imports(path):
        module = resolve(target)
        theirs = layer_of(module)
        if theirs not in ALLOWED[mine]:
            bad.append(f"{path.name}:{lineno} {here} ({mine}) imports {module} ({theirs})")
        elif mine == B and module == PORT and target.rsplit(".", 1)[-1] not in PORT_VALUES:
            bad.append(f"{path.name}:{lineno} {here} (B) imports {target}: not a port value")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_job_kinds_use_the_kit_not_each_other(path: Path) -> None:
    here = module_name(path)
    if layer_of(here) != B:
        return
    mine = kind_of(here)
    bad = []
    for lineno, target in package_imports(path):
        module = resolve(target)
        if layer_of(module) != B or module in ("durable_effect.jobs", "durable_effect.workflow"):
            continue
        theirs = kind_of(module)
        if here in KIT and module not in KIT:
            bad.append(f"{path.name}:{lineno} the kit module {here} imports {module}")
        elif mine is not None and theirs is not None and theirs != mine:
            bad.append(f"{path.name}:{lineno} {here} ({mine}) imports {module} ({theirs})")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_third_party_imports_stay_in_their_layer(path: Path) -> None:
    here = module_name(path)
    mine = layer_of(here)
    bad = []
    for lineno, target in imports_of(path):
        top = target.split(".", 1)[0]
        if top in ("durable_effect", "__future__"):
            continue
        adapter = DRIVERS.get(top)
        if adapter is not None and mine != F and not here.startswith(adapter):
            bad.append(f"{path.name}:{lineno} {here} imports {top} (only {adapter}… may)")
            continue
        if top in sys.stdlib_module_names:
            if mine in (A, B, C, D) and top in STDLIB_IO:
                bad.append(f"{path.name}:{lineno} {here} ({mine}) does I/O with {target}")
            elif mine in (A, B, C, D) and top == "os" and target not in ("os", "os.urandom"):
                bad.append(f"{path.name}:{lineno} {here} ({mine}) imports {target}")
            continue
        only = ONLY_IN.get(top)
        if only is not None and mine != F:
            if here != only:
                bad.append(f"{path.name}:{lineno} {here} imports {top} (only {only} may)")
            continue
        if mine != F and top not in THIRD_PARTY[mine]:
            bad.append(f"{path.name}:{lineno} {here} ({mine}) imports {top}")
    assert not bad, "\n".join(bad)


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
def test_below_the_adapters_os_gives_only_randomness(path: Path) -> None:
    here = module_name(path)
    if layer_of(here) not in (A, B, C, D):
        return
    tree = ast.parse(path.read_text(encoding="utf-8"))
    used = [
        f"{path.name}:{node.lineno} os.{node.attr}"
        for node in ast.walk(tree)
        if isinstance(node, ast.Attribute)
        and isinstance(node.value, ast.Name)
        and node.value.id == "os"
        and node.attr not in OS_ALLOWED
    ]
    assert not used, "\n".join(used)


FORBIDDEN = re.compile(
    r"\bimport sqlite3\b|\bimport psycopg\b|\bfrom psycopg\b|\btime\.time\(|"
    r"\bdatetime\.now\(|\bdatetime\.utcnow\(|\btime\.monotonic\("
)


@pytest.mark.parametrize("path", SOURCES, ids=IDS)
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


def _runtime_graph() -> dict[str, set[str]]:
    graph: dict[str, set[str]] = {}
    for path in SOURCES:
        here = module_name(path)
        targets = {
            resolve(t) for _, t in imports_of(path, runtime_only=True) if t.startswith("durable_")
        }
        graph[here] = {t for t in targets if t != here}
    return graph


def _cycles(graph: dict[str, set[str]]) -> list[list[str]]:
    """The strongly connected components of more than one module (Tarjan, iterative)."""
    index: dict[str, int] = {}
    low: dict[str, int] = {}
    stack: list[str] = []
    on_stack: set[str] = set()
    found: list[list[str]] = []
    for root, children_of_root in graph.items():
        if root in index:
            continue
        work = [(root, iter(sorted(children_of_root)))]
        index[root] = low[root] = len(index)
        stack.append(root)
        on_stack.add(root)
        while work:
            node, children = work[-1]
            child = next(children, None)
            if child is not None:
                if child not in graph:
                    continue
                if child not in index:
                    index[child] = low[child] = len(index)
                    stack.append(child)
                    on_stack.add(child)
                    work.append((child, iter(sorted(graph[child]))))
                elif child in on_stack:
                    low[node] = min(low[node], index[child])
                continue
            work.pop()
            if work:
                parent = work[-1][0]
                low[parent] = min(low[parent], low[node])
            if low[node] == index[node]:
                component = []
                while True:
                    member = stack.pop()
                    on_stack.discard(member)
                    component.append(member)
                    if member == node:
                        break
                if len(component) > 1:
                    found.append(sorted(component))
    return found


def test_no_module_imports_itself_back() -> None:
    assert _cycles(_runtime_graph()) == []


def test_the_cycle_check_sees_a_cycle() -> None:
    assert _cycles({"a": {"b"}, "b": {"c"}, "c": {"a"}, "d": {"a"}}) == [["a", "b", "c"]]


def test_layer_map_knows_the_core() -> None:
    assert layer_of("durable_effect._effect") == A
    assert layer_of("durable_effect._interpreter") == A
    assert layer_of("durable_effect.storage._sqlite") == E
    assert layer_of("durable_effect.storage._port") == C
    assert layer_of("durable_effect._runtime._engine") == D
    assert layer_of("durable_effect.jobs._continuous") == B
    assert layer_of("durable_effect._worker") == F
    assert kind_of("durable_effect.jobs._task_runner") == "task"
    assert kind_of("durable_effect.jobs._records") is None
    assert kind_of("durable_effect.workflow._driver") == "workflow"
