"""``durable-effect demo``: every job type working for real on a local SQLite file.

A continuous heartbeat ticks, a debounce job batches bursts of page clicks, a task walks
orders through a small state machine, and an import workflow
reports progress. It runs for about a minute (or until Ctrl-C) and resumes where it stopped
when run again: the state lives in the SQLite file.
"""

from __future__ import annotations

import asyncio
import contextlib
import random
import signal
import sys
from datetime import datetime
from pathlib import Path
from typing import Any

import msgspec

from durable_effect._effect import Effect, Gen
from durable_effect._events import Event
from durable_effect._jobs import DurableJobs, create_durable_jobs
from durable_effect.cli._demo_workflow import import_csv, trigger_import
from durable_effect.errors import ValidationError
from durable_effect.jobs._base import JobDefinition
from durable_effect.jobs._continuous import Continuous
from durable_effect.jobs._continuous_context import ContinuousContext
from durable_effect.jobs._debounce import Debounce
from durable_effect.jobs._debounce_context import DebounceContext, DebounceEventContext
from durable_effect.jobs._task import Task
from durable_effect.jobs._task_context import TaskContext

__all__ = ["build_demo_jobs", "run_demo"]


# -- a continuous heartbeat ----------------------------------------------------------------


class Heartbeat(msgspec.Struct, frozen=True):
    beats: int = 0


@Effect.gen
def beat(ctx: ContinuousContext[Heartbeat]) -> Gen[None, ValidationError]:
    state = yield from ctx.state
    yield from ctx.set_state(Heartbeat(beats=state.beats + 1))


heartbeat = Continuous.make(Heartbeat, Continuous.every("2 seconds"), beat)


# -- a debounce batching clicks --------------------------------------------------------------


class Click(msgspec.Struct, frozen=True):
    page: str


class Clicks(msgspec.Struct, frozen=True):
    pages: list[str] = []


def collect(ctx: DebounceEventContext[Clicks, Click]) -> Effect[Clicks, ValidationError]:
    pages = [] if ctx.state is None else list(ctx.state.pages)
    return Effect.succeed(Clicks(pages=[*pages, ctx.event.page]))


@Effect.gen
def flush_clicks(ctx: DebounceContext[Clicks]) -> Gen[None, ValidationError]:
    state = yield from ctx.state
    yield from Effect.log_info("flushed", pages=len(state.pages), reason=ctx.flush_reason)


clicks = Debounce.make(
    Click,
    flush_clicks,
    "3 seconds",
    state_schema=Clicks,
    max_events=5,
    idle_after="1500 millis",
    on_event=collect,
)


# -- a task state machine ------------------------------------------------------------------


class Placed(msgspec.Struct, frozen=True, tag="placed"):
    item: str


class Paid(msgspec.Struct, frozen=True, tag="paid"):
    pass


OrderEvent = Placed | Paid


class Order(msgspec.Struct, frozen=True):
    item: str
    status: str
    reminders: int = 0


@Effect.gen
def on_order_event(event: OrderEvent, ctx: TaskContext[Order]) -> Gen[None, ValidationError]:
    if isinstance(event, Placed):
        yield from ctx.set_state(Order(item=event.item, status="awaiting payment"))
        yield from ctx.schedule("4 seconds")  # remind if unpaid
    else:
        state = yield from ctx.state
        if state is not None:
            yield from ctx.set_state(Order(item=state.item, status="shipped"))
            yield from ctx.schedule("3 seconds")  # then delivered


@Effect.gen
def on_order_alarm(ctx: TaskContext[Order]) -> Gen[None, ValidationError]:
    state = yield from ctx.state
    if state is None:
        return
    if state.status == "awaiting payment":
        yield from ctx.set_state(
            Order(item=state.item, status=state.status, reminders=state.reminders + 1)
        )
        yield from ctx.schedule("4 seconds")
    elif state.status == "shipped":
        yield from ctx.set_state(Order(item=state.item, status="delivered"))


orders = Task.make(Order, OrderEvent, on_order_event, on_order_alarm)


def build_demo_jobs(db: str) -> DurableJobs:
    """The demo's jobs on the SQLite file ``db``."""
    definitions: dict[str, JobDefinition] = {
        "heartbeat": heartbeat,
        "clicks": clicks,
        "orders": orders,
        "importCsv": import_csv,
    }
    return create_durable_jobs(definitions, storage=f"sqlite:///{db}")


# -- the live run ----------------------------------------------------------------------------


class _Printer:
    def __init__(self, started: datetime) -> None:
        self.started = started
        self.closed = False

    def __call__(self, event: Event) -> None:
        line = _describe(event)
        if line is None or self.closed:
            return
        elapsed = (event.timestamp - self.started).total_seconds()
        try:
            sys.stdout.write(f"[{max(elapsed, 0):5.1f}s] {line}\n")
            sys.stdout.flush()
        except BrokenPipeError:  # output piped into `head` and closed: keep running quietly
            self.closed = True


