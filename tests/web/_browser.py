"""A served dashboard and a real headless Chromium, for the browser tests and the screenshots.

Chromium is Debian's (``/usr/bin/chromium``, installed by ``.ci/run`` when absent), driven by
Playwright's Python package through ``executable_path`` (Playwright's own browser downloads
are not possible here). The flags are the ones this machine needs: no sandbox (root), no GPU,
no background networking (the network is closed), a fresh profile per launch.
"""

from __future__ import annotations

import asyncio
import contextlib
import os
import shutil
import subprocess
import sys
from collections.abc import AsyncIterator
from dataclasses import dataclass
from pathlib import Path

from playwright.async_api import Browser, async_playwright

from durable_effect._jobs import DurableJobs
from durable_effect.web import create_app
from durable_effect.web._serve import Server
from tests.web.sample_app import jobs_on

__all__ = ["APP", "Served", "chromium", "cli", "served", "worker_process"]

ROOT = Path(__file__).resolve().parents[2]
APP = "tests.web.sample_app:jobs"
CHROMIUM_FLAGS = [
    "--no-sandbox",
    "--disable-gpu",
    "--disable-quic",
    "--no-first-run",
    "--disable-background-networking",
    "--disable-component-update",
    "--disable-sync",
]


def chromium_path() -> str:
    """Debian's Chromium (``FileNotFoundError`` when it is not installed: never a skip)."""
    found = os.environ.get("DURABLE_EFFECT_CHROMIUM") or shutil.which("chromium")
    if not found:
        raise FileNotFoundError("Chromium is not installed: apt-get install chromium (.ci/run)")
    return found


@contextlib.asynccontextmanager
async def chromium() -> AsyncIterator[Browser]:
    """A headless Chromium (a fresh profile, closed at the end)."""
    async with async_playwright() as playwright:
        browser = await playwright.chromium.launch(
            executable_path=chromium_path(), headless=True, args=CHROMIUM_FLAGS
        )
        try:
            yield browser
        finally:
            await browser.close()


@dataclass
class Served:
    """A dashboard served on loopback over the sample jobs on a SQLite file."""

    url: str
    storage: str
    jobs: DurableJobs


@contextlib.asynccontextmanager
async def served(db: Path) -> AsyncIterator[Served]:
    """The dashboard of the sample jobs on ``db``, on a free loopback port."""
    storage = f"sqlite:///{db}"
    jobs = jobs_on(storage)
    async with jobs:
        server = Server(create_app(jobs), "127.0.0.1", 0, handle_signals=False)
        task = asyncio.ensure_future(server.serve())
        try:
            yield Served(url=server.url, storage=storage, jobs=jobs)
        finally:
            server.stop()
            await asyncio.wait_for(task, 10)


def _env() -> dict[str, str]:
    return {**os.environ, "PYTHONPATH": str(ROOT)}


async def cli(*args: str) -> str:
    """Run ``durable-effect ARGS`` in another process; its stdout (fails on a non-zero exit)."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "durable_effect.cli",
        *args,
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
    )
    out, err = await asyncio.wait_for(proc.communicate(), 60)
    assert proc.returncode == 0, f"durable-effect {args} exited {proc.returncode}: {err.decode()}"
    return out.decode()


@contextlib.asynccontextmanager
async def worker_process(storage: str) -> AsyncIterator[None]:
    """``durable-effect worker`` on ``storage`` in another process, stopped at the end."""
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-m",
        "durable_effect.cli",
        "worker",
        APP,
        "--storage",
        storage,
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
    )
    try:
        yield
    finally:
        if proc.returncode is None:
            proc.terminate()
            try:
                await asyncio.wait_for(proc.wait(), 15)
            except TimeoutError:
                proc.kill()
                await proc.wait()
