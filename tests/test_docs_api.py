"""docs/api.md documents every public name: each name in a public module's ``__all__`` must
have an entry in that module's section of the page.

An entry is a heading (``### `Name` ``), a table row whose first cell starts with the name
(`` | `Name` | ... ``, `` | `Name(...)` | ... ``) or a list item that starts with it
(`` - `Name` — ... ``). A module's section runs from its ``## `module` `` heading to the next
``## `` heading. So a new public name without documentation fails here, naming it.
"""

from __future__ import annotations

import importlib
import re
from pathlib import Path

import pytest

API_MD = Path(__file__).resolve().parent.parent / "docs" / "api.md"

PUBLIC_MODULES = (
    "durable_effect",
    "durable_effect.errors",
    "durable_effect.storage",
    "durable_effect.testing",
    "durable_effect.testing.contract",
    "durable_effect.telemetry",
    "durable_effect.workflow",
    "durable_effect.cli",
    "durable_effect.web",
)

_SECTION = re.compile(r"^## `(?P<module>[\w.]+)`\s*$")
# A code span at the start of a heading, a table row or a list item; an optional module
# prefix (``durable_effect.storage.KEEP``) is dropped.
_ENTRY = re.compile(r"^(?:#{3,5} |\| |[-*] )`(?:[\w]+\.)*(?P<name>\w+)")


def _sections(text: str) -> dict[str, set[str]]:
    """Module name → the names that have an entry in its section."""
    sections: dict[str, set[str]] = {}
    current: set[str] | None = None
    in_fence = False
    for line in text.splitlines():
        if line.startswith("```"):
            in_fence = not in_fence
            continue
        if in_fence:
            continue
        if line.startswith("## "):
            match = _SECTION.match(line)
            current = sections.setdefault(match["module"], set()) if match else None
            continue
        if current is not None and (entry := _ENTRY.match(line)):
            current.add(entry["name"])
    return sections


def _public_names(module_name: str) -> list[str]:
    module = importlib.import_module(module_name)
    names = getattr(module, "__all__", None)
    assert names is not None, f"{module_name} has no __all__"
    return list(names)


@pytest.fixture(scope="module")
def documented() -> dict[str, set[str]]:
    return _sections(API_MD.read_text(encoding="utf-8"))


@pytest.mark.parametrize("module_name", PUBLIC_MODULES)
def test_every_public_name_has_an_entry(module_name: str, documented: dict[str, set[str]]) -> None:
    assert module_name in documented, f"docs/api.md has no section ## `{module_name}`"
    missing = [n for n in _public_names(module_name) if n not in documented[module_name]]
    assert not missing, (
        f"docs/api.md documents no entry for {module_name}.{', '.join(missing)}: add a "
        f"heading, table row or list item starting with `name` to its section"
    )


def test_the_parser_sees_headings_rows_and_items() -> None:
    text = "\n".join(
        [
            "## `pkg.mod`",
            "### `Alpha`",
            "| `Beta(x)` | a row |",
            "- `pkg.mod.Gamma` — an item",
            "```python",
            "### `Hidden` in a code block",
            "```",
            "## Not a module",
            "### `Delta`",
        ]
    )
    assert _sections(text) == {"pkg.mod": {"Alpha", "Beta", "Gamma"}}
