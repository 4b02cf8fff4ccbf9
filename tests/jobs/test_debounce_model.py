"""A Hypothesis state machine for Debounce: no event is ever lost or counted twice.

The machine adds events (some with repeated ``event_id``s), flushes, clears, moves time and
makes ``execute`` fail or succeed (``fail`` of the flush and advance rules; adds reaching
``max_events`` flush with the latest setting). ``execute`` appends each successfully
flushed batch to a list; the reducer appends events to a list state. After every step:

    every accepted event is in exactly one successful flush, one cleared batch, or still
    pending (the instance's state) — never two, never none;

refused adds (duplicates) change nothing, a failing manual flush changes nothing, and once
``execute`` works again every batch is flushed within ``flush_after``.
"""

from __future__ import annotations

import asyncio
import shutil
import tempfile
from collections import Counter
from typing import Any

import pytest
from hypothesis import settings
from hypothesis import strategies as st
from hypothesis.stateful import RuleBasedStateMachine, invariant, rule

from durable_effect import (
    Debounce,
    DebounceContext,
    DebounceEventContext,
    DuplicateEventError,
    Effect,
    ExecutionError,
    Gen,
)
from durable_effect.storage import Storage
from durable_effect.testing import TestRuntime
from tests.jobs._debounce_support import Downstream
from tests.jobs.conftest import storage_for

IDS = ("a", "b", "c")


class DebounceMachine(RuleBasedStateMachine):
    """Drives one TestRuntime; the model is the list of accepted events."""

    storage = "memory://"

    def __init__(self) -> None:
        super().__init__()
        self.loop = asyncio.new_event_loop()
        self.tmp: str | None = None
        url: str | Storage = self.storage
        if url == "postgres":
            url = storage_for("postgres", None)  # a fresh schema per example
        elif url == "sqlite":
            self.tmp = tempfile.mkdtemp(prefix="debounce-model-")
            url = f"sqlite:///{self.tmp}/model.db"
        self.failing = False
        self.flushed: list[list[int]] = []  # each successful flush's events, in order
        self.accepted: list[int] = []
        self.discarded: list[int] = []
        self.event_ids: dict[str, list[str]] = {id_: [] for id_ in IDS}
        self.next_event = 0
        machine = self

        @Effect.gen
        def execute(ctx: DebounceContext[list[int]]) -> Gen[None, Downstream]:
            events = yield from ctx.state
            count = yield from ctx.event_count
            assert count == len(events)
            if machine.failing:
                yield from Downstream(status=500)
            machine.flushed.append(events)
            return None

        def append(ctx: DebounceEventContext[list[int], int]) -> Effect[list[int]]:
            assert ctx.event_count == len(ctx.state or []) + 1
            return Effect.succeed([*(ctx.state or []), ctx.event])

        job = Debounce.make(
            int,
            execute,
            "5 s",
            state_schema=list[int],
            on_event=append,
            max_events=4,
            idle_after="2 s",
        )
        self.rt = TestRuntime({"model": job}, storage=url)
        self.handle = self.rt.client.debounce(job)
        self.run(self.rt.__aenter__())

    def run(self, coro: Any) -> Any:
        return self.loop.run_until_complete(coro)

    def pending(self, id_: str) -> list[int]:
        state = self.run(self.handle.get_state(id_)).state
        return [] if state is None else list(state)

    def teardown(self) -> None:
        try:
            self.run(self.rt.aclose())
        finally:
            self.loop.close()
            if self.tmp is not None:
                shutil.rmtree(self.tmp, ignore_errors=True)

    # -- rules ---------------------------------------------------------------------------

    @rule(id_=st.sampled_from(IDS), with_id=st.booleans())
    def add(self, id_: str, with_id: bool) -> None:
        before = self.pending(id_)
        event = self.next_event
        self.next_event += 1
        event_id = f"e{event}" if with_id else None
        result = self.run(self.handle.add(id=id_, event=event, event_id=event_id))
        self.accepted.append(event)
        if event_id is not None:
            self.event_ids[id_].append(event_id)
        assert result.created == (before == [])
        assert result.event_count == len(before) + 1
        after = self.pending(id_)
        if result.flushed:
            assert after == []
            assert self.flushed[-1] == [*before, event]
            assert result.will_flush_at is None
        else:
            assert after == [*before, event]
            assert result.will_flush_at is not None

    @rule(id_=st.sampled_from(IDS), data=st.data())
    def add_duplicate(self, id_: str, data: st.DataObject) -> None:
        if not self.event_ids[id_]:
            return
        event_id = data.draw(st.sampled_from(self.event_ids[id_]))
        before = self.pending(id_)
        status = self.run(self.handle.status(id_))
        result = self.run(Effect.run_async(self.handle.add(id=id_, event=-1, event_id=event_id)))
        assert result.failure() == DuplicateEventError(event_id=event_id)
        assert self.pending(id_) == before
        assert self.run(self.handle.status(id_)) == status

    @rule(id_=st.sampled_from(IDS), fail=st.booleans())
    def flush(self, id_: str, fail: bool) -> None:
        self.failing = fail
        before = self.pending(id_)
        status = self.run(self.handle.status(id_))
        outcome = self.run(Effect.run_async(self.handle.flush(id_)))
        if not before:
            assert outcome.unwrap().reason == "empty"
        elif self.failing:
            assert isinstance(outcome.failure(), ExecutionError)
            assert self.run(self.handle.status(id_)) == status
        else:
            result = outcome.unwrap()
            assert (result.flushed, result.event_count) == (True, len(before))
            assert self.flushed[-1] == before

    @rule(id_=st.sampled_from(IDS))
    def clear(self, id_: str) -> None:
        before = self.pending(id_)
        result = self.run(self.handle.clear(id_))
        assert (result.cleared, result.discarded_events) == (bool(before), len(before))
        self.discarded.extend(before)

    @rule(ms=st.integers(min_value=0, max_value=6000), fail=st.booleans())
    def advance(self, ms: int, fail: bool) -> None:
        self.failing = fail
        self.run(self.rt.advance(ms))

    @rule()
    def recover(self) -> None:
        """Once execute works again, every batch flushes within flush_after."""
        self.failing = False
        self.run(self.rt.advance("5 s"))
        for id_ in IDS:
            assert self.pending(id_) == []
            assert self.run(self.handle.status(id_)).status == "not_found"

    # -- the property --------------------------------------------------------------------

    @invariant()
    def every_event_is_somewhere_exactly_once(self) -> None:
        pending = [e for id_ in IDS for e in self.pending(id_)]
        seen = Counter([e for batch in self.flushed for e in batch] + self.discarded + pending)
        assert seen == Counter(self.accepted)
        assert all(n == 1 for n in seen.values())


class SqliteDebounceMachine(DebounceMachine):
    storage = "sqlite"


class PostgresDebounceMachine(DebounceMachine):
    storage = "postgres"


DebounceMachine.TestCase.settings = settings(max_examples=40, stateful_step_count=40, deadline=None)
SqliteDebounceMachine.TestCase.settings = settings(
    max_examples=10, stateful_step_count=25, deadline=None
)
PostgresDebounceMachine.TestCase.settings = settings(
    max_examples=8, stateful_step_count=20, deadline=None
)
TestDebounceModelMemory = DebounceMachine.TestCase
TestDebounceModelSqlite = SqliteDebounceMachine.TestCase
TestDebounceModelPostgres = pytest.mark.postgres(PostgresDebounceMachine.TestCase)
