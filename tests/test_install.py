"""What ``pip install durable_effect`` gives, checked in a fresh virtualenv without pytest.

The venv (made with ``python -m venv``, no pip) sees this checkout and the installed
distributions of the package's runtime requirements (found through their metadata, linked
into a directory of its own) — and nothing else: no pytest, no hypothesis, no dev tools.
"""

from __future__ import annotations

import os
import subprocess
import sys
import venv
from importlib.metadata import Distribution, distribution
from pathlib import Path

import pytest
from packaging.requirements import Requirement

pytestmark = pytest.mark.live

ROOT = Path(__file__).resolve().parent.parent


def _closure(name: str) -> list[Distribution]:
    """``name``'s distribution and its runtime requirements (no extras), recursively."""
    seen: dict[str, Distribution] = {}
    todo = [name]
    while todo:
        current = todo.pop()
        dist = distribution(current)
        key = dist.metadata["Name"].lower()
        if key in seen:
            continue
        seen[key] = dist
        for text in dist.requires or []:
            requirement = Requirement(text)
            if requirement.marker is None or requirement.marker.evaluate({"extra": ""}):
                todo.append(requirement.name)
    seen.pop("durable_effect", None)  # the checkout itself is put on the path
    return list(seen.values())


def _link_distributions(target: Path) -> None:
    for dist in _closure("durable_effect"):
        for file in dist.files or []:
            top = file.parts[0]
            if top.endswith(".pth") or top == ".." or top.startswith("__pycache__"):
                continue
            source = Path(str(dist.locate_file(top)))
            link = target / top
            if source.exists() and not link.exists():
                link.symlink_to(source)


@pytest.fixture(scope="module")
def bare_python(tmp_path_factory: pytest.TempPathFactory) -> Path:
    base = tmp_path_factory.mktemp("bare-venv")
    venv.EnvBuilder(with_pip=False).create(base / "venv")
    deps = base / "deps"
    deps.mkdir()
    _link_distributions(deps)
    python = base / "venv" / "bin" / "python"
    purelib = subprocess.run(
        [str(python), "-c", "import sysconfig; print(sysconfig.get_paths()['purelib'])"],
        capture_output=True,
        text=True,
        check=True,
    ).stdout.strip()
    Path(purelib, "durable_effect_test.pth").write_text(f"{ROOT}\n{deps}\n")
    return python


def _run(python: Path, code: str) -> subprocess.CompletedProcess[str]:
    return _python(python, "-c", code)


def _python(python: Path, *args: str) -> subprocess.CompletedProcess[str]:
    env = {
        k: v
        for k, v in os.environ.items()
        if not k.startswith("PYTHON") and k != "DURABLE_EFFECT_STORAGE"
    }
    return subprocess.run(
        [str(python), *args],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
        cwd=ROOT.parent,
        env=env,
    )


def test_the_bare_venv_really_has_no_pytest(bare_python: Path) -> None:
    result = _run(bare_python, "import pytest")
    assert result.returncode == 1
    assert "ModuleNotFoundError: No module named 'pytest'" in result.stderr
    assert sys.prefix not in _run(bare_python, "import sys; print(sys.prefix)").stdout


def test_the_testing_helpers_import_and_run_without_pytest(bare_python: Path) -> None:
    program = """
import asyncio
import msgspec
from durable_effect import Continuous, ContinuousContext, Effect, Gen, ValidationError
from durable_effect.testing import TestClock, TestRuntime

class Counter(msgspec.Struct):
    ticks: int = 0

@Effect.gen
def tick(ctx: ContinuousContext[Counter]) -> Gen[None, ValidationError]:
    state = yield from ctx.state
    yield from ctx.set_state(Counter(ticks=state.ticks + 1))

counter = Continuous.make(Counter, Continuous.every("5 minutes"), tick)

async def main() -> None:
    async with TestRuntime({"counter": counter}) as rt:
        await rt.client.continuous(counter).start(id="a", input=Counter())
        fired = await rt.advance("1 hour")
        print(fired, (await rt.client.continuous(counter).get_state("a")).state)

asyncio.run(main())
"""
    result = _run(bare_python, program)
    assert result.returncode == 0, result.stderr
    assert result.stdout == "12 Counter(ticks=13)\n"


def test_the_contract_suite_says_it_needs_pytest(bare_python: Path) -> None:
    result = _run(bare_python, "import durable_effect.testing.contract")
    assert result.returncode == 1
    assert "No module named 'pytest'" in result.stderr


def test_postgresql_without_its_driver_is_one_line_naming_the_url(bare_python: Path) -> None:
    url = "postgresql://app:s3cret-pw@127.0.0.1:1/jobs"
    result = _python(bare_python, "-m", "durable_effect", "migrate", "--storage", url)
    assert result.returncode == 4, result.stderr
    assert "s3cret-pw" not in result.stderr
    assert result.stdout == ""
    assert result.stderr.count("\n") == 1
    assert result.stderr.startswith(
        "durable-effect: cannot open storage postgresql://app:***@127.0.0.1:1/jobs: "
        "PostgresStorage needs psycopg 3: pip install 'durable_effect[postgres]'"
    )
