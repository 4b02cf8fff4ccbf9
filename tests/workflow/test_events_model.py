"""A Hypothesis state machine: events into runs — sends, waits, timeouts, crashes, replays.

The workflow waits three times (``w0``, ``w1``, ``w2``), each for an event of class ``A``,
``B`` or any, with or without a timeout, as the run's input says; a step after each wait
records its execution, and a durable nap after the first wait makes later executions replay
it. The machine triggers runs, sends events (with or without an ``event_id``, sometimes a
repeated one), runs the worker, moves time, and *crashes* the worker: its storage dies after
a few commits, mid-execution, and a new runtime (a restarted process) takes over once the
dead worker's leases expire.

Against a model of what was sent:

* every accepted event is consumed exactly once or still pending — the events the waits took
  (from the runs' step records) and the pending ones (``pending_events``) partition the
  accepted events, none taken twice;
* a wait of class ``C`` took an event of class ``C``, and the waits of one class took theirs
  oldest first;
* a replay gives a wait the same event (the run asserts it, and would fail otherwise): no
  run fails;
* a repeated ``event_id`` is a duplicate (never accepted twice); a finished run refuses;
* **no lost wake-up**: after the worker ran (and no crash since), a run sleeping on a wait
  has no pending event that wait could take.
"""

from __future__ import annotations

import asyncio
import contextlib
import tempfile
from collections.abc import Sequence
from datetime import datetime, timedelta
from typing import Any, TypeVar

import msgspec
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, precondition, rule

from durable_effect import Effect, Gen, InvalidStateError, StorageError
from durable_effect.storage import InstanceWrite, Lease, Storage, open_storage
from durable_effect.testing import TestRuntime
from durable_effect.workflow import Step, Workflow
from tests.jobs.conftest import storage_for
from tests.workflow._support import T0, CrashableStorage

T = TypeVar("T")

LEASE_TTL = timedelta(seconds=5)
WAITS = ("w0", "w1", "w2")


class A(msgspec.Struct, tag=True):
    n: int


class B(msgspec.Struct, tag=True):
    n: int


CLASSES: tuple[type | None, ...] = (A, B, None)


class Plan(msgspec.Struct, frozen=True):
    """For each wait: the class it takes (0: A, 1: B, 2: any) and its timeout in seconds."""

    kinds: tuple[int, int, int]
    timeouts: tuple[int | None, int | None, int | None]


PLANS = st.builds(
    Plan,
    kinds=st.tuples(*[st.sampled_from([0, 1, 2])] * 3),
    timeouts=st.tuples(*[st.sampled_from([None, None, 3, 20])] * 3),
)


def event_workflow(executions: dict[str, list[str]]) -> Any:
    @Effect.gen
    def run(step: Step, plan: Plan) -> Gen[int, Exception]:
        took: dict[str, object] = {}
        for i, name in enumerate(WAITS):
            schema = CLASSES[plan.kinds[i]]
            timeout = plan.timeouts[i]
            if timeout is None:
                got = yield from step.wait_for_event(name, schema)
            else:
                got = yield from step.wait_for_event(name, schema, timeout=timeout * 1000)
            took[name] = got

            def record(i: int = i) -> int:
                executions.setdefault(step.run_id, []).append(f"s{i}")
                return i

            yield from step.run(f"s{i}", Effect.sync(record))
            if i == 0:
                yield from step.sleep("nap", "2 s")  # later executions replay w0
        return len([v for v in took.values() if v is not None])

    return Workflow.make(Plan, run, event_schema=A | B)


