"""A Hypothesis state machine: a Task job against a simple model.

The job: ``Add(k)`` adds ``k`` to the state and schedules execute in ``10·k`` seconds
(``k == 0`` cancels the schedule); ``Ping`` fails (nothing is written). ``execute`` adds 100
and schedules nothing. The model tracks, per instance, the event and execute counts, the state
and the scheduled instant, and from them the status.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from datetime import datetime, timedelta
from pathlib import Path
from typing import TypeVar

import attrs
import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from durable_effect import Effect, ExecutionError, Gen, ValidationError
from durable_effect.jobs._task import Task, TaskDefinition
from durable_effect.jobs._task_context import TaskContext, TaskEventContext
from durable_effect.testing._runtime import TestRuntime
from tests.jobs._task_support import T0, Add, Boom, Box, Ev, Ping
from tests.jobs.conftest import storage_for

IDS = ("a", "b:1")
T = TypeVar("T")


@Effect.gen
def on_event(event: Ev, ctx: TaskEventContext[Box]) -> Gen[None, Boom | ValidationError]:
    state = yield from ctx.state
    if isinstance(event, Ping):
        yield from ctx.set_state(Box(n=-1))
        yield from Boom(code=0)
    assert isinstance(event, Add)
    yield from ctx.set_state(Box(n=(state.n if state else 0) + event.n))
    if event.n:
        yield from ctx.schedule(timedelta(seconds=10 * event.n))
    else:
        yield from ctx.cancel_schedule()


def execute(ctx: TaskContext[Box]) -> Effect[None, ValidationError]:
    return ctx.update_state(lambda s: Box(n=s.n + 100))


JOB: TaskDefinition[Box, Ev] = Task.make(Box, Add | Ping, on_event, execute)


@attrs.define
class Model:
    event_count: int = 0
    execute_count: int = 0
    n: int = 0
    scheduled_at: datetime | None = None

    @property
    def status(self) -> str:
        return "active" if self.scheduled_at is not None else "idle"


class TaskMachine(RuleBasedStateMachine):
    storage_kind = "memory"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp = tempfile.mkdtemp(prefix="task-model-")
        # memory://, sqlite:///<tmp>/m.db, or a fresh PostgreSQL schema per example
        url = storage_for(self.storage_kind, Path(self.tmp), "m.db")
        self.rt = TestRuntime({"job": JOB}, storage=url)
        self.handle = self.rt.client.task(JOB)
        self.now = T0
        self.model: dict[str, Model] = {}

    def run(self, effect: Effect[T, BaseException]) -> T:
        return self.loop.run_until_complete(Effect.run_promise(effect))

    @rule(id_=st.sampled_from(IDS), k=st.integers(min_value=0, max_value=5))
    def send(self, id_: str, k: int) -> None:
        result = self.run(self.handle.send(id=id_, event=Add(n=k)))
        created = id_ not in self.model
        model = self.model.setdefault(id_, Model())
        model.event_count += 1
        model.n += k
        model.scheduled_at = self.now + timedelta(seconds=10 * k) if k else None
        assert result.created is created
        assert result.scheduled_at == model.scheduled_at

    @rule(id_=st.sampled_from(IDS))
    def send_failing(self, id_: str) -> None:
        with pytest.raises(ExecutionError):
            self.run(self.handle.send(id=id_, event=Ping()))

    @rule(id_=st.sampled_from(IDS))
    def trigger(self, id_: str) -> None:
        result = self.run(self.handle.trigger(id_))
        model = self.model.get(id_)
        assert result.triggered is (model is not None)
        if model is not None:
            model.execute_count += 1
            model.n += 100

    @rule(seconds=st.integers(min_value=0, max_value=60))
    def advance(self, seconds: int) -> None:
        self.loop.run_until_complete(self.rt.advance(timedelta(seconds=seconds)))
        self.now += timedelta(seconds=seconds)
        for model in self.model.values():
            if model.scheduled_at is not None and model.scheduled_at <= self.now:
                model.scheduled_at = None
                model.execute_count += 1
                model.n += 100

    @rule(id_=st.sampled_from(IDS))
    def terminate(self, id_: str) -> None:
        result = self.run(self.handle.terminate(id_))
        assert result.terminated is (id_ in self.model)
        self.model.pop(id_, None)

    @invariant()
    def matches_the_model(self) -> None:
        for id_ in IDS:
            status = self.run(self.handle.status(id_))
            state = self.run(self.handle.get_state(id_))
            model = self.model.get(id_)
            if model is None:
                assert status.status == "not_found"
                assert state.state is None
                continue
            assert status.status == model.status
            assert status.scheduled_at == model.scheduled_at
            assert (status.event_count, status.execute_count) == (
                model.event_count,
                model.execute_count,
            )
            assert state.state == Box(n=model.n)

    def teardown(self) -> None:
        try:
            self.loop.run_until_complete(self.rt.aclose())
        finally:
            self.loop.close()
            shutil.rmtree(self.tmp, ignore_errors=True)


class SqliteTaskMachine(TaskMachine):
    storage_kind = "sqlite"


class PostgresTaskMachine(TaskMachine):
    storage_kind = "postgres"


_SETTINGS = settings(max_examples=15, stateful_step_count=15, deadline=None)

TestTaskModelMemory = TaskMachine.TestCase
TestTaskModelMemory.settings = _SETTINGS
TestTaskModelSqlite = SqliteTaskMachine.TestCase
TestTaskModelSqlite.settings = settings(max_examples=6, stateful_step_count=12, deadline=None)
TestTaskModelPostgres = pytest.mark.postgres(PostgresTaskMachine.TestCase)
TestTaskModelPostgres.settings = settings(max_examples=6, stateful_step_count=12, deadline=None)
