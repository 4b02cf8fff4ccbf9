"""``durable-effect dashboard`` and the dashboard ``durable-effect demo`` serves, as processes."""

from __future__ import annotations

import asyncio
import contextlib
import os
import signal
import subprocess
import sys
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
import pytest

from durable_effect.cli import main

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.web.sample_app:jobs"


def test_another_address_without_a_token_is_refused(capsys: pytest.CaptureFixture[str]) -> None:
    env = os.environ.pop("DURABLE_EFFECT_TOKEN", None)
    try:
        code = main(["dashboard", APP, "--host", "0.0.0.0"])
    finally:
        if env is not None:
            os.environ["DURABLE_EFFECT_TOKEN"] = env
    assert code == 2
    err = capsys.readouterr().err
    assert "refusing to serve on 0.0.0.0 without a token" in err
    assert "Traceback" not in err
    assert main(["dashboard", APP, "--port", "70000"]) == 2


@contextlib.asynccontextmanager
async def process(
    *args: str, env: dict[str, str] | None = None
) -> AsyncIterator[tuple[asyncio.subprocess.Process, str]]:
    """``durable-effect ARGS`` running; its first line of output."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "durable_effect.cli",
        *args,
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    assert proc.stdout is not None
    try:
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        yield proc, line
    finally:
        if proc.returncode is None:
            proc.send_signal(signal.SIGINT)
            try:
                await asyncio.wait_for(proc.wait(), 20)
            except TimeoutError:
                proc.kill()
                await proc.wait()


@pytest.mark.live
async def test_the_dashboard_serves_with_a_token_and_audits_writes(tmp_path: Path) -> None:
    storage = f"sqlite:///{tmp_path}/dash.db"
    async with process(
        "dashboard",
        APP,
        "--storage",
        storage,
        "--port",
        "0",
        env={"DURABLE_EFFECT_TOKEN": "tok-123"},
    ) as (proc, line):
        assert line.startswith("durable-effect: dashboard on http://127.0.0.1:")
        url = line.split(" on ", 1)[1].split(" ", 1)[0].rstrip(";")
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            assert (await http.get("api/jobs")).status_code == 401
            auth = {"authorization": "Bearer tok-123"}
            assert (await http.get("api/jobs", headers=auth)).status_code == 200
            assert (await http.get("", params={"token": "tok-123"})).status_code == 200
            created = await http.post("api/workflows/waits/runs", json={"input": "x"}, headers=auth)
            assert created.status_code == 201
        proc.send_signal(signal.SIGINT)
        assert await asyncio.wait_for(proc.wait(), 20) == 0
        assert proc.stderr is not None
        err = (await proc.stderr.read()).decode()
    assert "POST /api/workflows/waits/runs -> 201" in err
    assert "tok-123" not in err


@pytest.mark.live
async def test_without_a_token_only_loopback_host_names_are_answered(tmp_path: Path) -> None:
    async with process(
        "dashboard", APP, "--storage", f"sqlite:///{tmp_path}/h.db", "--port", "0"
    ) as (_, line):
        url = line.split(" on ", 1)[1].split(";", 1)[0]
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            assert (await http.get("api/workflows")).status_code == 200
            rebound = await http.get("api/workflows", headers={"host": "evil.example"})
            assert rebound.status_code == 400


@pytest.mark.live
async def test_the_demo_prints_its_dashboard_and_serves_it(tmp_path: Path) -> None:
    async with process(
        "demo", "--db", str(tmp_path / "demo.db"), "--seconds", "4", "--port", "0"
    ) as (proc, first):
        assert proc.stdout is not None
        second = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        line = next(x for x in (first, second) if x.startswith("dashboard: "))
        url = line.split()[1]
        async with httpx.AsyncClient(base_url=url, timeout=10) as http:
            workflows = (await http.get("api/workflows")).json()["workflows"]
            assert [w["name"] for w in workflows] == ["importCsv"]
            jobs = {j["name"] for j in (await http.get("api/jobs")).json()["jobs"]}
            assert jobs == {"heartbeat", "clicks", "orders"}
            assert "durable_effect" in (await http.get("")).text
        assert await asyncio.wait_for(proc.wait(), 30) == 0