def _describe(event: Event) -> str | None:
    wire = event.to_wire()
    kind = event.type
    run_id = str(wire.get("runId", ""))
    ident = run_id[-6:] if run_id else wire.get("id", "")
    who = f"{wire.get('jobName') or wire.get('workflow') or ''}/{ident}"
    if kind == "job.executed":
        return f"{who:<18} executed (run {wire.get('runCount') or '-'})"
    if kind == "debounce.flushed":
        count = wire.get("eventCount")
        noun = "click" if count == 1 else "clicks"
        return f"{who:<18} flushed {count} {noun} ({wire.get('reason')})"
    if kind == "debounce.started":
        return f"{who:<18} batch opened"
    if kind == "task.scheduled":
        return f"{who:<18} alarm set by {wire.get('trigger')}"
    if kind in ("job.failed", "job.retryExhausted", "worker:error", "run:fail"):
        return f"{who:<18} {kind}: {wire.get('error') or wire.get('reason')}"
    if kind == "run:progress":
        progress = wire.get("progress")
        if isinstance(progress, dict) and progress.get("total"):
            done, total = int(progress["current"]), int(progress["total"])
            bar = "#" * done + "." * max(total - done, 0)
            return f"{who:<18} import [{bar}] {done}/{total} {progress.get('message') or ''}"
        return None
    if kind == "run:trigger":
        return f"{who:<18} import triggered"
    if kind == "run:complete":
        return f"{who:<18} import completed"
    return None


async def _drive(jobs: DurableJobs, stop: asyncio.Event, seconds: float) -> None:
    client = jobs.client
    rng = random.Random()
    loop = asyncio.get_running_loop()
    deadline = loop.time() + seconds
    order_no = 0
    tick = 0
    while not stop.is_set() and loop.time() < deadline:
        tick += 1
        if rng.random() < 0.6:  # bursts of clicks
            for _ in range(rng.randint(1, 3)):
                page = rng.choice(["/", "/pricing", "/docs", "/blog"])
                await Effect.run_async(client.debounce(clicks).add(id="site", event=Click(page)))
        if tick % 6 == 1:
            order_no += 1
            oid = f"order-{order_no}"
            await Effect.run_async(client.task(orders).send(id=oid, event=Placed(item="book")))
        if tick % 6 == 4 and order_no:
            await Effect.run_async(client.task(orders).send(id=f"order-{order_no}", event=Paid()))
        if tick % 20 == 2:
            await trigger_import(jobs)
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(stop.wait(), timeout=1.0)


def _dashboard(jobs: DurableJobs, port: int) -> Any:
    """The demo's dashboard server on 127.0.0.1 (``port``, else any free one), or ``None``
    when ``port`` is negative or the web extra is missing."""
    if port < 0:
        return None
    try:
        from durable_effect.web import create_app
        from durable_effect.web._serve import Server
    except ImportError:
        sys.stdout.write("(no dashboard: pip install 'durable_effect[web]')\n")
        return None
    app = create_app(jobs)
    try:
        return Server(app, "127.0.0.1", port, handle_signals=False)
    except OSError:
        return Server(app, "127.0.0.1", 0, handle_signals=False)


async def run_demo(*, db: str, seconds: float, port: int = 8000) -> int:
    """Run the demo for ``seconds`` (or until Ctrl-C), serving its dashboard on ``port``;
    returns the exit code."""
    Path(db).parent.mkdir(parents=True, exist_ok=True)
    jobs = build_demo_jobs(db)
    async with jobs:
        started = jobs.clock.now()
        result = await Effect.run_async(
            jobs.client.continuous(heartbeat).start(id="demo", input=Heartbeat())
        )
        start = result.unwrap()
        status = (await Effect.run_async(jobs.client.continuous(heartbeat).status("demo"))).unwrap()
        word = "started" if start.created else "resumed"
        sys.stdout.write(
            f"durable_effect demo on {db}: heartbeat {word} at run {status.run_count}; "
            f"running for {seconds:.0f} s (Ctrl-C to stop)\n"
        )
        server = _dashboard(jobs, port)
        serving = None
        if server is not None:
            sys.stdout.write(f"dashboard: {server.url} (open it while the demo runs)\n")
            sys.stdout.flush()
            serving = asyncio.ensure_future(server.serve())
        jobs.on("*", _Printer(started))
        worker = jobs.worker(concurrency=8, poll_interval=0.5)
        stop = asyncio.Event()
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, stop.set)
        worker_task = loop.create_task(worker.run())
        try:
            await _drive(jobs, stop, seconds)
        finally:
            await worker.stop()
            await worker_task
            if server is not None and serving is not None:
                server.stop()
                await serving
            for sig in (signal.SIGINT, signal.SIGTERM):
                loop.remove_signal_handler(sig)
        handle = jobs.client.continuous(heartbeat)
        final = (await Effect.run_async(handle.get_state("demo"))).unwrap()
        sys.stdout.write(
            f"stopped; heartbeat has beaten {final.state.beats if final.state else 0} times "
            "in total. Run `make demo` again to resume.\n"
        )
    return 0
