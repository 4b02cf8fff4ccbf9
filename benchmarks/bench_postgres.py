"""Benchmark the PostgreSQL runtime against raw psycopg (and Procrastinate) in the same run.

Usage: ``python benchmarks/bench_postgres.py [--quick]``. Starts a throwaway server with
``tests/pg_harness.py`` (``fsync=on``; or uses the server ``DURABLE_EFFECT_PG_URL`` names),
prints a table and writes ``benchmarks/results/bench_postgres.json``. Every measurement has
its baseline measured in the same run, on the same server, each in a fresh database:

1. ``commits``: one handler at a time, on one caller — through the `PostgresStorage` port
   a ``commit`` of one 100-byte record under a lease held throughout (what a handler's
   commit costs once the runtime keeps the lease between calls) and ``acquire`` then
   ``commit`` with the lease released (a call without a kept lease); through the client a
   Task ``send`` and a Continuous ``trigger`` (64 instances, each call updates one; the
   runtime keeps leases between calls, ``lease_linger``) —
   against single-row upserts (``INSERT … ON CONFLICT DO UPDATE``, 64 keys) in autocommit on
   one async psycopg connection. Rounds are interleaved (raw, held, port, task, continuous, …) so
   that disk drift hits all alike; rates and ratios are medians over the rounds. Bar: ≥ 0.70
   of the raw rate.
2. ``claim-and-fire``: N Task instances with an alarm due, fired by 1 and by 4 worker
   processes (``jobs.worker(concurrency=32).run()``; each execution adds one to the state
   and schedules nothing), from a "go" line on their stdin until no alarm is left — against
   1 and 4 raw psycopg processes (10 connections each, as many as our pool) each looping one
   statement per alarm: delete one due alarm ``FOR UPDATE SKIP LOCKED`` and update its state
   row, in one transaction.
3. ``workflows``: three trivial steps per run, ``trigger_and_wait`` with a worker in the
   same process, one caller and 16 callers.
4. ``no-op jobs``: N runs of a workflow with no steps, triggered first (no worker running),
   then processed by one in-process worker until none is left — against Procrastinate
   (``procrastinate`` from PyPI, the ``bench`` extra) deferring N no-op jobs the same way,
   then ``run_worker_async(wait=False)`` (one worker; its default ``delete_jobs="never"``,
   like our retained runs). Both at concurrency 1 and 10. Target: ours ≥ Procrastinate's.

``--quick`` shrinks every size for a smoke run. Absolute numbers drift with the disk; the
ratios are the point.
"""

from __future__ import annotations

import argparse
import asyncio
import contextlib
import json
import logging
import os
import platform
import signal
import statistics
import sys
import time
import uuid
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import attrs
import msgspec
import psycopg

from durable_effect import Continuous, Effect, Gen, Task, ValidationError, create_durable_jobs
from durable_effect.jobs._base import JobDefinition
from durable_effect.jobs._continuous import ContinuousContext
from durable_effect.jobs._task_context import TaskContext, TaskEventContext
from durable_effect.storage import InstanceWrite, Lease
from durable_effect.storage._postgres import PostgresStorage
from durable_effect.workflow import Step, Workflow, WorkflowDefinition

ROOT = Path(__file__).resolve().parents[1]
RESULTS = ROOT / "benchmarks" / "results" / "bench_postgres.json"
VALUE = b"v" * 100
KEYS = 64
TTL = timedelta(seconds=30)
COMMIT_BAR = 0.70
WORKER_CONCURRENCY = 32
RAW_CONNECTIONS = 10


@attrs.frozen(kw_only=True)
class Sizes:
    rounds: int
    per_round: int
    alarms: int
    workflow_runs: int
    noop_jobs: int
    repeats: int


@attrs.frozen(kw_only=True)
class Row:
    """One line of the table: ours against its baseline (rates per second)."""

    section: str
    benchmark: str
    ours: float
    baseline: float
    baseline_name: str
    ratio: float
    bar: str = "-"
    met: str = "-"
    detail: str = ""


# -- the jobs --------------------------------------------------------------------------------


class Count(msgspec.Struct):
    n: int


class Bump(msgspec.Struct):
    """Task event: add ``by`` to the state; ``fire`` also schedules execute now."""

    by: int = 1
    fire: bool = False


