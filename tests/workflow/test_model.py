"""A Hypothesis state machine: workflow runs against a model.

The workflow: step ``a`` (records its execution), then — when the input's ``sleep`` is not
0 — a durable ``step.sleep("nap", …)``, then step ``b``, which fails its first
``fail_first`` attempts (a durable retry policy of 3 attempts, 10 s apart), and the run
returns. Triggers may carry an idempotency key and a concurrency key (limit 1, with or
without ``coalesce="skip"``); the machine also runs the worker, moves time, cancels,
retriggers and deletes runs.

The model simulates the runs in time order: executions, durable sleeps and retries, the
concurrency key's slot (held while a run sleeps) and the backoff of a pending run waiting
for it, the wake-up of that run when the holder ends. Invariants: every run's status,
attempt count, start and end instants match the model; every step effect succeeded at most
once per run (exactly once for each completed step); at most one pending run per
concurrency key; ``list_runs(status=…)`` agrees with the model; idempotent triggers return
the same run.

Every sleep and retry delay is a whole number of seconds plus 500 µs, while a waiting run
looks at its key at whole seconds: so two runs of one key are never due at the same instant
(the model would not know which one the worker takes first) — the model asserts it.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections import Counter
from datetime import datetime, timedelta
from typing import ClassVar, Literal, TypeVar

import attrs
import msgspec
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import (
    RuleBasedStateMachine,
    initialize,
    invariant,
    precondition,
    rule,
)

from durable_effect import (
    ConflictError,
    Effect,
    Gen,
    InstanceNotFoundError,
    InvalidStateError,
    RetryExhaustedError,
    TaggedError,
)
from durable_effect._backoff import Backoff, Retry
from durable_effect.testing import TestRuntime
from durable_effect.workflow import Step, Workflow, WorkflowDefinition
from durable_effect.workflow._results import RunStatus
from tests.workflow._support import T0

T = TypeVar("T")

STATUSES: tuple[RunStatus, ...] = (
    "pending",
    "leased",
    "sleeping",
    "completed",
    "failed",
    "cancelled",
)
FINISHED = frozenset({"completed", "failed", "cancelled", "deleted"})
FRACTION = timedelta(microseconds=500)
RETRY_DELAY = timedelta(seconds=10) + FRACTION
ATTEMPTS = 3
KEY_FULL_FIRST_DELAY = timedelta(seconds=1)
KEY_FULL_MAX_DELAY = timedelta(seconds=30)


class Plan(msgspec.Struct, frozen=True):
    """A run's input: how long it naps (seconds, 0: no nap) and how many ``b`` fails."""

    sleep: int
    fail_first: int


SLEEPS = st.sampled_from([0, 5, 30])
FAILS = st.sampled_from([0, 1, 3])
PLANS = st.builds(Plan, sleep=SLEEPS, fail_first=FAILS)


@attrs.frozen(kw_only=True, eq=False)
class Flaky(TaggedError):
    """The failure of an attempt of step ``b``."""

    tag: ClassVar[Literal["Flaky"]] = "Flaky"
    attempt: int


class Sides:
    """What the step effects really did: successful executions and attempts of ``b``."""

    def __init__(self) -> None:
        self.succeeded: Counter[tuple[str, str]] = Counter()
        self.b_attempts: Counter[str] = Counter()

    def workflow(self) -> WorkflowDefinition[Plan, int]:
        sides = self
        policy = Retry(ATTEMPTS, delay=Backoff.constant(RETRY_DELAY), jitter=False)

        def step_a(run_id: str) -> Effect[int]:
            def run() -> int:
                sides.succeeded[run_id, "a"] += 1
                return 1

            return Effect.sync(run)

        def step_b(run_id: str, plan: Plan) -> Effect[int, Flaky]:
            def run() -> Effect[int, Flaky]:
                sides.b_attempts[run_id] += 1
                attempt = sides.b_attempts[run_id]
                if attempt <= plan.fail_first:
                    return Effect.fail(Flaky(attempt=attempt))
                sides.succeeded[run_id, "b"] += 1
                return Effect.succeed(2)

            return Effect.suspend(run)

        @Effect.gen
        def run(step: Step, plan: Plan) -> Gen[int, RetryExhaustedError]:
            a = yield from step.run("a", step_a(step.run_id))
            if plan.sleep:
                yield from step.sleep("nap", timedelta(seconds=plan.sleep) + FRACTION)
            b = yield from step.run("b", step_b(step.run_id, plan), retry=policy)
            return a + b

        return Workflow.make(Plan, run, output_schema=int)


