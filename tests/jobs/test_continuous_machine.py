"""A Hypothesis state machine: Continuous instances against a small model.

Operations: start, trigger, advance, pause, resume, terminate over two ids of an
every-10-minutes job whose runs all succeed. The model knows, per instance, its status, its
run count and its next tick (anchored at the start instant); after every step the real
status, run count, next run and state must agree with it.
"""

from __future__ import annotations

import asyncio
import tempfile
from datetime import datetime, timedelta

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from durable_effect.jobs._continuous import (
    ContinuousPauseResult,
    ContinuousResumeResult,
    ContinuousStartResult,
    ContinuousTerminateResult,
    ContinuousTriggerResult,
)
from durable_effect.storage import Storage
from durable_effect.testing._runtime import TestRuntime
from tests.jobs._continuous_support import T0, Counter, Probe, counter_job
from tests.jobs.conftest import storage_for

INTERVAL = timedelta(minutes=10)
IDS = st.sampled_from(["a", "b:x"])
STEPS = st.sampled_from(
    [timedelta(minutes=m) for m in (1, 3, 5, 9, 10, 11, 25, 60)] + [timedelta(seconds=1)]
)


@attrs.define
class Model:
    status: str
    run_count: int
    anchor: datetime
    next_tick: datetime | None

    def first_tick_after(self, now: datetime) -> datetime:
        return self.anchor + INTERVAL * ((now - self.anchor) // INTERVAL + 1)


class ContinuousMachine(RuleBasedStateMachine):
    storage = "memory://"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.TemporaryDirectory()
        url: str | Storage = (
            storage_for("postgres", None)
            if self.storage == "postgres"
            else self.storage.replace("{tmp}", self.tmp.name)
        )
        self.rt = TestRuntime({"counter": counter_job(Probe())}, storage=url)
        self.loop.run_until_complete(self.rt.jobs.open())
        self.h = self.rt.client.continuous("counter")
        self.model: dict[str, Model] = {}
        self.now = T0

    def teardown(self) -> None:
        self.loop.run_until_complete(self.rt.aclose())
        self.loop.close()
        self.tmp.cleanup()

    @rule(id=IDS)
    def start(self, id: str) -> None:
        result = self.loop.run_until_complete(self.h.start(id=id, input=Counter(n=0)))
        existing = self.model.get(id)
        if existing is not None:
            assert result == ContinuousStartResult(
                created=False,
                instance_id=f"continuous:counter:{id}",
                status="running" if existing.status == "running" else "paused",
            )
            return
        assert result.created
        self.model[id] = Model("running", 1, self.now, self.now + INTERVAL)

    @rule(id=IDS)
    def trigger(self, id: str) -> None:
        result = self.loop.run_until_complete(self.h.trigger(id))
        model = self.model.get(id)
        assert result == ContinuousTriggerResult(triggered=model is not None, terminated=False)
        if model is not None:
            model.run_count += 1

    @rule(step=STEPS)
    def advance(self, step: timedelta) -> None:
        self.loop.run_until_complete(self.rt.advance(step))
        target = self.now + step
        for model in self.model.values():
            if model.next_tick is not None and model.next_tick <= target:
                due = (target - model.next_tick) // INTERVAL + 1
                model.run_count += due
                model.next_tick += INTERVAL * due
        self.now = target

    @rule(id=IDS)
    def pause(self, id: str) -> None:
        result = self.loop.run_until_complete(self.h.pause(id))
        model = self.model.get(id)
        if model is None:
            assert result == ContinuousPauseResult(paused=False, status="not_found")
            return
        assert result == ContinuousPauseResult(paused=model.status == "running", status="paused")
        model.status, model.next_tick = "paused", None

    @rule(id=IDS)
    def resume(self, id: str) -> None:
        result = self.loop.run_until_complete(self.h.resume(id))
        model = self.model.get(id)
        if model is None:
            assert result == ContinuousResumeResult(resumed=False, status="not_found")
            return
        assert result == ContinuousResumeResult(resumed=model.status == "paused", status="running")
        if model.status == "paused":
            model.status, model.next_tick = "running", model.first_tick_after(self.now)

    @rule(id=IDS)
    def terminate(self, id: str) -> None:
        result = self.loop.run_until_complete(self.h.terminate(id, reason="test"))
        if self.model.pop(id, None) is None:
            assert result == ContinuousTerminateResult(terminated=False, reason="not_found")
        else:
            assert result == ContinuousTerminateResult(terminated=True, reason="test")

    @invariant()
    def agrees_with_the_model(self) -> None:
        assert self.rt.clock.now() == self.now
        for id in ("a", "b:x"):
            status = self.loop.run_until_complete(self.h.status(id))
            state = self.loop.run_until_complete(self.h.get_state(id)).state
            model = self.model.get(id)
            if model is None:
                assert status.status == "not_found"
                assert state is None
                continue
            assert (status.status, status.run_count, status.next_run_at) == (
                model.status,
                model.run_count,
                model.next_tick,
            )
            assert state == Counter(n=model.run_count, tries=model.run_count)


class SqliteContinuousMachine(ContinuousMachine):
    storage = "sqlite:///{tmp}/machine.db"


class PostgresContinuousMachine(ContinuousMachine):
    storage = "postgres"  # a fresh schema per example


TestContinuousMachine = ContinuousMachine.TestCase
TestContinuousMachine.settings = settings(max_examples=30, stateful_step_count=20, deadline=None)

TestSqliteContinuousMachine = SqliteContinuousMachine.TestCase
TestSqliteContinuousMachine.settings = settings(
    max_examples=10, stateful_step_count=15, deadline=None
)

TestPostgresContinuousMachine = pytest.mark.postgres(PostgresContinuousMachine.TestCase)
TestPostgresContinuousMachine.settings = settings(
    max_examples=8, stateful_step_count=15, deadline=None
)
