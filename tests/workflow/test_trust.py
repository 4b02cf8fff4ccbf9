"""Nothing read from storage is imported, evaluated or unpickled (SPEC §10.1, issue 11 item 1).

A stored type name or error tag resolves only against classes the running code knows. The
hostile rows planted here name ``this:s`` — the standard library module ``this`` prints the
Zen of Python when it is imported — in every place a type or a tag is stored: a completed
step's type, the output's type, the failure's tag. ``get_run``, ``steps``, ``wait_output``,
a replay by a worker and the CLI's ``runs show`` read them; none imports ``this``: reads give
plain JSON builtins, the replay fails the run naming the step.

The other half is predictability: a class a fresh worker could not know (one defined in a
script's ``__main__``) is refused when its step is first recorded, and a run recorded by a
script replays in a worker the CLI starts.
"""

from __future__ import annotations

import ast
import asyncio
import json
import os
import signal
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import attrs
import pytest

from durable_effect import Effect, Gen, RunFailedError
from durable_effect.testing import TestRuntime
from durable_effect.workflow import Step, Workflow
from durable_effect.workflow._failures import ErrorRec
from durable_effect.workflow._records import META, STEP_CODEC, step_key
from tests.workflow._support import STORAGES, Order, plant, runtime, snapshot

ROOT = Path(__file__).resolve().parents[2]
PACKAGE = ROOT / "durable_effect"
HOSTILE = "this:s"  # importing ``this`` prints the Zen of Python
ZEN = "Beautiful is better than ugly"
SCRIPT = Path(sys.executable).with_name("durable-effect")


@pytest.fixture
def no_this(capsys: pytest.CaptureFixture[str]) -> Iterator[None]:
    """Fails the test if the module ``this`` gets imported (it is forgotten first)."""
    sys.modules.pop("this", None)
    yield
    out = capsys.readouterr()
    assert "this" not in sys.modules, "a stored type name was imported"
    assert ZEN not in out.out + out.err


@Effect.gen
def two_steps(step: Step, order: Order) -> Gen[object, Exception]:
    a = yield from step.run("a", Effect.succeed({"n": order.qty}))
    yield from step.sleep("nap", "1 minute")
    b = yield from step.run("b", Effect.succeed([a]))
    return b


async def _plant_hostile_names(rt: TestRuntime, iid: str) -> None:
    """Make step ``a`` and the output name ``this:s`` as their types."""
    records = (await snapshot(rt, iid)).records
    rec = STEP_CODEC.decode(records[step_key(0)])
    assert rec.name == "a"
    puts = {step_key(0): STEP_CODEC.encode(attrs.evolve(rec, output_type=HOSTILE))}
    meta = META.codec.decode(records["meta"])
    if meta.status == "completed":
        puts["meta"] = META.codec.encode(attrs.evolve(meta, output_type=HOSTILE))
    await plant(rt, iid, puts)


@pytest.mark.parametrize("kind", STORAGES)
@pytest.mark.usefixtures("no_this")
async def test_reads_of_a_hostile_row_import_nothing(kind: str, tmp_path: Path) -> None:
    wf = Workflow.make(Order, two_steps)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o", qty=3))).run_id
        await rt.advance("1 minute")
        assert (await h.get_run(rid)).status == "completed"
        await _plant_hostile_names(rt, f"workflow:w:{rid}")
        run = await h.get_run(rid)
        assert run.output == [{"n": 3}]  # plain JSON builtins: the type is unknown
        steps = await h.steps(rid)
        assert [s.output for s in steps] == [{"n": 3}, None, [{"n": 3}]]
        assert await h.wait_output(rid) == [{"n": 3}]


@pytest.mark.parametrize("kind", STORAGES)
@pytest.mark.usefixtures("no_this")
async def test_a_replay_that_needs_a_hostile_type_fails_naming_the_step(
    kind: str, tmp_path: Path
) -> None:
    wf = Workflow.make(Order, two_steps)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await rt.run_until_idle()
        assert (await h.get_run(rid)).status == "sleeping"
        await _plant_hostile_names(rt, f"workflow:w:{rid}")
        await rt.advance("1 minute")  # the replay of step a needs its type
        run = await h.get_run(rid)
        assert run.status == "failed"
        assert run.error == (
            "TypeError: step 'a' cannot be replayed: the recorded value has type 'this:s', "
            "which this code does not declare (pass schema= to the step, or declare the "
            "type on the workflow)"
        )
        with pytest.raises(RunFailedError):
            await h.wait_output(rid)


@pytest.mark.parametrize("kind", STORAGES)
@pytest.mark.usefixtures("no_this")
async def test_a_hostile_error_tag_reads_as_run_failed_error(kind: str, tmp_path: Path) -> None:
    @Effect.gen
    def fails(step: Step, order: Order) -> Gen[int, Exception]:
        return (yield from step.run("a", Effect.fail(RuntimeError("no"))))

    wf = Workflow.make(Order, fails)
    async with runtime(kind, tmp_path, w=wf) as rt:
        h = rt.client.workflow(wf)
        rid = (await h.trigger(Order(order_id="o"))).run_id
        await rt.run_until_idle()
        iid = f"workflow:w:{rid}"
        meta = META.codec.decode((await snapshot(rt, iid)).records["meta"])
        tag = ErrorRec(
            tag=HOSTILE, text="x: y", fields={"a": 1}, last=ErrorRec(tag="os:system", text="z")
        )
        await plant(rt, iid, {"meta": META.codec.encode(attrs.evolve(meta, failure=tag))})
        with pytest.raises(RunFailedError) as info:
            await h.wait_output(rid)
        assert info.value == RunFailedError(run_id=rid, error="x: y")


