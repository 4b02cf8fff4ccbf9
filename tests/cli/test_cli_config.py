"""SPEC 10.2: ``--version``, ``python -m durable_effect``, ``DURABLE_EFFECT_STORAGE``, help
text for every option, and Ctrl-C ending any command quietly."""

from __future__ import annotations

import argparse
import json
import signal
import sys
from pathlib import Path

import pytest

import durable_effect
from durable_effect.cli._parser import build_parser
from tests.cli.runner import ROOT, cli, spawn

pytestmark = pytest.mark.live

APP = "tests.cli.sample_app:jobs"


def test_version_is_the_package_version() -> None:
    from importlib.metadata import version

    assert durable_effect.__version__ == version("durable_effect")
    shown = cli(None, "--version")
    assert shown.returncode == 0
    assert shown.stdout == f"durable-effect {durable_effect.__version__}\n"


def test_python_dash_m_durable_effect_is_the_same_cli(tmp_path: Path) -> None:
    module = [sys.executable, "-m", "durable_effect"]
    assert cli(None, "--version", command=module).stdout == cli(None, "--version").stdout
    db = tmp_path / "m.db"
    started = cli(db, "start", APP, "heartbeat", "a", "--input", "{}", "--json", command=module)
    assert started.returncode == 0, started.stderr
    assert json.loads(started.stdout)["created"] is True


def test_storage_comes_from_the_environment_unless_given(tmp_path: Path) -> None:
    from_env = tmp_path / "env.db"
    given = tmp_path / "given.db"
    env = {"DURABLE_EFFECT_STORAGE": f"sqlite:///{from_env}"}
    migrated = cli(None, "migrate", "--json", env=env, cwd=tmp_path)
    assert json.loads(migrated.stdout) == {
        "migrated": True,
        "storage": "sqlite",
        "url": f"sqlite:///{from_env}",
    }
    assert from_env.exists()
    override = cli(None, "migrate", "--storage", f"sqlite:///{given}", env=env, cwd=tmp_path)
    assert override.returncode == 0, override.stderr
    assert given.exists()
    default = cli(None, "migrate", cwd=tmp_path)  # neither: durable_effect.db here
    assert default.returncode == 0, default.stderr
    assert (tmp_path / "durable_effect.db").exists()


def test_an_app_made_without_storage_uses_the_environment(tmp_path: Path) -> None:
    (tmp_path / "envapp.py").write_text(
        "from durable_effect.cli._demo import heartbeat\n"
        "from durable_effect import create_durable_jobs\n"
        "jobs = create_durable_jobs({'heartbeat': heartbeat})\n"
    )
    db = tmp_path / "from-env.db"
    env = {"DURABLE_EFFECT_STORAGE": f"sqlite:///{db}", "PYTHONPATH": str(ROOT)}
    started = cli(
        None, "start", "envapp:jobs", "heartbeat", "a", "--input", "{}", env=env, cwd=tmp_path
    )
    assert started.returncode == 0, started.stderr
    assert db.exists()
    assert not (tmp_path / "durable_effect.db").exists()


def _parsers(parser: argparse.ArgumentParser) -> list[tuple[str, argparse.ArgumentParser]]:
    found = [(parser.prog, parser)]
    for action in parser._actions:
        if isinstance(action, argparse._SubParsersAction):
            for sub in action.choices.values():
                found.extend(_parsers(sub))
    return found


def test_every_command_and_option_has_help() -> None:
    missing = [
        f"{prog}: {action.option_strings or action.dest}"
        for prog, parser in _parsers(build_parser())
        for action in parser._actions
        if not isinstance(action, argparse._SubParsersAction | argparse._HelpAction)
        and not (action.help or "").strip()
    ]
    assert missing == []
    commands = [prog for prog, _ in _parsers(build_parser())]
    assert "durable-effect runs show" in commands
    assert "durable-effect migrate" in commands
    for args in (("runs", "--help"), ("migrate", "--help"), ("runs", "list", "--help")):
        shown = cli(None, *args)
        assert shown.returncode == 0
        assert "usage: durable-effect" in shown.stdout
    assert "--log-format {text,json}" in cli(None, "worker", "--help").stdout


def test_ctrl_c_ends_a_command_quietly(tmp_path: Path) -> None:
    db = tmp_path / "watch.db"
    trig = cli(
        db, "runs", "trigger", APP, "importCsv", "--input", '{"filename": "a", "rows": 5}', "--json"
    )
    run_id = json.loads(trig.stdout)["run_id"]
    watcher = spawn(db, "runs", "watch", APP, "importCsv", run_id)
    try:
        assert watcher.stdout is not None
        assert watcher.stdout.readline().startswith("pending")  # it is watching: interrupt it
        watcher.send_signal(signal.SIGINT)
        _, err = watcher.communicate(timeout=30)
    finally:
        watcher.kill()
    assert watcher.returncode == 130
    assert err == "durable-effect: interrupted\n"
