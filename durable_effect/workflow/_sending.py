"""The client's side of events: ``send`` an event to a run, read what is queued for it.

``send`` validates the event against the workflow's ``event_schema`` (and bounds it) before
anything is written, then queues it in the run's inbox (``_inbox``):

1. with the inbox **and** the run leased at once, when both are free — one commit queues the
   event and wakes a run waiting for one (its alarm now);
2. otherwise — the run is held, by a worker executing it, say — with the inbox alone (a
   ``send`` never waits for a worker), then a *wake* of the run if it is free by then. A
   run still held is seen to by its holder: a worker looks at the inbox at its wait, and its
   commit suspending the run is refused by an event sent after that look.

In-process the woken run's alarm wakes the worker at once; on PostgreSQL the commit's
``NOTIFY`` wakes the workers of every process.

Trace context (SPEC §10.6; ``_runtime/_tracing`` is not on main yet): the hook is the wake.
A send that sets the run's alarm (paths 1 and 2's wake) goes through ``runtime.call`` /
``try_call``, where the engine is to store the caller's context with the instances whose
alarm a call sets; a send to a run still held (path 2 with no wake) sets no alarm, so its
context would go with the ``EventRec`` (``_inbox._append``) — not built.
"""

from __future__ import annotations

import logging
from collections.abc import Callable, Mapping, Sequence
from typing import Any, Never, Protocol, TypeAlias, TypeVar

from durable_effect._clock import Clock
from durable_effect._effect import Effect, Gen, async_effect
from durable_effect.errors import (
    InstanceNotFoundError,
    InvalidStateError,
    StorageError,
    ValidationError,
)
from durable_effect.jobs._exec import validated
from durable_effect.jobs._instance import InstanceRef, InstanceTx
from durable_effect.storage._port import InstanceSnapshot
from durable_effect.workflow._definition import WorkflowDefinition
from durable_effect.workflow._inbox import queued, send_alone, send_and_wake, wake
from durable_effect.workflow._records import META, inbox_ref, load_steps
from durable_effect.workflow._results import PendingEvent, PendingEvents, SendResult

__all__ = ["SendRuntime", "pending_events", "send_event"]

R = TypeVar("R")
Er = TypeVar("Er", bound=BaseException)

_LOG = logging.getLogger("durable_effect")
_Errors: TypeAlias = InstanceNotFoundError | InvalidStateError | ValidationError
_Read: TypeAlias = InstanceNotFoundError | ValidationError | StorageError


class SendRuntime(Protocol):
    """What sending needs of the runtime (the engine gives it; the queries' runtime,
    ``WorkflowRuntime``, is this and more)."""

    @property
    def clock(self) -> Clock:
        """The runtime clock."""
        ...

    async def call(
        self,
        refs: Sequence[InstanceRef],
        handler: Callable[[Sequence[InstanceTx]], Effect[R, Er]],
        *,
        log_level: int | None = None,
        new: bool = False,
    ) -> Effect[R, Er | StorageError]:
        """Run ``handler`` over ``refs`` under their leases (committed if it succeeds);
        ``new``: the one instance is expected not to exist yet (one write, no lease)."""
        ...

    async def try_call(
        self,
        refs: Sequence[InstanceRef],
        handler: Callable[[Sequence[InstanceTx]], Effect[R, Er]],
        *,
        log_level: int | None = None,
    ) -> Effect[R, Er | StorageError] | None:
        """Like ``call``, but ``None`` (nothing ran) when an instance is held."""
        ...

    async def load(self, instance_ids: Sequence[str]) -> Mapping[str, InstanceSnapshot]:
        """Committed snapshots, without a lease."""
        ...


@Effect.gen
def send_event(
    definition: WorkflowDefinition[Any, Any, Any, Any],
    runtime: SendRuntime,
    ref: InstanceRef,
    event: object,
    event_id: str | None,
) -> Gen[SendResult, _Errors | StorageError]:
    """Queue ``event`` for run ``ref`` and wake it if it waits for one (module docstring)."""
    out = yield from validated(lambda: definition.prepare_event(event, event_id))
    inbox = inbox_ref(ref.job_name, ref.id)
    level = definition.log_level

    def both(txs: Sequence[InstanceTx]) -> Effect[SendResult, _Errors]:
        return send_and_wake(txs[0], txs[1], out)

    def alone(txs: Sequence[InstanceTx]) -> Effect[SendResult, _Errors]:
        return send_alone(txs[0], ref, out)

    def wake_it(txs: Sequence[InstanceTx]) -> Effect[None, ValidationError]:
        return wake(txs[0])

    direct = yield from Effect.promise(
        lambda: runtime.try_call([inbox, ref], both, log_level=level)
    )
    if direct is not None:
        return (yield from direct)
    result = yield from async_effect(lambda: runtime.call([inbox], alone, log_level=level))
    woke = yield from Effect.promise(lambda: runtime.try_call([ref], wake_it, log_level=level))
    if woke is not None:
        yield from woke.catch_all(_log_wake_failure)
    return result


@Effect.gen
def pending_events(
    definition: WorkflowDefinition[Any, Any, Any, Any], runtime: SendRuntime, ref: InstanceRef
) -> Gen[PendingEvents[object], _Read]:
    """The events queued for run ``ref`` (sent, not consumed by a wait), oldest first, and
    what it waits for."""
    inbox = inbox_ref(ref.job_name, ref.id)
    snaps = yield from Effect.try_promise(
        lambda: runtime.load([ref.instance_id, inbox.instance_id]), catch=_only_storage
    )
    records = snaps[ref.instance_id].records
    meta = yield from validated(lambda: META.load(records))
    if meta is None or definition.expired(meta, runtime.clock.now()):
        yield from InstanceNotFoundError(instance_id=ref.instance_id)
    assert meta is not None
    inbox_records = snaps[inbox.instance_id].records
    left = yield from validated(lambda: queued(inbox_records, load_steps(records), meta))
    events = [
        PendingEvent(
            seq=e.seq, event=definition.read_event(e.data), event_id=e.event_id, sent_at=e.sent_at
        )
        for e in left
    ]
    waiting = meta.waiting if meta.status == "sleeping" else None
    return PendingEvents(run_id=ref.id, waiting=waiting, events=events)


def _only_storage(exc: Exception) -> StorageError:
    if isinstance(exc, StorageError):
        return exc
    raise exc


def _log_wake_failure(error: BaseException) -> Effect[None, Never]:
    """A failed wake after a committed send: the send succeeded (the event is queued). The
    run wakes at its next alarm, or at the next send (a repeated ``event_id`` wakes it too)."""
    _LOG.warning("send: the event is queued but the run could not be woken: %s", error)
    return Effect.succeed(None)
