"""PostgreSQL faults against the real server, under a real worker and real clients.

Each scenario runs the same model: clients send events (each with its own ``event_id``) to a
few Task instances; ``on_event`` appends the event's id to the state and schedules
``execute`` at once; ``execute`` records how many events it saw. A worker fires the alarms.
While the fault lasts, calls fail with `StorageError` (and nothing else) and the worker
reports ``worker:error``; a client retries a failed send with the same ``event_id`` until it
is applied or `DuplicateEventError` says it already was. Then, with nobody intervening, the
worker and the clients recover, and the committed state is checked:

* nothing lost: every event is in its instance's state;
* nothing doubled: no event is there twice;
* nothing stuck: every instance's ``execute`` saw all its events, and no alarm is left.

The faults: ``pg_terminate_backend`` of the pool's (and the listener's) connections in the
middle of commits and claims; ``max_connections`` exhausted while every connection of the
app is cut; a server restart. A workflow run whose step is running when the server
restarts completes, its steps recorded once.
"""

from __future__ import annotations

import asyncio
import contextlib
import itertools
import time
from collections import Counter
from collections.abc import AsyncIterator, Awaitable, Callable
from datetime import timedelta
from typing import Any

import msgspec
import psycopg
import pytest

from durable_effect import (
    DuplicateEventError,
    Effect,
    Gen,
    StorageError,
    Task,
    TaskContext,
    TaskEventContext,
    ValidationError,
)
from durable_effect._events import Event
from durable_effect._jobs import DurableJobs, create_durable_jobs
from durable_effect._worker import WorkerError
from durable_effect.storage._postgres import PostgresStorage
from durable_effect.workflow import Step, Workflow
from tests.conftest_pg import pg_server, pg_url  # noqa: F401
from tests.pg_harness import PgServer

pytestmark = [pytest.mark.postgres, pytest.mark.live]

#: Short leases (server clock): a lease a failed call left behind frees up quickly.
LEASE_TTL = timedelta(seconds=2)
INSTANCES = 6
#: Seconds the clients keep sending once the fault is over.
AFTER = 1.0
#: Seconds the whole model may take to settle once the fault is over.
SETTLE = 60.0


class Log(msgspec.Struct):
    events: list[str] = msgspec.field(default_factory=list)
    seen: int = 0


class Add(msgspec.Struct, tag=True):
    uid: str


@Effect.gen
def on_event(event: Add, ctx: TaskEventContext[Log]) -> Gen[None, ValidationError]:
    log = (yield from ctx.state) or Log()
    yield from ctx.set_state(Log(events=[*log.events, event.uid], seen=log.seen))
    yield from ctx.schedule(timedelta(0))


@Effect.gen
def execute(ctx: TaskContext[Log]) -> Gen[None, ValidationError]:
    log = yield from ctx.state
    if log is not None:
        yield from ctx.set_state(Log(events=log.events, seen=len(log.events)))


logger = Task.make(Log, Add, on_event, execute)


def app(url: str) -> DurableJobs:
    storage = PostgresStorage(url, max_size=4, timeout=1.0)
    return create_durable_jobs({"log": logger}, storage=storage, lease_ttl=LEASE_TTL)


async def admin(url: str) -> psycopg.AsyncConnection[tuple[Any, ...]]:
    return await psycopg.AsyncConnection.connect(url, autocommit=True, application_name="chaos")


# -- the faults ------------------------------------------------------------------------------

_ACTIVE = """
SELECT pid, query FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND application_name LIKE 'durable_effect%%' AND state = 'active'"""

_ALL = """
SELECT pg_terminate_backend(pid) FROM pg_stat_activity
WHERE datname = current_database() AND pid <> pg_backend_pid()
  AND application_name LIKE 'durable_effect%%'"""


async def terminate_mid_statement(url: str, _: PgServer) -> dict[str, int]:
    """Terminate the app's backends while they run commits and claims (and, every so often,
    every backend of the app, idle or not), until several of each were cut mid-statement."""
    killed: Counter[str] = Counter()
    conn = await admin(url)
    deadline = time.monotonic() + 20
    try:
        rounds = 0
        while killed["commit"] < 5 or killed["claim"] < 3:
            assert time.monotonic() < deadline, f"cut too few statements: {dict(killed)}"
            rounds += 1
            for pid, query in await (await conn.execute(_ACTIVE)).fetchall():
                if "commit_one" in query or "commit_writes" in query:
                    kind = "commit"
                elif "claim_due" in query:
                    kind = "claim"
                elif "acquire" in query:
                    kind = "acquire"
                else:
                    continue
                await conn.execute("SELECT pg_terminate_backend(%s)", (pid,))
                killed[kind] += 1
            if rounds % 50 == 0:
                killed["any"] += len(await (await conn.execute(_ALL)).fetchall())
            await asyncio.sleep(0.001)
    finally:
        await conn.close()
    return dict(killed)


