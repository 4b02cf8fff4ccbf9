"""The inbox of a run: the events sent to it, and the client operations that send them.

Events sent to run ``r`` of workflow ``w`` are queued in the small instance
``wfinbox:w:r`` (``inbox_ref``), not in the run: a ``send`` leases the inbox only, so it never
waits for a worker busy executing the run's steps (the cancel request lives apart for the
same reason). Its records:

* ``state`` — ``InboxState``: the next sequence number and the ``event_id``\\ s seen (a
  repeated one is a ``duplicate``, queued once);
* ``ev:{seq:08d}`` — one ``EventRec`` per event, its JSON validated by the workflow's
  ``event_schema`` before anything was written.

Sequence numbers are dense, so ``ev:{next}`` is the key the *next* event will have: a worker
that found no event to consume and is about to suspend the run guards that commit on it
(``next_event_key``) — an event sent in between refuses the suspension, and the run looks
again at once. Which events are consumed is recorded by the run itself, in the step record
of the wait that took each one (``StepRec.event_seq``, committed with the step, fenced by
the run's lease), so a replay gives the same event and none is consumed twice; the events
stay in the inbox (readable, ``pending_events``) until the run is purged or deleted.

A send *wakes* a run that waits for an event: in the same commit when it can lease the run
at once (``send_and_wake``), otherwise right after (``wake``). A run it cannot lease is held
by a worker, which sees the event at its wait (or has its suspension refused by the guard).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping
from datetime import datetime

import attrs

from durable_effect._codec import Codec, codec_for, decode_json
from durable_effect._effect import Effect, Gen
from durable_effect.errors import InstanceNotFoundError, InvalidStateError, ValidationError
from durable_effect.jobs._exec import validated
from durable_effect.jobs._instance import InstanceRef, InstanceTx, TxHooks
from durable_effect.jobs._records import Record
from durable_effect.storage._port import GuardFailed, InstanceSnapshot
from durable_effect.workflow._events import RunEventSent
from durable_effect.workflow._operations import ACTIVE_TEXT, check_active
from durable_effect.workflow._records import END_KEY, META, RunMeta, StepRec
from durable_effect.workflow._results import SendResult
from durable_effect.workflow._run_state import run_event_fields

__all__ = [
    "MAX_EVENTS",
    "MAX_EVENT_BYTES",
    "MAX_EVENT_DEPTH",
    "EventRec",
    "InboxState",
    "Outgoing",
    "check_event_size",
    "consumed",
    "load_events",
    "next_event_key",
    "next_seq",
    "queued",
    "send_alone",
    "send_and_wake",
    "wake",
]

#: At most this many events are ever sent to one run (consumed ones included).
MAX_EVENTS = 10_000
#: An event's JSON is at most this long, and nested at most this deep (a bound for every
#: reader of it: the events it is emitted in, the dashboard, a wait's caller).
MAX_EVENT_BYTES = 256 * 1024
MAX_EVENT_DEPTH = 64
_STRING = re.compile(rb'"(?:[^"\\]|\\.)*"')
EVENT_PREFIX = "ev:"


@attrs.frozen(kw_only=True)
class EventRec:
    """One event sent to a run: its sequence number, when, its ``event_id``, its JSON."""

    seq: int
    sent_at: datetime
    data: str
    event_id: str | None = None


@attrs.frozen(kw_only=True)
class InboxState:
    """The ``state`` of an inbox: the next sequence number, the ``event_id``\\ s seen."""

    next: int = 0
    ids: dict[str, int] = attrs.field(factory=dict)


INBOX: Record[InboxState] = Record("state", codec_for(InboxState))
EVENT_CODEC: Codec[EventRec] = codec_for(EventRec)


@attrs.frozen(kw_only=True)
class Outgoing:
    """A validated event to send (its JSON) and its ``event_id``."""

    data: bytes
    event_id: str | None


def check_event_size(data: bytes) -> None:
    """Refuse an event's JSON longer than ``MAX_EVENT_BYTES`` or nested deeper than
    ``MAX_EVENT_DEPTH`` (``ValidationError`` at path ``event``)."""
    if len(data) > MAX_EVENT_BYTES:
        raise _too_big(f"is {len(data)} bytes of JSON, more than {MAX_EVENT_BYTES}")
    if data.count(b"[") + data.count(b"{") <= MAX_EVENT_DEPTH:
        return  # too few brackets to nest deeper
    depth = deepest = 0
    for byte in _STRING.sub(b"", data):  # brackets outside strings
        if byte in b"[{":
            depth += 1
            deepest = max(deepest, depth)
        elif byte in b"]}":
            depth -= 1
    if deepest > MAX_EVENT_DEPTH:
        raise _too_big(f"is nested {deepest} levels deep, more than {MAX_EVENT_DEPTH}")


def _too_big(message: str) -> ValidationError:
    return ValidationError(schema="event", message=message, path="event")


def event_key(seq: int) -> str:
    """The record key of event ``seq``."""
    return f"{EVENT_PREFIX}{seq:08d}"


def next_seq(records: Mapping[str, bytes]) -> int:
    """The sequence number the next event sent to this inbox will have."""
    state = INBOX.load(records)
    return 0 if state is None else state.next


def next_event_key(records: Mapping[str, bytes]) -> str:
    """The key the next event sent to this inbox will have (a guard against it)."""
    return event_key(next_seq(records))


def load_events(records: Mapping[str, bytes]) -> list[EventRec]:
    """Every event of an inbox's records, oldest first."""
    keys = sorted(k for k in records if k.startswith(EVENT_PREFIX))
    return [EVENT_CODEC.decode(records[k]) for k in keys]