@attrs.define
class ModelRun:
    """What the model knows of one run."""

    id: str
    plan: Plan
    key: str | None
    status: str = "pending"  # a RunStatus, or "deleted"
    next_at: datetime | None = None  # its alarm
    attempt: int = 0
    started_at: datetime | None = None
    completed_at: datetime | None = None
    polls: int = 0  # looks at a full concurrency key since it last got a slot
    a_done: bool = False
    nap_wake: datetime | None = None
    nap_done: bool = False
    b_attempts: int = 0


class WorkflowMachine(RuleBasedStateMachine):
    storage_kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.mkdtemp(prefix="workflow-model-")
        url = "memory://" if self.storage_kind == "memory" else f"sqlite:///{self.tmp}/m.db"
        self.sides = Sides()
        self.wf = self.sides.workflow()
        self.rt = TestRuntime({"wf": self.wf}, storage=url, start=T0)
        self.handle = self.rt.client.workflow(self.wf)
        self.now = T0
        self.runs: dict[str, ModelRun] = {}
        self.order: list[str] = []  # run ids, in creation order
        self.idem: dict[str, str] = {}  # idempotency key -> run id
        self.holder: dict[str, str] = {}  # concurrency key -> the run that got its slot
        self.checked_steps: set[str] = set()

    def call(self, effect: Effect[T, BaseException]) -> T:
        return self.loop.run_until_complete(Effect.run_promise(effect))

    # -- the model's simulation ----------------------------------------------------------

    def pending_of(self, key: str) -> ModelRun | None:
        found = [r for r in self.runs.values() if r.key == key and r.status == "pending"]
        assert len(found) <= 1
        return found[0] if found else None

    def simulate(self, until: datetime) -> None:
        """Run the model's alarms due up to ``until``, in time order."""
        while True:
            due_times = [r.next_at for r in self.runs.values() if r.next_at is not None]
            when = min(due_times, default=None)
            if when is None or when > until:
                break
            self.now = when
            due = [r for r in self.runs.values() if r.next_at is not None and r.next_at <= when]
            keys = [r.key for r in due if r.key is not None]
            assert len(keys) == len(set(keys)), "two runs of one key due at once"
            for r in due:
                self.execute(r)
        self.now = max(self.now, until)

    def execute(self, r: ModelRun) -> None:
        now = self.now
        r.next_at = None
        if r.status == "pending" and r.key is not None:
            holder = self.holder.get(r.key)
            if holder is not None and holder != r.id and self.runs[holder].status not in FINISHED:
                r.polls += 1
                delay = min(KEY_FULL_FIRST_DELAY * 2 ** min(r.polls - 1, 10), KEY_FULL_MAX_DELAY)
                r.next_at = now + delay
                return
            self.holder[r.key] = r.id
        r.polls = 0
        r.attempt += 1
        r.started_at = r.started_at or now
        r.status = "leased"
        r.a_done = True
        if r.plan.sleep and not r.nap_done:
            if r.nap_wake is None:
                r.nap_wake = now + timedelta(seconds=r.plan.sleep) + FRACTION
            if now < r.nap_wake:
                self.sleep(r, r.nap_wake)
                return
            r.nap_done = True
        r.b_attempts += 1
        if r.b_attempts <= r.plan.fail_first:
            if r.b_attempts < ATTEMPTS:
                self.sleep(r, now + RETRY_DELAY)
                return
            self.end(r, "failed")
            return
        self.end(r, "completed")

    def sleep(self, r: ModelRun, wake: datetime) -> None:
        r.status = "sleeping"
        r.next_at = wake

    def end(self, r: ModelRun, status: str) -> None:
        r.status = status
        r.completed_at = self.now
        if r.key is None:
            return
        if self.holder.get(r.key) == r.id:
            del self.holder[r.key]
        waiting = self.pending_of(r.key)
        if waiting is not None and waiting.next_at is not None and waiting.next_at > self.now:
            waiting.next_at = self.now  # woken: the slot is free

    def add(self, run_id: str, plan: Plan, key: str | None) -> None:
        """A new pending run, due now."""
        assert run_id not in self.runs
        self.runs[run_id] = ModelRun(id=run_id, plan=plan, key=key, next_at=self.now)
        self.order.append(run_id)

    def pick(self, index: int) -> ModelRun:
        return self.runs[self.order[index % len(self.order)]]

    # -- rules ---------------------------------------------------------------------------

    @initialize(
        holder=PLANS,
        waiting=st.one_of(st.none(), PLANS),
        others=st.lists(PLANS, max_size=2),
    )
    def some_runs(self, holder: Plan, waiting: Plan | None, others: list[Plan]) -> None:
        """Start with a run of key ``k`` taken by the worker, maybe a second one of ``k``
        waiting for its slot, and a few runs without a key."""
        self.trigger(holder.sleep, holder.fail_first, None, "k", False)
        self.run_worker()
        if waiting is not None:
            self.trigger(waiting.sleep, waiting.fail_first, None, "k", False)
        for plan in others:
            self.trigger(plan.sleep, plan.fail_first, None, None, False)

    @rule(
        sleep=SLEEPS,
        fail_first=FAILS,
        idem=st.sampled_from([None, None, "i1", "i2"]),
        key=st.sampled_from([None, "k", "k"]),
        skip=st.booleans(),
    )
    def trigger_rule(
        self, sleep: int, fail_first: int, idem: str | None, key: str | None, skip: bool
    ) -> None:
        self.trigger(sleep, fail_first, idem, key, skip)

    def trigger(
        self, sleep: int, fail_first: int, idem: str | None, key: str | None, skip: bool
    ) -> None:
        plan = Plan(sleep=sleep, fail_first=fail_first)
        coalesce: Literal["skip"] | None = "skip" if skip else None
        effect = self.handle.trigger(
            plan, idempotency_key=idem, concurrency_key=key, coalesce=coalesce
        )
        if idem is not None and idem in self.idem:
            result = self.call(effect)
            assert (result.disposition, result.run_id) == ("idempotent", self.idem[idem])
            return
        pending = None if key is None else self.pending_of(key)
        if pending is not None and not skip:
            with pytest.raises(ConflictError):
                self.call(effect)
            return
        result = self.call(effect)
        if pending is not None:
            assert (result.disposition, result.run_id) == ("coalesced", pending.id)
            return
        assert result.disposition == "created"
        self.add(result.run_id, plan, key)
        if idem is not None:
            self.idem[idem] = result.run_id

    @rule()
    def run_worker(self) -> None:
        self.loop.run_until_complete(self.rt.run_until_idle())
        self.simulate(self.now)

    @rule(seconds=st.sampled_from([1, 2, 5, 10, 11, 30, 60]))
    def advance(self, seconds: int) -> None:
        self.loop.run_until_complete(self.rt.advance(timedelta(seconds=seconds)))
        self.simulate(self.now + timedelta(seconds=seconds))

    @precondition(lambda self: bool(self.order))
    @rule(index=st.integers(min_value=0, max_value=50))
    def cancel(self, index: int) -> None:
        r = self.pick(index)
        effect = self.handle.cancel(r.id)
        if r.status == "deleted":
            with pytest.raises(InstanceNotFoundError):
                self.call(effect)
        elif r.status in FINISHED:
            with pytest.raises(InvalidStateError):
                self.call(effect)
        else:
            self.call(effect)
            r.status = "cancelled"  # a holder keeps its slot until a look finds it stale
            r.completed_at = self.now
            r.next_at = None

    @precondition(lambda self: self.active_holder() is not None)
    @rule()
    def cancel_the_key_holder(self) -> None:
        """Cancel the run holding key ``k``'s slot: its slot is found free by the waiting
        run's next look at the key (a cancel does not wake it)."""
        holder = self.active_holder()
        assert holder is not None
        self.cancel(self.order.index(holder.id))

    def active_holder(self) -> ModelRun | None:
        run_id = self.holder.get("k")
        run = None if run_id is None else self.runs[run_id]
        return None if run is None or run.status in FINISHED else run

    @precondition(lambda self: bool(self.order))
    @rule(index=st.integers(min_value=0, max_value=50))
    def retrigger(self, index: int) -> None:
        r = self.pick(index)
        effect = self.handle.retrigger(r.id)
        if r.status == "deleted":
            with pytest.raises(InstanceNotFoundError):
                self.call(effect)
            return
        if r.status not in FINISHED:
            with pytest.raises(InvalidStateError):
                self.call(effect)
            return
        if r.key is not None and self.pending_of(r.key) is not None:
            with pytest.raises(ConflictError):
                self.call(effect)
            return
        result = self.call(effect)
        assert result.disposition == "created"
        self.add(result.run_id, r.plan, r.key)

    @precondition(lambda self: bool(self.order))
    @rule(index=st.integers(min_value=0, max_value=50))
    def delete(self, index: int) -> None:
        r = self.pick(index)
        effect = self.handle.delete_run(r.id)
        if r.status == "deleted":
            with pytest.raises(InstanceNotFoundError):
                self.call(effect)
        elif r.status not in FINISHED:
            with pytest.raises(InvalidStateError):
                self.call(effect)
        else:
            self.call(effect)
            r.status = "deleted"
            for idem, run_id in list(self.idem.items()):
                if run_id == r.id:
                    del self.idem[idem]

    # -- invariants ----------------------------------------------------------------------

    @invariant()
    def the_clock_agrees(self) -> None:
        assert self.rt.clock.now() == self.now

    @invariant()
    def runs_match_the_model(self) -> None:
        listed = {run.id: run for run in self.call(self.handle.list_runs(limit=1000))}
        alive = {rid: r for rid, r in self.runs.items() if r.status != "deleted"}
        assert set(listed) == set(alive)
        for rid, r in alive.items():
            run = listed[rid]
            assert (run.status, run.attempt) == (r.status, r.attempt), rid
            assert (run.started_at, run.completed_at) == (r.started_at, r.completed_at), rid
            assert run.concurrency_key == r.key
            if r.status == "completed":
                assert run.output == 3
            if r.status == "failed":
                assert run.error is not None
                assert run.error.startswith("RetryExhaustedError")

    @invariant()
    def list_runs_by_status_agrees(self) -> None:
        for status in STATUSES:
            got = [run.id for run in self.call(self.handle.list_runs(status=status, limit=1000))]
            want = [rid for rid in reversed(self.order) if self.runs[rid].status == status]
            assert got == want, status  # newest first

    @invariant()
    def at_most_one_pending_run_per_key(self) -> None:
        pending = self.call(self.handle.list_runs(status="pending", limit=1000))
        keys = [run.concurrency_key for run in pending if run.concurrency_key is not None]
        assert len(keys) == len(set(keys))

    @invariant()
    def steps_ran_once(self) -> None:
        for rid, r in self.runs.items():
            assert self.sides.succeeded[rid, "a"] == (1 if r.a_done else 0), rid
            b_done = r.b_attempts > r.plan.fail_first  # b's success ends the run
            assert self.sides.succeeded[rid, "b"] == (1 if b_done else 0), rid
            assert self.sides.b_attempts[rid] == r.b_attempts, rid
            if r.status == "completed" and rid not in self.checked_steps:
                self.checked_steps.add(rid)
                records = self.call(self.handle.steps(rid))
                names = ["a", "nap", "b"] if r.plan.sleep else ["a", "b"]
                assert [s.name for s in records] == names
                assert all(s.status == "completed" for s in records)
                assert records[-1].attempts == r.plan.fail_first + 1

    def teardown(self) -> None:
        try:
            self.loop.run_until_complete(self.rt.aclose())
        finally:
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)


class SqliteWorkflowMachine(WorkflowMachine):
    storage_kind = "sqlite"


TestWorkflowModelMemory = WorkflowMachine.TestCase
TestWorkflowModelMemory.settings = settings(max_examples=50, stateful_step_count=20, deadline=None)
TestWorkflowModelSqlite = SqliteWorkflowMachine.TestCase
TestWorkflowModelSqlite.settings = settings(max_examples=15, stateful_step_count=20, deadline=None)