def test_nothing_in_the_package_imports_or_evaluates_what_it_reads() -> None:
    """Grep, by syntax tree: no ``pickle``/``marshal``/``shelve``, no ``eval``/``exec``/
    ``__import__``, and ``import_module`` only of a constant or of the CLI's own argument."""
    banned_modules = {"pickle", "cPickle", "marshal", "shelve", "dill", "cloudpickle"}
    dynamic: list[str] = []
    for path in sorted(PACKAGE.rglob("*.py")):
        tree = ast.parse(path.read_text(), filename=str(path))
        where = path.relative_to(ROOT)
        for node in ast.walk(tree):
            if isinstance(node, ast.Import | ast.ImportFrom):
                names = [a.name for a in node.names] if isinstance(node, ast.Import) else []
                module = node.module if isinstance(node, ast.ImportFrom) else None
                for name in [*names, module or ""]:
                    assert name.split(".")[0] not in banned_modules, f"{where}: imports {name}"
            if isinstance(node, ast.Call):
                func = node.func
                name = func.id if isinstance(func, ast.Name) else getattr(func, "attr", "")
                if isinstance(func, ast.Name):  # the builtins (``re.compile`` is fine)
                    assert name not in {"eval", "exec", "__import__", "compile"}, f"{where}: {name}"
                if name == "import_module":
                    arg = node.args[0]
                    if not isinstance(arg, ast.Constant):
                        dynamic.append(f"{where}:{ast.unparse(arg)}")
    # The one dynamic import: the CLI loading the APP named on its command line.
    assert dynamic == ["durable_effect/cli/_app.py:module_name"]


# -- processes: a script records, the CLI replays and shows ------------------------------------


def _cli(db: Path, *args: str, timeout: float = 60) -> subprocess.CompletedProcess[str]:
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "durable_effect.cli"]
    env = {**os.environ, "DE_TRUST_DB": str(db)}
    return subprocess.run(
        [*command, *args],
        cwd=ROOT,
        env=env,
        capture_output=True,
        text=True,
        timeout=timeout,
        check=False,
    )


@pytest.mark.live
async def test_a_run_recorded_by_a_script_replays_in_a_worker_started_by_the_cli(
    tmp_path: Path,
) -> None:
    db = tmp_path / "trust.db"
    env = {**os.environ, "DE_TRUST_DB": str(db)}
    script = subprocess.run(
        [sys.executable, str(ROOT / "tests" / "workflow" / "_trust_script.py")],
        cwd=tmp_path,  # not the repository: the script's own directory is its sys.path[0]
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
        check=True,
    )
    seen = json.loads(script.stdout.strip().splitlines()[-1])
    # A class of the script's __main__ without schema=: refused when first recorded.
    assert seen["local"]["status"] == "failed"
    assert "a value of type Local cannot be stored without a schema" in seen["local"]["error"]
    assert "pass schema=Local" in seen["local"]["error"]
    assert seen["kept"] == 2  # with schema=, the same class is fine
    ship = seen["ship"]
    assert (ship["status"], ship["steps"]) == ("sleeping", 1)
    command = [str(SCRIPT)] if SCRIPT.exists() else [sys.executable, "-m", "durable_effect.cli"]
    worker = await asyncio.create_subprocess_exec(
        *command,
        "worker",
        "tests.workflow._trust_app:jobs",
        cwd=ROOT,
        env=env,
        stderr=asyncio.subprocess.DEVNULL,
    )
    body: dict[str, Any] = {}
    try:
        for _ in range(300):
            shown = _cli(
                db,
                "runs",
                "show",
                "tests.workflow._trust_app:jobs",
                "ship",
                ship["run_id"],
                "--json",
            )
            assert shown.returncode == 0, shown.stderr
            body = json.loads(shown.stdout)
            if body["run"]["status"] in ("completed", "failed"):
                break
            await asyncio.sleep(0.1)
    finally:
        worker.send_signal(signal.SIGTERM)
        await asyncio.wait_for(worker.wait(), timeout=30)
    assert (body["run"]["status"], body["run"]["output"]) == ("completed", "7 kg")
    assert [s["output"] for s in body["steps"]] == [{"weight": 7}, None, "7 kg"]


@pytest.mark.live
def test_runs_show_of_a_hostile_row_imports_nothing(tmp_path: Path) -> None:
    db = tmp_path / "trust.db"
    app = "tests.workflow._trust_app:jobs"

    async def run_and_plant() -> str:
        from tests.workflow._trust_app import NOTE

        async with TestRuntime({"note": NOTE}, storage=f"sqlite:///{db}") as rt:
            rid = (await rt.client.workflow(NOTE).trigger("hello")).run_id
            await rt.run_until_idle()
            await _plant_hostile_names(rt, f"workflow:note:{rid}")
        return rid

    rid = asyncio.run(run_and_plant())
    probe = (  # the CLI, in a process that reports whether it imported ``this``
        "import sys, runpy; sys.argv = ['durable-effect', *sys.argv[1:]];\n"
        "try:\n    runpy.run_module('durable_effect.cli', run_name='__main__')\n"
        "except SystemExit as e:\n    code = e.code\n"
        "print('IMPORTED' if 'this' in sys.modules else 'CLEAN', file=sys.stderr)\n"
        "sys.exit(code)\n"
    )
    shown = subprocess.run(
        [sys.executable, "-c", probe, "runs", "show", app, "note", rid, "--json"],
        cwd=ROOT,
        env={**os.environ, "DE_TRUST_DB": str(db)},
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert shown.returncode == 0, shown.stderr
    assert shown.stderr.strip().endswith("CLEAN")
    assert ZEN not in shown.stdout
    body = json.loads(shown.stdout)
    assert body["run"]["output"] == "hello"
    assert [s["output"] for s in body["steps"]] == ["hello"]