def consumed(steps: Iterable[StepRec]) -> set[int]:
    """The sequence numbers of the events the run's waits have taken from its own inbox (a
    wait a fork copied took its event from the original run's)."""
    return {rec.event_seq for rec in steps if rec.event_seq is not None and rec.event_from is None}


def queued(records: Mapping[str, bytes], steps: Iterable[StepRec], meta: RunMeta) -> list[EventRec]:
    """The events of an inbox's records still to be delivered to the run, oldest first: not
    taken by one of its waits (``steps``), not left over from before a resume."""
    taken = consumed(steps)
    return [e for e in load_events(records) if e.seq not in taken and e.seq >= meta.events_from]


def waits_for_event(meta: RunMeta) -> bool:
    """Whether a run sleeps until an event arrives (a send should wake it)."""
    return meta.status == "sleeping" and meta.waiting is not None


@Effect.gen
def _append(
    itx: InstanceTx, run: InstanceRef, meta: RunMeta, out: Outgoing
) -> Gen[SendResult, ValidationError]:
    """Queue ``out`` in the inbox ``itx`` of ``run`` (or find it a duplicate)."""
    loaded = yield from validated(lambda: INBOX.load(itx))
    state = InboxState() if loaded is None else loaded
    if out.event_id is not None and out.event_id in state.ids:
        return SendResult(run_id=run.id, accepted=False, duplicate=True)
    if state.next >= MAX_EVENTS:
        yield from ValidationError(
            schema="event",
            message=f"run {run.id!r} was already sent {MAX_EVENTS} events (the most it takes)",
            path="event",
        )
    seq = state.next
    now = itx.now()
    ids = dict(state.ids)
    if out.event_id is not None:
        ids[out.event_id] = seq
    text = out.data.decode("utf-8")
    rec = EventRec(seq=seq, sent_at=now, data=text, event_id=out.event_id)
    itx.put(event_key(seq), EVENT_CODEC.encode(rec))
    INBOX.save(itx, InboxState(next=seq + 1, ids=ids))
    itx.emit(
        RunEventSent(
            **run_event_fields(run, now, meta.labels),
            seq=seq,
            sent_event_id=out.event_id,
            event=decode_json(out.data),
        )
    )
    return SendResult(run_id=run.id, accepted=True, duplicate=False)


_SendErrors = InstanceNotFoundError | InvalidStateError | ValidationError


@Effect.gen
def send_and_wake(itx: InstanceTx, rtx: InstanceTx, out: Outgoing) -> Gen[SendResult, _SendErrors]:
    """Send with both the inbox and the run leased: one commit queues the event and, when
    the run waits for an event, sets its alarm to now."""
    loaded = yield from validated(lambda: META.load(rtx))
    meta = yield from check_active(loaded, rtx.instance_id, "send")
    result = yield from _append(itx, rtx.ref, meta, out)
    _wake(rtx, meta)  # a duplicate wakes it too: its first send may have died before
    return result


def _hooks(tx: InstanceTx) -> TxHooks:
    hooks = tx.hooks
    if hooks is None:  # pragma: no cover - the engine always gives hooks
        raise RuntimeError("workflow operations need the runtime's hooks")
    return hooks


@Effect.gen
def send_alone(itx: InstanceTx, run: InstanceRef, out: Outgoing) -> Gen[SendResult, _SendErrors]:
    """Send with only the inbox leased (the run is held: a worker executes it, say).

    The commit is made here, guarded by the run's ``end`` record: a run that ended
    meanwhile refuses the event (``InvalidStateError``). A ``wake`` should follow.
    """
    hooks = _hooks(itx)
    snap: InstanceSnapshot = yield from Effect.promise(lambda: hooks.peek(run.instance_id))
    loaded = yield from validated(lambda: META.load(snap.records))
    meta = yield from check_active(loaded, run.instance_id, "send")
    result = yield from _append(itx, run, meta, out)
    committed = yield from Effect.promise(lambda: _commit_unless_ended(hooks, itx, run))
    if not committed:
        after = yield from Effect.promise(lambda: hooks.peek(run.instance_id))
        ended = yield from validated(lambda: META.load(after.records))
        actual = "finished" if ended is None else ended.status
        yield from InvalidStateError(expected=ACTIVE_TEXT, actual=actual, operation="send")
    return result


async def _commit_unless_ended(hooks: TxHooks, itx: InstanceTx, run: InstanceRef) -> bool:
    try:
        await hooks.checkpoint(itx, unless_present=[(run.instance_id, END_KEY)], release=True)
    except GuardFailed:
        itx.events.clear()  # nothing was sent
        return False
    return True


@Effect.gen
def wake(rtx: InstanceTx) -> Gen[None, ValidationError]:
    """Wake a run that waits for an event (its alarm to now); anything else is left alone."""
    meta = yield from validated(lambda: META.load(rtx))
    if meta is not None:
        _wake(rtx, meta)
    return None


def _wake(rtx: InstanceTx, meta: RunMeta) -> None:
    if waits_for_event(meta):
        now = rtx.now()
        alarm = rtx.alarm_at
        if alarm is None or alarm > now:
            rtx.set_alarm(now)
