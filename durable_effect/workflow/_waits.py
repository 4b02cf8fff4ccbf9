"""`EventWaits`: ``step.wait_for_event`` — a durable wait, no worker held, for an event.

A wait is a step. The first time the run reaches it, it records the wait (``sleeping``, with
its timeout instant when it has one) and looks at the run's inbox (``_inbox``): the oldest
event not yet consumed (of class ``schema`` when given; sent no later than the timeout) is
*consumed* — the step completes with it, recording its sequence number, in one fenced commit
at a step boundary — and returned. With none, the run suspends (``sleeping``,
``RunMeta.waiting`` saying what for) with its alarm at the timeout (or its deadline, or none),
in a commit refused if an event was sent since the look (the inbox's next event key): then
the run looks again at once. A ``send`` wakes a suspended run; the execution that follows
replays the run up to the wait and looks again. At the timeout with no event the step
completes with ``None``.

A completed wait replays its recorded event (decoded with the workflow's ``event_schema``),
so every execution sees the same event and no event is consumed twice.
"""

from __future__ import annotations

import logging
from datetime import timedelta
from typing import Any

import attrs

from durable_effect._codec import Codec, decode_json, schema_name
from durable_effect.errors import LeaseLostError, StorageError, ValidationError
from durable_effect.workflow._checkpoint import Checkpoints
from durable_effect.workflow._events import RunEventReceived, StepCompleted, StepStarted
from durable_effect.workflow._inbox import EventRec, next_event_key, queued
from durable_effect.workflow._records import StepRec, inbox_ref
from durable_effect.workflow._results import EventWait
from durable_effect.workflow._run_state import Aborted, RunState, millis

__all__ = ["EventWaits"]

_LOG = logging.getLogger("durable_effect")


class EventWaits:
    """The event waits of one execution (see the module docstring)."""

    def __init__(
        self,
        state: RunState,
        checkpoints: Checkpoints,
        codec: Codec[Any],
        classes: tuple[type, ...],
    ) -> None:
        self.state = state
        self.checkpoints = checkpoints
        self.codec = codec
        self.classes = classes

    def _check_schema(self, name: str, schema: type | None) -> None:
        if schema is not None and schema not in self.classes:
            declared = ", ".join(c.__qualname__ for c in self.classes) or "none"
            raise TypeError(
                f"wait_for_event({name!r}): {schema_name(schema)} is not one of the workflow's "
                f"event_schema classes ({declared})"
            )

    async def wait(self, name: str, schema: type | None, timeout: timedelta | None) -> object:
        """Complete (or start, suspending the run) the event wait ``name`` (the step runner
        has checked the run is open and the wait's place in the replay)."""
        state = self.state
        self._check_schema(name, schema)
        rec = state.steps.get(name)
        if rec is not None and rec.status == "completed":
            return self._replayed(rec)
        state.check_deadline()
        now = state.now()
        if rec is None:
            index = state.meta.next_index
            state.evolve(next_index=index + 1)
            until = None if timeout is None else now + timeout
            rec = StepRec(
                name=name,
                index=index,
                status="sleeping",
                started_at=now,
                first_started_at=now,
                wake_at=until,
            )
            state.put_step(rec)
            state.steps[name] = rec
            state.emit(StepStarted(**state.fields(), step_name=name, step_index=index))
        state.current = name
        state.evolve(current_step=name)
        inbox = inbox_ref(state.workflow, state.run_id)
        try:
            snapshot = await self.checkpoints.hooks.peek(inbox.instance_id)
            found = self._oldest(snapshot.records, schema, rec)
        except (LeaseLostError, StorageError) as exc:
            state.stop(Aborted(exc))
        if found is not None:
            return await self._complete(rec, found)
        if rec.wake_at is not None and now >= rec.wake_at:
            return await self._complete(rec, None)
        event = None if schema is None else schema_name(schema)
        state.evolve(
            waiting=EventWait(step=name, event=event, since=rec.started_at, until=rec.wake_at)
        )
        state.suspend_guards = ((inbox.instance_id, next_event_key(snapshot.records)),)
        return state.suspend(rec.wake_at)

    def _oldest(
        self, records: Any, schema: type | None, rec: StepRec
    ) -> tuple[EventRec, object] | None:
        """The oldest event this wait may take, decoded (``None``: there is none)."""
        state = self.state
        for event in queued(records, state.steps.values(), state.meta):
            if rec.wake_at is not None and event.sent_at > rec.wake_at:
                continue  # sent after the timeout: left for a later wait
            try:
                value: object = self.codec.decode(event.data)
            except ValidationError as exc:  # the event_schema changed since it was sent
                _LOG.warning(
                    "%s: event %d no longer fits the event_schema: %s",
                    self.state.run_id,
                    event.seq,
                    exc,
                )
                continue
            if schema is None or isinstance(value, schema):
                return event, value
        return None

    async def _complete(self, rec: StepRec, found: tuple[EventRec, object] | None) -> object:
        state = self.state
        now = state.now()
        event, value = (None, None) if found is None else found
        done = attrs.evolve(
            rec,
            status="completed",
            completed_at=now,
            output="null" if event is None else event.data,
            event_seq=None if event is None else event.seq,
        )
        mark = state.mark()
        state.put_step(done)
        builtins = None if event is None else decode_json(event.data)
        state.emit(
            StepCompleted(
                **state.fields(),
                step_name=rec.name,
                step_index=rec.index,
                output=builtins,
                duration_ms=millis(now - rec.started_at),
            )
        )
        if event is not None:
            state.emit(
                RunEventReceived(
                    **state.fields(),
                    step_name=rec.name,
                    seq=event.seq,
                    sent_event_id=event.event_id,
                    event=builtins,
                )
            )
        await self.checkpoints.commit_or_cancel(mark, rec.name, rec.index)
        state.steps[rec.name] = done
        state.current = None
        return value

    def _replayed(self, rec: StepRec) -> object:
        if rec.event_seq is None or rec.output is None:
            return None  # it timed out
        return self.codec.decode(rec.output)