class DiesAfter(CrashableStorage):
    """A storage that dies (as its process would) after ``budget`` more commits; opening it
    opens the shared store only once (a restarted process shares the same database)."""

    def __init__(self, inner: Storage, opened: list[bool]) -> None:
        super().__init__(inner)
        self.opened = opened
        self.budget: int | None = None

    async def open(self) -> None:
        if not self.opened[0]:
            await self.inner.open()
            self.opened[0] = True

    async def close(self) -> None:
        """The shared store stays open for the next runtime (closed by the machine)."""

    async def commit(
        self,
        leases: Sequence[Lease],
        writes: Sequence[InstanceWrite],
        *,
        release: bool = True,
        unless_present: Sequence[tuple[str, str]] = (),
        feed: Sequence[bytes] = (),
    ) -> None:
        if self.budget is not None:
            if self.budget <= 0:
                self.kill()
            self.budget -= 1
        await super().commit(
            leases, writes, release=release, unless_present=unless_present, feed=feed
        )


class EventsMachine(RuleBasedStateMachine):
    """See the module docstring."""

    kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp: tempfile.TemporaryDirectory[str] | None = None
        if self.kind == "sqlite":
            self.tmp = tempfile.TemporaryDirectory()
            target: str | Storage = f"sqlite:///{self.tmp.name}/events.db"
        else:
            # memory, or a fresh PostgreSQL schema. Its leases expire by the callers' clock:
            # a crash moves the test clock past the dead worker's leases (the server's own
            # clock, PostgreSQL's default, would keep them for LEASE_TTL of real time).
            target = storage_for(self.kind, None, lease_clock="caller")
        self.inner: Storage = open_storage(target) if isinstance(target, str) else target
        self.opened = [False]
        self.executions: dict[str, list[str]] = {}
        self.wf = event_workflow(self.executions)
        self.rt = self._runtime(T0)
        self.runs: list[str] = []
        #: run id -> the accepted events, by seq (as sent), and the event ids sent.
        self.accepted: dict[str, list[A | B]] = {}
        self.ids: dict[str, set[str]] = {}
        self.settled = True  # the worker ran since the last send, trigger or crash
        self.next_n = 0

    def _runtime(self, start: datetime) -> TestRuntime:
        self.storage = DiesAfter(self.inner, self.opened)
        rt = TestRuntime({"ev": self.wf}, storage=self.storage, start=start, lease_ttl=LEASE_TTL)
        self.loop.run_until_complete(rt.__aenter__())
        return rt

    def call(self, awaitable: Any) -> Any:
        return self.loop.run_until_complete(awaitable)

    @property
    def handle(self) -> Any:
        return self.rt.client.workflow(self.wf)

    # -- rules ------------------------------------------------------------------------------

    @rule(plan=PLANS)
    def trigger(self, plan: Plan) -> None:
        rid = self.call(self.handle.trigger(plan)).run_id
        self.settled = False
        self.runs.append(rid)
        self.accepted[rid] = []
        self.ids[rid] = set()

    @precondition(lambda self: self.runs)
    @rule(
        index=st.integers(0, 10),
        cls=st.sampled_from([A, B]),
        event_id=st.sampled_from([None, "x", "y", "z"]),
    )
    def send(self, index: int, cls: type[A] | type[B], event_id: str | None) -> None:
        rid = self.runs[index % len(self.runs)]
        self.next_n += 1
        event = cls(n=self.next_n)
        finished = self.call(self.handle.get_run(rid)).finished
        if finished:
            with pytest.raises(InvalidStateError):
                self.call(self.handle.send(rid, event, event_id=event_id))
            return
        result = self.call(self.handle.send(rid, event, event_id=event_id))
        self.settled = False
        if event_id is not None and event_id in self.ids[rid]:
            assert (result.accepted, result.duplicate) == (False, True)
            return
        assert (result.accepted, result.duplicate) == (True, False)
        self.accepted[rid].append(event)
        if event_id is not None:
            self.ids[rid].add(event_id)

    @rule()
    def run_worker(self) -> None:
        self.call(self.rt.run_until_idle())
        self.settled = True

    @rule(seconds=st.sampled_from([1, 2, 5, 30]))
    def advance(self, seconds: int) -> None:
        self.call(self.rt.advance(timedelta(seconds=seconds)))
        self.settled = True

    @precondition(lambda self: self.runs)
    @rule(commits=st.integers(0, 4))
    def crash(self, commits: int) -> None:
        """The worker's process dies after ``commits`` more commits; a new one starts."""
        self.storage.budget = commits
        with contextlib.suppress(StorageError):
            self.call(self.rt.run_until_idle())
        now = self.rt.clock.now()
        self.storage.kill()
        with contextlib.suppress(StorageError):
            self.call(self.rt.aclose())
        # The restarted process: the dead worker's leases expire meanwhile.
        self.rt = self._runtime(now + LEASE_TTL + timedelta(seconds=1))
        self.settled = False  # its runs wait for the next worker

    # -- invariants -------------------------------------------------------------------------

    def _taken(self, rid: str) -> dict[str, object]:
        steps = self.call(self.handle.steps(rid))
        return {s.name: s.output for s in steps if s.name in WAITS}

    @invariant()
    def every_accepted_event_is_taken_once_or_pending(self) -> None:
        for rid in self.runs:
            taken = [v for v in self._taken(rid).values() if v is not None]
            pending = [e.event for e in self.call(self.handle.pending_events(rid)).events]
            accepted = self.accepted[rid]
            assert sorted(taken + pending, key=_n) == sorted(accepted, key=_n), rid
            assert len({_n(e) for e in taken + pending}) == len(taken) + len(pending)

    @invariant()
    def waits_take_their_class_oldest_first(self) -> None:
        for rid in self.runs:
            plan: Plan = self.call(self.handle.get_run(rid)).input
            taken = self._taken(rid)
            by_class: dict[type, list[int]] = {}
            for i, name in enumerate(WAITS):
                got = taken.get(name)
                if got is None:
                    continue
                wanted = CLASSES[plan.kinds[i]]
                assert wanted is None or isinstance(got, wanted), (rid, name, got)
                by_class.setdefault(type(got), []).append(_n(got))
            for numbers in by_class.values():
                assert numbers == sorted(numbers), rid

    @invariant()
    def no_run_fails(self) -> None:
        for rid in self.runs:
            run = self.call(self.handle.get_run(rid))
            assert run.status != "failed", run.error

    @invariant()
    def no_sleeping_run_sits_on_an_event_it_could_take(self) -> None:
        if not self.settled:
            return  # a send, trigger or crash since the worker last ran
        for rid in self.runs:
            pending = self.call(self.handle.pending_events(rid))
            waiting = pending.waiting
            if waiting is None:
                continue
            run = self.call(self.handle.get_run(rid))
            assert run.status == "sleeping"
            for event in pending.events:
                fits = waiting.event is None or type(event.event).__name__ == waiting.event
                in_time = waiting.until is None or event.sent_at <= waiting.until
                assert not (fits and in_time), (rid, waiting, event)

    def teardown(self) -> None:
        try:
            self.call(self.rt.aclose())
        except StorageError:
            pass
        finally:
            self.call(self.inner.close())
            self.loop.close()
            if self.tmp is not None:
                self.tmp.cleanup()


def _n(event: object) -> int:
    assert isinstance(event, A | B)
    return event.n


class EventsMachineSqlite(EventsMachine):
    kind = "sqlite"


class EventsMachinePostgres(EventsMachine):
    kind = "postgres"


TestEventsModelMemory = EventsMachine.TestCase
TestEventsModelMemory.settings = settings(max_examples=40, stateful_step_count=25, deadline=None)
TestEventsModelSqlite = EventsMachineSqlite.TestCase
TestEventsModelSqlite.settings = settings(max_examples=10, stateful_step_count=20, deadline=None)
TestEventsModelPostgres = pytest.mark.postgres(EventsMachinePostgres.TestCase)
TestEventsModelPostgres.settings = settings(max_examples=8, stateful_step_count=20, deadline=None)
