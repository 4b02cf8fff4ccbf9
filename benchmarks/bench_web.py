"""Benchmark the web API: the list route over 100,000 runs, and the event stream under load.

Usage: ``python benchmarks/bench_web.py [--quick]``. Prints a table and writes
``benchmarks/results/bench_web.json``.

1. ``list``: ``GET /api/workflows/{wf}/runs?limit=50`` (first page, a status filter, a
   label filter, and the page after a cursor) through the real app (httpx's ASGI
   transport, in process) on a SQLite file holding N runs (100,000; ``--quick`` 5,000):
   p50 and p99 latency of 200 requests each (``--quick``: 50). Also ``GET /api/workflows``
   (the counts).
2. ``stream``: a worker process runs 1,000 runs of a three-step workflow (triggered up front,
   then ``jobs.worker(concurrency=16).run()`` until all are done) on a SQLite file, while a
   dashboard process (``durable-effect dashboard``) streams its events to 100 connected SSE
   clients (httpx, in this process, counting frames) — against the same worker with no
   dashboard and no clients, interleaved round by round on fresh files. The bar: with
   clients, the worker's throughput is within 10 % of without (ratio >= 0.90).
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import AsyncIterator
from pathlib import Path

import httpx
from _report import write_report

from durable_effect import Effect, Gen, Step, Workflow, create_durable_jobs
from durable_effect.web import create_app
from durable_effect.workflow import TriggerRequest, WorkflowDefinition

ROOT = Path(__file__).resolve().parent.parent
APP = "benchmarks.bench_web:jobs"


@Effect.gen
def three_steps(step: Step, x: int) -> Gen[int, Exception]:
    a = yield from step.run("add", Effect.succeed(x + 1))
    b = yield from step.run("double", Effect.succeed(a * 2))
    return (yield from step.run("dec", Effect.succeed(b - 1)))


FLOW: WorkflowDefinition[int, int] = Workflow.make(int, three_steps)
#: For the dashboard process (``--storage`` gives the file).
jobs = create_durable_jobs({"flow": FLOW}, storage="memory://")


def percentile(values: list[float], p: float) -> float:
    ordered = sorted(values)
    return ordered[min(len(ordered) - 1, round(p / 100 * (len(ordered) - 1)))]


# -- 1. the list route -------------------------------------------------------------------------


async def fill(path: Path, n: int) -> None:
    async with create_durable_jobs({"flow": FLOW}, storage=f"sqlite:///{path}") as filling:
        handle = filling.client.workflow(FLOW)
        for start in range(0, n, 1000):
            batch = [
                TriggerRequest(input=i, labels={"shard": str(i % 10)})
                for i in range(start, min(n, start + 1000))
            ]
            await Effect.run_promise(handle.batch_trigger(batch))


async def time_requests(http: httpx.AsyncClient, path: str, params: object, n: int) -> list[float]:
    out = []
    for _ in range(n):
        started = time.perf_counter()
        response = await http.get(path, params=params)  # type: ignore[arg-type]
        out.append((time.perf_counter() - started) * 1000)
        assert response.status_code == 200, response.text
    return out


async def bench_list(tmp: Path, runs: int, requests: int) -> list[dict[str, object]]:
    path = tmp / "list.db"
    started = time.perf_counter()
    await fill(path, runs)
    print(f"filled {runs} runs in {time.perf_counter() - started:.1f} s", file=sys.stderr)
    rows: list[dict[str, object]] = []
    async with create_durable_jobs({"flow": FLOW}, storage=f"sqlite:///{path}") as served:
        transport = httpx.ASGITransport(app=create_app(served))
        async with httpx.AsyncClient(transport=transport, base_url="http://bench") as http:
            first = (await http.get("/api/workflows/flow/runs", params={"limit": 50})).json()
            cursor = first["next_cursor"]
            cases: list[tuple[str, str, object]] = [
                ("runs, first page", "/api/workflows/flow/runs", {"limit": 50}),
                ("runs, status=pending", "/api/workflows/flow/runs", {"status": "pending"}),
                ("runs, label shard:3", "/api/workflows/flow/runs", {"label": "shard:3"}),
                ("runs, after a cursor", "/api/workflows/flow/runs", {"after": cursor}),
                ("workflows + counts", "/api/workflows", {}),
            ]
            for name, route, params in cases:
                n = requests if "counts" not in name else max(requests // 10, 5)
                times = await time_requests(http, route, params, n)
                rows.append(
                    {
                        "bench": "list",
                        "case": name,
                        "runs": runs,
                        "requests": n,
                        "p50_ms": round(percentile(times, 50), 2),
                        "p99_ms": round(percentile(times, 99), 2),
                    }
                )
    return rows


# -- 2. the stream under a worker -------------------------------------------------------------

WORKER = """
import asyncio, sys, time
from durable_effect import Effect, create_durable_jobs
from durable_effect.workflow import TriggerRequest
from benchmarks.bench_web import FLOW