@Effect.gen
def on_bump(event: Bump, ctx: TaskEventContext[Count]) -> Gen[None, ValidationError]:
    state = yield from ctx.state
    yield from ctx.set_state(Count(n=(state.n if state else 0) + event.by))
    if event.fire:
        yield from ctx.schedule(timedelta(0))


def bump_execute(ctx: TaskContext[Count]) -> Effect[None, ValidationError]:
    return ctx.update_state(lambda s: Count(n=s.n + 1))


def bump_continuous(ctx: ContinuousContext[Count]) -> Effect[None, ValidationError]:
    return ctx.update_state(lambda s: Count(n=s.n + 1))


def job_definitions() -> dict[str, JobDefinition]:
    return {
        "bump": Task.make(Count, Bump, on_bump, bump_execute),
        "tick": Continuous.make(
            Count, Continuous.every("1 hour"), bump_continuous, start_immediately=False
        ),
    }


@Effect.gen
def three_steps(step: Step, x: int) -> Gen[int, Exception]:
    a = yield from step.run("add", Effect.succeed(x + 1))
    b = yield from step.run("double", Effect.succeed(a * 2))
    return (yield from step.run("dec", Effect.succeed(b - 1)))


def no_steps(step: Step, x: int) -> Effect[int]:
    return Effect.succeed(x)


THREE_STEPS: WorkflowDefinition[int, int] = Workflow.make(int, three_steps)
NO_OP: WorkflowDefinition[int, int] = Workflow.make(int, no_steps)


# -- the server and its databases ------------------------------------------------------------


class Server:
    """The harness's throwaway server (or ``DURABLE_EFFECT_PG_URL``'s) and fresh databases."""

    def __init__(self) -> None:
        if str(ROOT) not in sys.path:
            sys.path.insert(0, str(ROOT))
        from tests.pg_harness import server_from_env, start_server

        self.server = server_from_env() or start_server()
        self.made: list[str] = []

    def database(self, purpose: str) -> str:
        name = f"bench_{purpose}_{uuid.uuid4().hex[:8]}"
        url = self.server.create_database(name)
        self.made.append(name)
        return url

    def settings(self) -> dict[str, str]:
        with psycopg.connect(self.server.url(), autocommit=True) as conn:
            version = conn.execute("SHOW server_version").fetchone()
            fsync = conn.execute("SHOW fsync").fetchone()
            sync = conn.execute("SHOW synchronous_commit").fetchone()
        return {
            "server_version": str(version[0] if version else "?"),
            "fsync": str(fsync[0] if fsync else "?"),
            "synchronous_commit": str(sync[0] if sync else "?"),
            "owned_by_harness": str(self.server.owned),
        }

    def close(self) -> None:
        if not self.server.owned:
            for name in self.made:
                with contextlib.suppress(Exception):
                    self.server.drop_database(name)
        self.server.cleanup()


# -- 1. single handler commits ----------------------------------------------------------------


_RAW_UPSERT = (
    "INSERT INTO raw_kv (k, v) VALUES (%s, %s) ON CONFLICT (k) DO UPDATE SET v = EXCLUDED.v"
)


async def raw_upserts(conn: psycopg.AsyncConnection[Any], count: int, start: int) -> float:
    began = time.perf_counter()
    for i in range(start, start + count):
        await conn.execute(_RAW_UPSERT, (f"k{i % KEYS}", VALUE))
    return count / (time.perf_counter() - began)


async def port_commits(storage: PostgresStorage, count: int, start: int) -> float:
    began = time.perf_counter()
    for i in range(start, start + count):
        iid = f"port:{i % KEYS}"
        now = datetime.now(UTC)
        acquired = await storage.acquire([iid], owner="bench", now=now, ttl=TTL)
        assert acquired is not None
        write = InstanceWrite(instance_id=iid, puts={"v": VALUE})
        await storage.commit(acquired.leases, [write], release=True)
    return count / (time.perf_counter() - began)


async def held_leases(storage: PostgresStorage) -> list[Lease]:
    """Leases on ``KEYS`` instances that stay good for the whole run (never released)."""
    held: list[Lease] = []
    for k in range(KEYS):
        got = await storage.acquire(
            [f"held:{k}"], owner="bench", now=datetime.now(UTC), ttl=timedelta(days=1)
        )
        assert got is not None
        held.extend(got.leases)
    return held