_APP_CONNECTIONS = """
SELECT count(*) FROM pg_stat_activity
WHERE datname = current_database() AND application_name LIKE 'durable_effect%%'"""


async def exhaust_connections(url: str, _: PgServer) -> dict[str, int]:
    """Take every connection slot of the server and cut every connection of the app (the
    freed slots taken too, until the app holds none), wait 3 s, then give the slots back."""
    hogs: list[psycopg.AsyncConnection[tuple[Any, ...]]] = []

    async def take_every_slot() -> None:
        while True:
            try:
                hogs.append(await admin(url))
            except psycopg.OperationalError as exc:
                full = "too many" in str(exc) or "remaining connection slots" in str(exc)
                if not full:
                    raise
                return
            assert len(hogs) < 1000

    try:
        await take_every_slot()
        left = -1
        for _attempt in range(100):
            await hogs[-1].execute(_ALL)
            await take_every_slot()
            ((left,),) = await (await hogs[-1].execute(_APP_CONNECTIONS)).fetchall()
            if left == 0:
                break
        assert left == 0, "the app kept a connection"
        started = time.monotonic()
        with pytest.raises(StorageError):  # a new process cannot even open its storage
            await PostgresStorage(url, timeout=1.0).open()
        await asyncio.sleep(max(0.0, 3 - (time.monotonic() - started)))
    finally:
        for hog in hogs:
            await hog.close()
    return {"hogs": len(hogs)}


async def restart_server(_: str, server: PgServer) -> dict[str, int]:
    await asyncio.to_thread(server.stop)
    try:
        await asyncio.sleep(1)
    finally:
        await asyncio.to_thread(server.start)
    return {"restarts": 1}


FAULTS: dict[str, Callable[[str, PgServer], Awaitable[dict[str, int]]]] = {
    "pg_terminate_backend during commits and claims": terminate_mid_statement,
    "max_connections exhausted": exhaust_connections,
    "server restart": restart_server,
}


# -- the model -------------------------------------------------------------------------------


class Clients:
    """Senders of every event; a failed send is retried with the same ``event_id``."""

    def __init__(self, jobs: DurableJobs) -> None:
        self.handle = jobs.client.task(logger)
        self.failures: Counter[str] = Counter()
        self.duplicates = 0
        self.sent: dict[str, list[str]] = {f"i{n}": [] for n in range(INSTANCES)}
        self.stop = asyncio.Event()

    async def send_all(self, instance: str) -> None:
        """Send events until `stop` is set (each one until it is applied)."""
        for k in itertools.count():
            if self.stop.is_set():
                return
            uid = f"{instance}-e{k}"
            while True:
                try:
                    await self.handle.send(id=instance, event=Add(uid), event_id=uid)
                except DuplicateEventError:
                    self.duplicates += 1  # an earlier, failed-looking send had applied it
                except StorageError:
                    self.failures["StorageError"] += 1
                    await asyncio.sleep(0.05)
                    continue
                except Exception as exc:  # anything else is a bug the model reports
                    self.failures[type(exc).__name__] += 1
                    await asyncio.sleep(0.05)
                    continue
                break
            self.sent[instance].append(uid)
            await asyncio.sleep(0.005)


async def settled(jobs: DurableJobs, clients: Clients) -> bool:
    for instance, uids in clients.sent.items():
        got = await jobs.client.task(logger).get_state(instance)
        if got.state is None or got.scheduled_at is not None:
            return False
        if got.state.seen != len(got.state.events) or len(got.state.events) != len(uids):
            return False
    return True


@contextlib.asynccontextmanager
async def worker_of(jobs: DurableJobs) -> AsyncIterator[list[Event]]:
    errors: list[Event] = []
    jobs.on("worker:error", errors.append)
    worker = jobs.worker(concurrency=4, poll_interval=0.2)
    task = asyncio.create_task(worker.run())
    try:
        yield errors
    finally:
        await worker.stop()
        await asyncio.wait_for(task, 30)