async def main(path, n):
    async with create_durable_jobs({"flow": FLOW}, storage=f"sqlite:///{path}") as jobs:
        handle = jobs.client.workflow(FLOW)
        await Effect.run_promise(handle.batch_trigger([TriggerRequest(input=i) for i in range(n)]))
        print("triggered", flush=True)
        sys.stdin.readline()  # go
        worker = jobs.worker(concurrency=16, poll_interval=0.2)
        task = asyncio.ensure_future(worker.run())
        started = time.perf_counter()
        while True:
            runs = await Effect.run_promise(handle.list_runs(status="completed", limit=n))
            if len(runs) >= n:
                break
            await asyncio.sleep(0.05)
        elapsed = time.perf_counter() - started
        await worker.stop()
        await task
        print(f"elapsed {elapsed}", flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def _env() -> dict[str, str]:
    # ``benchmarks/`` too: this module imports ``_report`` as its neighbour
    return {**os.environ, "PYTHONPATH": os.pathsep.join([str(ROOT), str(ROOT / "benchmarks")])}


@contextlib.asynccontextmanager
async def dashboard(path: Path, nice: bool = False) -> AsyncIterator[str]:
    proc = await asyncio.create_subprocess_exec(
        *niced(nice, sys.executable),
        "-m",
        "durable_effect.cli",
        "dashboard",
        APP,
        "--storage",
        f"sqlite:///{path}",
        "--port",
        "0",
        cwd=ROOT,
        env=_env(),
        stdout=subprocess.PIPE,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert proc.stdout is not None
        line = (await asyncio.wait_for(proc.stdout.readline(), 30)).decode()
        url = line.split(" on ", 1)[1].split(";", 1)[0].split(" ", 1)[0]
        yield url
    finally:
        proc.terminate()
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(proc.wait(), 10)
        if proc.returncode is None:
            proc.kill()
            await proc.wait()


CLIENTS = """
import asyncio, sys
import httpx

async def listen(url, counts, i, ready):
    async with httpx.AsyncClient(timeout=None) as http, http.stream("GET", url + "api/stream") as r:
        ready.set()
        async for chunk in r.aiter_raw():  # counting, cheaply: every frame has an id
            counts[i] += chunk.count(b"\\nid: ")

async def main(url, n):
    counts = [0] * n
    readies = [asyncio.Event() for _ in range(n)]
    tasks = [asyncio.ensure_future(listen(url, counts, i, readies[i])) for i in range(n)]
    await asyncio.gather(*(r.wait() for r in readies))
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)
    for t in tasks:
        t.cancel()
    await asyncio.gather(*tasks, return_exceptions=True)
    print(sum(counts), flush=True)

asyncio.run(main(sys.argv[1], int(sys.argv[2])))
"""


def niced(nice: bool, *args: str) -> tuple[str, ...]:
    """``args``, under ``nice -n 10`` when ``nice``."""
    return ("nice", "-n", "10", *args) if nice else args


async def worker_round(
    tmp: Path, name: str, runs: int, clients: int, nice: bool = False
) -> tuple[float, int]:
    """Runs/s of the worker process; frames the clients got (0 without clients)."""
    path = tmp / f"{name}.db"
    proc = await asyncio.create_subprocess_exec(
        sys.executable,
        "-c",
        WORKER,
        str(path),
        str(runs),
        cwd=ROOT,
        env=_env(),
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
    )
    assert proc.stdout is not None
    assert proc.stdin is not None
    assert (await asyncio.wait_for(proc.stdout.readline(), 120)).startswith(b"triggered")
    got = 0
    async with contextlib.AsyncExitStack() as stack:
        listeners = None
        if clients:
            url = await stack.enter_async_context(dashboard(path, nice))
            listeners = await asyncio.create_subprocess_exec(
                *niced(nice, sys.executable, "-c", CLIENTS, url, str(clients)),
                cwd=ROOT,
                env=_env(),
                stdin=subprocess.PIPE,
                stdout=subprocess.PIPE,
            )
            assert listeners.stdout is not None
            ready = await asyncio.wait_for(listeners.stdout.readline(), 60)
            assert ready.startswith(b"ready"), ready
            await asyncio.sleep(0.5)
        proc.stdin.write(b"go\n")
        await proc.stdin.drain()
        line = (await asyncio.wait_for(proc.stdout.readline(), 600)).decode()
        await proc.wait()
        if listeners is not None:
            assert listeners.stdin is not None
            assert listeners.stdout is not None
            await asyncio.sleep(1.0)  # the last events reach the clients
            listeners.stdin.write(b"stop\n")
            await listeners.stdin.drain()
            got = int((await asyncio.wait_for(listeners.stdout.readline(), 60)).decode())
            await listeners.wait()
    elapsed = float(line.split()[1])
    return runs / elapsed, got


async def bench_stream(tmp: Path, runs: int, clients: int, rounds: int) -> list[dict[str, object]]:
    """Interleaved rounds: alone, with clients (same priority), with clients (dashboard and
    clients under ``nice -n 10``, as when the clients are elsewhere and the dashboard yields
    to the workers)."""
    rates: dict[str, list[float]] = {"alone": [], "clients": [], "clients-niced": []}
    frames: list[int] = []
    for r in range(rounds):
        kinds = ["alone", "clients", "clients-niced"]
        for kind in kinds if r % 2 == 0 else kinds[::-1]:
            n = 0 if kind == "alone" else clients
            rate, got = await worker_round(tmp, f"s-{r}-{kind}", runs, n, kind.endswith("niced"))
            rates[kind].append(rate)
            if n:
                frames.append(got)
    rows: list[dict[str, object]] = []
    for kind in ("clients", "clients-niced"):
        ratios = [a / b for a, b in zip(rates[kind], rates["alone"], strict=True)]
        rows.append(
            {
                "bench": "stream",
                "case": kind,
                "runs": runs,
                "clients": clients,
                "alone_runs_per_s": round(statistics.median(rates["alone"]), 1),
                "with_clients_runs_per_s": round(statistics.median(rates[kind]), 1),
                "ratio": round(statistics.median(ratios), 3),
                "ratios": [round(x, 3) for x in ratios],
                "frames_per_client": round(statistics.median(frames) / clients),
                "bar": 0.90,
            }
        )
    return rows


async def main(quick: bool) -> None:
    runs = 5_000 if quick else 100_000
    requests = 50 if quick else 200
    with tempfile.TemporaryDirectory(prefix="bench_web_") as tmp:
        rows = await bench_list(Path(tmp), runs, requests)
        rows += await bench_stream(
            Path(tmp), 100 if quick else 1000, 20 if quick else 100, 1 if quick else 3
        )
    for row in rows:
        print(json.dumps(row))
    write_report("bench_web", quick=quick, rows=rows)


if __name__ == "__main__":
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="small sizes, one round")
    asyncio.run(main(parser.parse_args().quick))