async def held_commits(
    storage: PostgresStorage, leases: list[Lease], count: int, start: int
) -> float:
    began = time.perf_counter()
    for i in range(start, start + count):
        lease = leases[i % KEYS]
        write = InstanceWrite(instance_id=lease.instance_id, puts={"v": VALUE})
        await storage.commit([lease], [write], release=False)
    return count / (time.perf_counter() - began)


async def bench_commits(server: Server, sizes: Sizes) -> list[Row]:
    url = server.database("commits")
    rates: dict[str, list[float]] = {
        "raw": [],
        "held": [],
        "port": [],
        "task": [],
        "continuous": [],
    }
    async with (
        await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
        PostgresStorage(url, max_size=2, schema="port") as port,
        create_durable_jobs(
            job_definitions(), storage=PostgresStorage(url, max_size=2, schema="jobs")
        ) as jobs,
    ):
        await conn.execute("CREATE TABLE raw_kv (k text PRIMARY KEY, v bytea)")
        held = await held_leases(port)
        task = jobs.client.task("bump")
        tick = jobs.client.continuous("tick")
        for k in range(KEYS):
            await tick.start(id=f"c{k}", input=Count(n=0))

        async def task_sends(count: int, start: int) -> float:
            began = time.perf_counter()
            for i in range(start, start + count):
                await task.send(id=f"t{i % KEYS}", event=Bump())
            return count / (time.perf_counter() - began)

        async def continuous_triggers(count: int, start: int) -> float:
            began = time.perf_counter()
            for i in range(start, start + count):
                assert (await tick.trigger(f"c{i % KEYS}")).triggered
            return count / (time.perf_counter() - began)

        sides: dict[str, Callable[[int, int], Awaitable[float]]] = {
            "raw": lambda n, s: raw_upserts(conn, n, s),
            "held": lambda n, s: held_commits(port, held, n, s),
            "port": lambda n, s: port_commits(port, n, s),
            "task": task_sends,
            "continuous": continuous_triggers,
        }
        for fn in sides.values():  # warm up: prepared statements, caches, the first rows
            await fn(max(sizes.per_round // 4, 20), 0)
        for r in range(sizes.rounds):
            for name, fn in sides.items():
                rates[name].append(await fn(sizes.per_round, (r + 1) * sizes.per_round))
    raw = statistics.median(rates["raw"])
    rows = []
    labels = {
        "held": "storage commit (lease held)",
        "port": "storage acquire + commit",
        "task": "Task send (client)",
        "continuous": "Continuous trigger (client)",
    }
    for name, label in labels.items():
        ratios = [o / b for o, b in zip(rates[name], rates["raw"], strict=True)]
        ratio = statistics.median(ratios)
        rows.append(
            Row(
                section="commits",
                benchmark=f"{label}, 1 caller",
                ours=statistics.median(rates[name]),
                baseline=raw,
                baseline_name="raw upserts, 1 connection",
                ratio=ratio,
                bar=f"≥ {COMMIT_BAR:.2f}",
                met="yes" if ratio >= COMMIT_BAR else "no",
                detail=f"ratios per round {min(ratios):.2f} to {max(ratios):.2f}",
            )
        )
    return rows


# -- 2. claim and fire, in worker processes -----------------------------------------------------


async def worker_process(url: str, concurrency: int) -> None:
    """``--worker``: wait for ``go`` on stdin, fire alarms until SIGTERM; print ``fired N``."""
    storage = PostgresStorage(url, max_size=10)
    async with create_durable_jobs(job_definitions(), storage=storage) as jobs:
        worker = jobs.worker(concurrency=concurrency, poll_interval=0.25)
        loop = asyncio.get_running_loop()
        loop.add_signal_handler(signal.SIGTERM, lambda: asyncio.ensure_future(worker.stop()))
        print("ready", flush=True)
        await loop.run_in_executor(None, sys.stdin.readline)
        await worker.run()
    print(f"fired {worker.fired}", flush=True)


_RAW_FIRE = """
WITH claimed AS (
    DELETE FROM raw_alarms
    WHERE id = (
        SELECT id FROM raw_alarms WHERE due_at <= now()
        ORDER BY due_at, id LIMIT 1 FOR UPDATE SKIP LOCKED
    )
    RETURNING id
)
UPDATE raw_state SET n = raw_state.n + 1 FROM claimed WHERE raw_state.id = claimed.id
RETURNING raw_state.id
"""


async def raw_worker_process(url: str, connections: int) -> None:
    """``--raw-worker``: wait for ``go``; loop one alarm per statement until none is due."""
    conns = [
        await psycopg.AsyncConnection.connect(url, autocommit=True) for _ in range(connections)
    ]
    print("ready", flush=True)
    await asyncio.get_running_loop().run_in_executor(None, sys.stdin.readline)

    async def loop(conn: psycopg.AsyncConnection[Any]) -> int:
        fired = 0
        while True:
            cur = await conn.execute(_RAW_FIRE)
            if await cur.fetchone() is None:
                # Nothing claimable: done unless rows are locked by another connection.
                left = await (await conn.execute("SELECT count(*) FROM raw_alarms")).fetchone()
                if left is None or left[0] == 0:
                    return fired
                await asyncio.sleep(0.001)
                continue
            fired += 1

    fired = sum(await asyncio.gather(*(loop(c) for c in conns)))
    for conn in conns:
        await conn.close()
    print(f"fired {fired}", flush=True)


class Children:
    """Worker subprocesses of this script, started together and released with ``go``."""

    def __init__(self, procs: list[asyncio.subprocess.Process]) -> None:
        self.procs = procs

    @classmethod
    @contextlib.asynccontextmanager
    async def spawn(cls, mode: str, url: str, count: int) -> AsyncIterator[Children]:
        procs = [
            await asyncio.create_subprocess_exec(
                sys.executable,
                str(Path(__file__).resolve()),
                mode,
                url,
                cwd=ROOT,
                stdin=asyncio.subprocess.PIPE,
                stdout=asyncio.subprocess.PIPE,
            )
            for _ in range(count)
        ]
        children = cls(procs)
        try:
            for proc in procs:
                assert proc.stdout is not None
                line = await asyncio.wait_for(proc.stdout.readline(), timeout=60)
                if line.strip() != b"ready":
                    raise RuntimeError(f"a {mode} process did not start: {line!r}")
            yield children
        finally:
            for proc in procs:
                if proc.returncode is None:
                    proc.kill()
                    await proc.wait()

    def go(self) -> None:
        for proc in self.procs:
            assert proc.stdin is not None
            proc.stdin.write(b"go\n")

    async def fired(self, *, terminate: bool) -> int:
        total = 0
        for proc in self.procs:
            if terminate:
                proc.send_signal(signal.SIGTERM)
            assert proc.stdout is not None
            out = await asyncio.wait_for(proc.stdout.read(), timeout=120)
            await proc.wait()
            words = out.decode().split()
            total += int(words[words.index("fired") + 1])
        return total


async def until(condition: Callable[[], Awaitable[bool]], *, timeout: float = 600.0) -> None:
    deadline = time.monotonic() + timeout
    while not await condition():
        if time.monotonic() > deadline:
            raise TimeoutError("the benchmark did not finish in time")
        await asyncio.sleep(0.005)


async def ours_fire(server: Server, alarms: int, workers: int) -> tuple[float, float]:
    """(alarms fired/s by ``workers`` processes, instances created/s by 32 client callers)."""
    url = server.database(f"fire{workers}")
    storage = PostgresStorage(url, max_size=10)
    async with create_durable_jobs(job_definitions(), storage=storage) as jobs:
        task = jobs.client.task("bump")
        gate = asyncio.Semaphore(32)

        async def create(i: int) -> None:
            async with gate:
                await task.send(id=f"f{i}", event=Bump(fire=True))

        began = time.perf_counter()
        await asyncio.gather(*(create(i) for i in range(alarms)))
        created = alarms / (time.perf_counter() - began)
        async with Children.spawn("--worker", url, workers) as children:
            children.go()
            began = time.perf_counter()

            async def drained() -> bool:
                return await storage.next_alarm_at() is None

            await until(drained)
            rate = alarms / (time.perf_counter() - began)
            fired = await children.fired(terminate=True)
        assert fired == alarms, (fired, alarms)
        states = [(await task.get_state(f"f{i}")).state for i in range(0, alarms, 97)]
        assert all(s == Count(n=2) for s in states), states[:5]
    return rate, created


async def raw_fire(server: Server, alarms: int, workers: int) -> float:
    url = server.database(f"rawfire{workers}")
    async with await psycopg.AsyncConnection.connect(url, autocommit=True) as conn:
        await conn.execute("CREATE TABLE raw_state (id text PRIMARY KEY, n int NOT NULL)")
        await conn.execute(
            "CREATE TABLE raw_alarms (id text PRIMARY KEY, due_at timestamptz NOT NULL)"
        )
        await conn.execute("CREATE INDEX raw_alarms_due ON raw_alarms (due_at, id)")
        await conn.execute(
            "INSERT INTO raw_state SELECT 'f' || i, 1 FROM generate_series(0, %s - 1) i",
            (alarms,),
        )
        await conn.execute(
            "INSERT INTO raw_alarms SELECT 'f' || i, now() FROM generate_series(0, %s - 1) i",
            (alarms,),
        )
        await conn.execute("VACUUM ANALYZE raw_alarms")
        async with Children.spawn("--raw-worker", url, workers) as children:
            children.go()
            began = time.perf_counter()
            fired = await children.fired(terminate=False)
            rate = alarms / (time.perf_counter() - began)
        assert fired == alarms, (fired, alarms)
        cur = await conn.execute("SELECT count(*) FROM raw_state WHERE n = 2")
        assert (await cur.fetchone()) == (alarms,)
    return rate


async def bench_fire(server: Server, sizes: Sizes) -> tuple[list[Row], dict[str, float]]:
    rows = []
    extra: dict[str, float] = {}
    for workers in (1, 4):
        ours_rates, raw_rates = [], []
        for _ in range(sizes.repeats):
            raw_rates.append(await raw_fire(server, sizes.alarms, workers))
            rate, created = await ours_fire(server, sizes.alarms, workers)
            ours_rates.append(rate)
            extra[f"task sends/s while preparing (32 callers), run for {workers} worker(s)"] = (
                created
            )
        ours, raw = max(ours_rates), max(raw_rates)
        rows.append(
            Row(
                section="claim-and-fire",
                benchmark=f"{sizes.alarms:,} Task alarms, {workers} worker process(es)",
                ours=ours,
                baseline=raw,
                baseline_name=f"raw SKIP LOCKED loop, {workers} process(es) x "
                f"{RAW_CONNECTIONS} connections",
                ratio=ours / raw,
                detail=f"worker concurrency {WORKER_CONCURRENCY}, pool 10",
            )
        )
    return rows, extra


# -- 3. workflows ---------------------------------------------------------------------------


async def workflow_rate(url: str, runs: int, callers: int) -> float:
    storage = PostgresStorage(url, max_size=10)
    async with create_durable_jobs({"three": THREE_STEPS}, storage=storage) as jobs:
        handle = jobs.client.workflow(THREE_STEPS)
        worker = jobs.worker(concurrency=max(callers, 1), poll_interval=0.5)
        running = asyncio.ensure_future(worker.run())
        try:
            await handle.trigger_and_wait(0)  # warm up
            per_caller = runs // callers

            async def caller(offset: int) -> None:
                for i in range(per_caller):
                    x = offset * per_caller + i
                    assert await handle.trigger_and_wait(x) == (x + 1) * 2 - 1

            began = time.perf_counter()
            await asyncio.gather(*(caller(c) for c in range(callers)))
            elapsed = time.perf_counter() - began
        finally:
            await worker.stop()
            await running
    return per_caller * callers / elapsed


async def bench_workflows(server: Server, sizes: Sizes, raw: float) -> list[Row]:
    rows = []
    for callers in (1, 16):
        rate = max(
            [
                await workflow_rate(server.database("wf"), sizes.workflow_runs, callers)
                for _ in range(sizes.repeats)
            ]
        )
        rows.append(
            Row(
                section="workflows",
                benchmark=f"3-step workflow, trigger_and_wait, {callers} caller(s)",
                ours=rate,
                baseline=raw,
                baseline_name="raw upserts, 1 connection",
                ratio=rate / raw,
                detail=f"{rate * 3:,.0f} steps/s; {raw / rate:.1f} raw commits' time per run",
            )
        )
    return rows


# -- 4. no-op jobs: ours against Procrastinate ------------------------------------------------


async def ours_noop(url: str, jobs_count: int, concurrency: int) -> float:
    storage = PostgresStorage(url, max_size=10)
    async with create_durable_jobs({"noop": NO_OP}, storage=storage) as jobs:
        handle = jobs.client.workflow(NO_OP)
        for start in range(0, jobs_count, 500):
            await handle.batch_trigger(list(range(start, min(start + 500, jobs_count))))
        worker = jobs.worker(concurrency=concurrency, poll_interval=0.25)
        began = time.perf_counter()
        running = asyncio.ensure_future(worker.run())

        async def drained() -> bool:
            nxt = await storage.next_alarm_at()
            return nxt is None or nxt > datetime.now(UTC)

        await until(drained)
        await worker.stop()
        await running
        elapsed = time.perf_counter() - began
        done = (await handle.count_runs(status="completed"))["completed"]
        assert done == jobs_count, done
    return jobs_count / elapsed


async def procrastinate_noop(url: str, jobs_count: int, concurrency: int) -> float:
    import procrastinate

    app: Any = procrastinate.App(connector=procrastinate.PsycopgConnector(conninfo=url))
    done: list[int] = []

    async def noop(n: int) -> None:
        done.append(n)

    task: Any = app.task(name="noop")(noop)
    async with app.open_async():
        await app.schema_manager.apply_schema_async()
        for start in range(0, jobs_count, 500):
            await task.batch_defer_async(
                *({"n": n} for n in range(start, min(start + 500, jobs_count)))
            )
        began = time.perf_counter()
        await app.run_worker_async(
            concurrency=concurrency, wait=False, install_signal_handlers=False
        )
        elapsed = time.perf_counter() - began
    assert sorted(done) == list(range(jobs_count)), len(done)
    return jobs_count / elapsed


async def bench_noop(server: Server, sizes: Sizes) -> tuple[list[Row], str]:
    try:
        import procrastinate

        version = str(getattr(procrastinate, "__version__", "?"))
    except ImportError as exc:
        return [], f"procrastinate is not installed ({exc}): pip install 'durable_effect[bench]'"
    with contextlib.suppress(Exception):
        from importlib.metadata import version as dist_version

        version = dist_version("procrastinate")
    # Quiet (its "App is instantiated in the main Python module" warning included).
    logging.getLogger("procrastinate").setLevel(logging.ERROR)
    rows = []
    for concurrency in (1, 10):
        theirs_rates, ours_rates = [], []
        for _ in range(sizes.repeats):
            theirs_rates.append(
                await procrastinate_noop(
                    server.database("procrastinate"), sizes.noop_jobs, concurrency
                )
            )
            ours_rates.append(
                await ours_noop(server.database("noop"), sizes.noop_jobs, concurrency)
            )
        ours, theirs = max(ours_rates), max(theirs_rates)
        rows.append(
            Row(
                section="no-op jobs",
                benchmark=f"{sizes.noop_jobs:,} no-op workflow runs, 1 worker, "
                f"concurrency {concurrency}",
                ours=ours,
                baseline=theirs,
                baseline_name=f"Procrastinate {version}, {sizes.noop_jobs:,} no-op jobs",
                ratio=ours / theirs,
                bar="≥ 1.00",
                met="yes" if ours >= theirs else "no",
                detail="queued first, then drained",
            )
        )
    return rows, f"procrastinate {version}"


# -- main ------------------------------------------------------------------------------------


def print_table(rows: list[Row]) -> None:
    print(f"{'section':15} {'benchmark':58} {'ours/s':>9} {'baseline/s':>10} {'ratio':>6}  bar")
    for r in rows:
        print(
            f"{r.section:15} {r.benchmark:58} {r.ours:9,.0f} {r.baseline:10,.0f} "
            f"{r.ratio:6.2f}  {r.bar} {r.met}  ({r.baseline_name}; {r.detail})"
        )


# -- --breakdown: where one call's time goes ---------------------------------------------------


async def breakdown(calls: int = 3000, rounds: int = 3) -> None:
    """Per-call wall and CPU time (µs) of the layers of a client call, interleaved rounds."""
    server = await asyncio.to_thread(Server)
    try:
        url = server.database("breakdown")
        async with (
            await psycopg.AsyncConnection.connect(url, autocommit=True) as conn,
            PostgresStorage(url, max_size=2, schema="port") as port,
            create_durable_jobs(
                job_definitions(), storage=PostgresStorage(url, max_size=2)
            ) as jobs,
        ):
            await conn.execute("CREATE TABLE raw_kv (k text PRIMARY KEY, v bytea)")
            held = await held_leases(port)
            task = jobs.client.task("bump")
            direct_sql = port._sql.commit_one  # the statement the port sends, sent by hand

            async def raw(i: int) -> None:
                await conn.execute(_RAW_UPSERT, (f"k{i % KEYS}", VALUE))

            async def direct(i: int) -> None:
                lease = held[i % KEYS]
                params = (lease.instance_id, lease.owner, lease.generation, False, None)
                await conn.execute(direct_sql, (*params, ["v"], [VALUE], False, None, False))

            async def commit(i: int) -> None:
                lease = held[i % KEYS]
                write = InstanceWrite(instance_id=lease.instance_id, puts={"v": VALUE})
                await port.commit([lease], [write], release=False)

            async def send(i: int) -> None:
                await task.send(id=f"t{i % KEYS}", event=Bump())

            sides: dict[str, Callable[[int], Awaitable[None]]] = {
                "raw upsert": raw,
                "commit_one on a raw connection": direct,
                "port commit, lease held": commit,
                "Task send (kept lease)": send,
            }
            times: dict[str, list[tuple[float, float]]] = {name: [] for name in sides}
            for fn in sides.values():
                for i in range(200):
                    await fn(i)
            for _ in range(rounds):
                for name, fn in sides.items():
                    wall, cpu = time.perf_counter(), time.process_time()
                    for i in range(calls):
                        await fn(i)
                    per = (
                        (time.perf_counter() - wall) / calls,
                        (time.process_time() - cpu) / calls,
                    )
                    times[name].append(per)
        print(f"{'µs per call (median of rounds)':34s} {'wall':>7s} {'cpu':>7s}")
        for name, per_round in times.items():
            wall_us = statistics.median(w for w, _ in per_round) * 1e6
            cpu_us = statistics.median(c for _, c in per_round) * 1e6
            print(f"{name:34s} {wall_us:7.1f} {cpu_us:7.1f}")
    finally:
        await asyncio.to_thread(server.close)


async def run(sizes: Sizes) -> dict[str, Any]:
    server = await asyncio.to_thread(Server)
    try:
        settings = await asyncio.to_thread(server.settings)
        print(f"server: {settings}", flush=True)
        rows = await bench_commits(server, sizes)
        print_table(rows)
        raw = rows[0].baseline
        fire_rows, extra = await bench_fire(server, sizes)
        print_table(fire_rows)
        wf_rows = await bench_workflows(server, sizes, raw)
        print_table(wf_rows)
        noop_rows, procrastinate = await bench_noop(server, sizes)
        print_table(noop_rows)
        if not noop_rows:
            print(f"no-op jobs: not measured: {procrastinate}")
    finally:
        await asyncio.to_thread(server.close)
    every = [*rows, *fire_rows, *wf_rows, *noop_rows]
    return {
        "machine": {
            "python": platform.python_version(),
            "platform": platform.platform(),
            "cpus": os.cpu_count(),
        },
        "server": settings,
        "sizes": attrs.asdict(sizes),
        "procrastinate": procrastinate,
        "rows": [attrs.asdict(r) for r in every],
        "extra": extra,
    }


def main() -> None:
    if len(sys.argv) == 3 and sys.argv[1] in ("--worker", "--raw-worker"):
        if sys.argv[1] == "--worker":
            asyncio.run(worker_process(sys.argv[2], WORKER_CONCURRENCY))
        else:
            asyncio.run(raw_worker_process(sys.argv[2], RAW_CONNECTIONS))
        return
    parser = argparse.ArgumentParser(description=__doc__)
    parser.add_argument("--quick", action="store_true", help="small sizes, for a smoke run")
    parser.add_argument(
        "--breakdown", action="store_true", help="only print where one call's time goes"
    )
    args = parser.parse_args()
    if args.breakdown:
        asyncio.run(breakdown())
        return
    if args.quick:
        sizes = Sizes(
            rounds=2, per_round=100, alarms=500, workflow_runs=64, noop_jobs=300, repeats=1
        )
    else:
        sizes = Sizes(
            rounds=5, per_round=400, alarms=5000, workflow_runs=400, noop_jobs=2000, repeats=3
        )
    report = asyncio.run(run(sizes))
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