@pytest.mark.parametrize("fault", FAULTS)
async def test_a_fault_fails_calls_with_storage_error_and_nothing_is_lost_doubled_or_stuck(
    pg_server: PgServer,  # noqa: F811
    pg_url: str,  # noqa: F811
    fault: str,
) -> None:
    if fault == "server restart" and not pg_server.owned:
        pytest.skip("the server named by DURABLE_EFFECT_PG_URL is not ours to restart")
    async with app(pg_url) as jobs, worker_of(jobs) as worker_errors:
        clients = Clients(jobs)
        senders = asyncio.gather(*(clients.send_all(i) for i in clients.sent))
        await asyncio.sleep(0.3)  # some traffic first
        try:
            hit = await FAULTS[fault](pg_url, pg_server)
        finally:
            if not pg_server.running:
                await asyncio.to_thread(pg_server.start)
        fault_over = time.monotonic()
        await asyncio.sleep(AFTER)
        clients.stop.set()
        await asyncio.wait_for(senders, SETTLE)
        deadline = time.monotonic() + SETTLE
        while True:
            with contextlib.suppress(StorageError):
                if await settled(jobs, clients):
                    break
            assert time.monotonic() < deadline, "the model did not settle: something is stuck"
            await asyncio.sleep(0.1)
        recovered = time.monotonic() - fault_over
        states = {i: (await jobs.client.task(logger).get_state(i)).state for i in clients.sent}

    # Calls failed with StorageError, and nothing else, while the fault lasted.
    assert set(clients.failures) <= {"StorageError"}, (dict(clients.failures), hit)
    assert clients.failures["StorageError"] > 0, f"the fault never reached a client call ({hit})"
    # The worker reported it (claims failing), then recovered by itself.
    reported = [e for e in worker_errors if isinstance(e, WorkerError)]
    assert reported, f"no worker:error during the fault ({hit})"
    assert all("StorageError" in e.error for e in reported)
    for instance, log in states.items():
        assert log is not None
        doubled = [uid for uid, n in Counter(log.events).items() if n > 1]
        assert doubled == [], f"{instance}: doubled {doubled}"
        assert sorted(log.events) == sorted(clients.sent[instance]), f"{instance}: lost events"
        assert log.seen == len(log.events)
    assert recovered < SETTLE


# -- a workflow step under a restart -----------------------------------------------------------


class Order(msgspec.Struct):
    order_id: str


async def test_a_restart_during_a_workflow_step_completes_the_run_with_each_step_once(
    pg_server: PgServer,  # noqa: F811
    pg_url: str,  # noqa: F811
) -> None:
    if not pg_server.owned:
        pytest.skip("the server named by DURABLE_EFFECT_PG_URL is not ours to restart")
    ran: list[str] = []
    in_b = asyncio.Event()
    finish_b = asyncio.Event()

    async def step_b() -> str:
        ran.append("b")
        in_b.set()
        await finish_b.wait()
        return "b-done"

    def side(name: str, value: int) -> Effect[int]:
        def run() -> int:
            ran.append(name)
            return value

        return Effect.sync(run)

    @Effect.gen
    def run(step: Step, order: Order) -> Gen[str, Exception]:
        a = yield from step.run("a", side("a", 1))
        b = yield from step.run("b", Effect.promise(step_b))
        c = yield from step.run("c", side("c", 3))
        return f"{order.order_id}:{a}:{b}:{c}"

    flow = Workflow.make(Order, run)
    storage = PostgresStorage(pg_url, max_size=4, timeout=1.0)
    jobs = create_durable_jobs({"flow": flow}, storage=storage, lease_ttl=LEASE_TTL)
    async with jobs, worker_of(jobs) as worker_errors:
        handle = jobs.client.workflow(flow)
        run_id = (await handle.trigger(Order("o1"))).run_id
        await asyncio.wait_for(in_b.wait(), 20)
        await asyncio.to_thread(pg_server.stop)
        try:
            finish_b.set()  # step b ends while the server is down: its checkpoint fails
            await asyncio.sleep(1)
            with pytest.raises(StorageError):
                await handle.get_run(run_id)
        finally:
            await asyncio.to_thread(pg_server.start)
        deadline = time.monotonic() + SETTLE
        while True:
            with contextlib.suppress(StorageError):
                got = await handle.get_run(run_id)
                if got.status in ("completed", "failed", "cancelled"):
                    break
            assert time.monotonic() < deadline, "the run is stuck"
            await asyncio.sleep(0.1)
        steps = await handle.steps(run_id)

    assert (got.status, got.output) == ("completed", "o1:1:b-done:3")
    assert [(s.name, s.output) for s in steps] == [("a", 1), ("b", "b-done"), ("c", 3)]
    # a ran once (replayed after the restart), b again (its completion was never
    # recorded: at least once), c once.
    assert Counter(ran) == {"a": 1, "b": 2, "c": 1}
    assert worker_errors, "the worker did not report the server going away"
