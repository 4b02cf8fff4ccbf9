"""`RunQueries[I, O]`: what the workflow client asks of the runtime, as ``@Effect.gen`` programs.

Triggers (one or a batch) are one runtime call leasing every instance involved — the new
runs, their idempotency marks, their concurrency keys — and committing them together
(``_operations.trigger``). Reads (``get_run``, ``list_runs``, ``steps``) look at committed
snapshots. ``wait`` polls committed state, waking on storage changes, on the runtime's
events about the run's end and on the runtime clock (so under ``TestRuntime`` a ``wait``
with a timeout ends when the test moves the clock past it). ``cancel`` is the cancel
protocol: a run nobody holds is cancelled at once, a run a worker holds gets a cancel
request (see ``_operations``). ``send`` queues an event in the run's inbox and wakes a run
waiting for one (``_inbox``): with the inbox and the run leased together when both are free
(one commit), else with the inbox alone and a wake after — never waiting for a worker.

The queries reach the runtime only through the ``WorkflowRuntime`` protocol (the engine).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, Generic, Protocol, TypeAlias, TypeVar, cast

from durable_effect._duration import Duration, DurationInput
from durable_effect._effect import Effect, Gen, async_effect
from durable_effect._events import Event
from durable_effect.errors import (
    ConflictError,
    InstanceNotFoundError,
    InvalidStateError,
    RunCancelledError,
    RunFailedError,
    StorageError,
    TaggedError,
    TimeoutException,
    ValidationError,
)
from durable_effect.jobs._exec import validated
from durable_effect.jobs._instance import InstanceRef, InstanceTx, validate_id
from durable_effect.workflow import _listing
from durable_effect.workflow._definition import WorkflowDefinition
from durable_effect.workflow._listing import ListingRuntime
from durable_effect.workflow._operations import (
    ACTIVE_TEXT,
    Prepared,
    cancel_idle,
    check_active,
    check_finished,
    delete,
    request_cancel,
    trigger,
)
from durable_effect.workflow._pages import RunPage
from durable_effect.workflow._records import (
    INPUT_KEY,
    META,
    RunMeta,
    cancel_ref,
    idem_ref,
    inbox_ref,
    key_ref,
    new_run_id,
    run_id_fits,
    run_ref,
)
from durable_effect.workflow._rerun import copy_history, resume
from durable_effect.workflow._results import (
    FINISHED,
    PendingEvents,
    Run,
    RunStatus,
    SendResult,
    StepRecord,
    TriggerRequest,
    TriggerResult,
)
from durable_effect.workflow._sending import SendRuntime, pending_events, send_event

__all__ = ["RunQueries", "WorkflowRuntime"]

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741
R = TypeVar("R")
T = TypeVar("T")
Er = TypeVar("Er", bound=BaseException)

_Read: TypeAlias = ValidationError | StorageError
_RunRead: TypeAlias = InstanceNotFoundError | ValidationError | StorageError
_RunErrors: TypeAlias = InstanceNotFoundError | InvalidStateError | ValidationError
_STATUSES = frozenset({"pending", "leased", "sleeping", "completed", "failed", "cancelled"})
_PAGE = 200
#: Real seconds between looks at committed state while waiting (storage changes wake it
#: earlier; changes made by other processes are seen at the latest after this long).
_POLL = 0.25
#: At most one look at committed state per this many seconds while waiting (a run's end in
#: this process is announced by its event at once).
_MIN_GAP = 0.05
_END_EVENTS = ("run:complete", "run:fail", "run:cancel", "run:delete")
#: How many times ``cancel`` re-reads a run that moved while it was being cancelled.
_CANCEL_ROUNDS = 50


class WorkflowRuntime(ListingRuntime, SendRuntime, Protocol):
    """What the queries need of the runtime (the engine gives exactly this): the clock,
    calls under leases and committed loads (``SendRuntime``), and the listings."""

    async def list_instances(
        self, prefix: str, *, after: str | None = None, limit: int | None = None
    ) -> Sequence[str]:
        """Instance ids starting with ``prefix``, in id order."""
        ...

    async def wait_for_change(self, timeout: float) -> None:
        """Until something was committed, or ``timeout`` real seconds passed."""
        ...

    def subscribe(self, event_type: str, listener: Callable[[Event], object]) -> Callable[[], None]:
        """Call ``listener`` with every event of ``event_type``; returns the unsubscribe."""
        ...


def _bad(field: str, message: str) -> ValidationError:
    return ValidationError(schema=field, message=message, path=field)


def _only_storage(exc: Exception) -> StorageError:
    if isinstance(exc, StorageError):
        return exc
    raise exc


def _storage(thunk: Callable[[], Awaitable[T]]) -> Effect[T, StorageError]:
    """Await a storage read; a ``StorageError`` it raises is a typed failure."""
    return Effect.try_promise(thunk, catch=_only_storage)


def _read_failure(exc: Exception) -> ValidationError | StorageError:
    if isinstance(exc, ValidationError | StorageError):
        return exc
    raise exc


def _listed(thunk: Callable[[], Awaitable[T]]) -> Effect[T, _Read]:
    """Await a listing; the ``ValidationError`` or ``StorageError`` it raises is typed."""
    return Effect.try_promise(thunk, catch=_read_failure)


class RunQueries(Generic[I, O]):
    """The client's operations on the runs of one workflow (registered as ``name``)."""

    def __init__(
        self, definition: WorkflowDefinition[I, O, Any, Any], name: str, runtime: WorkflowRuntime
    ) -> None:
        self.definition = definition
        self.name = name
        self.runtime = runtime

    # -- reading --------------------------------------------------------------------------------

    def _ref(self, run_id: str) -> Effect[InstanceRef, InstanceNotFoundError | ValidationError]:
        return validated(lambda: validate_id(run_id, field="run_id")).flat_map(self._fitting)

    def _fitting(self, run_id: str) -> Effect[InstanceRef, InstanceNotFoundError]:
        ref = run_ref(self.name, run_id)
        if not run_id_fits(self.name, run_id):
            return Effect.fail(InstanceNotFoundError(instance_id=ref.instance_id))
        return Effect.succeed(ref)

    def _records(self, ref: InstanceRef) -> Effect[Mapping[str, bytes], StorageError]:
        return _storage(lambda: self.runtime.load([ref.instance_id])).map(
            lambda snaps: snaps[ref.instance_id].records
        )

    @Effect.gen
    def _load_run(self, ref: InstanceRef) -> Gen[Run[I, O], _RunRead]:
        run, _ = yield from self._load_run_records(ref)
        return run

    @Effect.gen
    def _load_run_records(
        self, ref: InstanceRef
    ) -> Gen[tuple[Run[I, O], Mapping[str, bytes]], _RunRead]:
        records = yield from self._records(ref)
        now = self.runtime.clock.now()
        run = yield from validated(
            lambda: self.definition.read_run(records, ref.id, self.name, now)
        )
        if run is None:
            yield from InstanceNotFoundError(instance_id=ref.instance_id)
        assert run is not None
        return run, records

    @Effect.gen
    def get_run(self, run_id: str) -> Gen[Run[I, O], _RunRead]:
        """The run as committed; ``InstanceNotFoundError`` if there is none."""
        ref = yield from self._ref(run_id)
        return (yield from self._load_run(ref))

    @Effect.gen
    def steps(self, run_id: str) -> Gen[list[StepRecord], _RunRead]:
        """The run's completed and failed steps in order, with outputs, errors and timings."""
        ref = yield from self._ref(run_id)
        records = yield from self._records(ref)
        meta = yield from validated(lambda: META.load(records))
        if meta is None or self.definition.expired(meta, self.runtime.clock.now()):
            yield from InstanceNotFoundError(instance_id=ref.instance_id)
        return (yield from validated(lambda: self.definition.read_steps(records)))

    def list_runs(
        self,
        status: RunStatus | Sequence[RunStatus] | None,
        labels: Mapping[str, str] | None,
        limit: int,
        offset: int,
        after: str | None,
    ) -> Effect[RunPage[I, O], _Read]:
        """Runs newest first, on their index entries (``_listing``): filtered by status (one
        or several) and labels (AND-ed), past the cursor ``after`` or ``offset`` runs."""
        definition, name, runtime = self.definition, self.name, self.runtime
        return _listed(
            lambda: _listing.list_runs(
                definition,
                runtime,
                name,
                status=status,
                labels=labels,
                limit=limit,
                offset=offset,
                after=after,
            )
        )

    def count_runs(
        self,
        status: RunStatus | Sequence[RunStatus] | None,
        labels: Mapping[str, str] | None,
    ) -> Effect[dict[RunStatus, int], _Read]:
        """How many runs have each status, among those with ``status`` and ``labels``."""
        definition, name, runtime = self.definition, self.name, self.runtime
        return _listed(
            lambda: _listing.count_runs(definition, runtime, name, status=status, labels=labels)
        )

    # -- waiting --------------------------------------------------------------------------------

    @Effect.gen
    def wait(
        self, run_id: str, timeout: DurationInput | None
    ) -> Gen[Run[I, O], TimeoutException | _RunRead]:
        """The run once it is finished (``TimeoutException`` after ``timeout``, runtime clock)."""
        ref = yield from self._ref(run_id)
        run, _ = yield from self._finished(ref, timeout)
        return run

    @Effect.gen
    def wait_output(
        self, run_id: str, timeout: DurationInput | None
    ) -> Gen[O, TaggedError | TimeoutException | _RunRead]:
        """A finished run's output, or its own error (``_failures``): what
        ``trigger_and_wait`` gives."""
        ref = yield from self._ref(run_id)
        run, records = yield from self._finished(ref, timeout)
        if run.status == "completed":
            return cast(O, run.output)
        if run.status == "cancelled":
            yield from RunCancelledError(run_id=run.id)
        meta = yield from validated(lambda: META.load(records))
        failure = None if meta is None else meta.failure
        if failure is None:  # a run failed before errors were stored by tag
            yield from RunFailedError(run_id=run.id, error=run.error or "unknown error")
        assert failure is not None
        yield from self.definition.errors.restore(failure, run.id)
        raise AssertionError("unreachable")

    @Effect.gen
    def _finished(
        self, ref: InstanceRef, timeout: DurationInput | None
    ) -> Gen[tuple[Run[I, O], Mapping[str, bytes]], TimeoutException | _RunRead]:
        """The run and its records once it is finished (``TimeoutException`` after
        ``timeout``, runtime clock)."""
        limit = None if timeout is None else Duration.parse(timeout)
        deadline = None if limit is None else self.runtime.clock.now() + limit
        ended = _News()  # set by this process's events about the run's end

        def on_end(event: object) -> None:
            if getattr(event, "run_id", None) == ref.id:
                ended.set()

        offs = [self.runtime.subscribe(kind, on_end) for kind in _END_EVENTS]
        try:
            while True:
                ended.clear()
                found = yield from self._load_run_records(ref)
                if found[0].status in FINISHED:
                    return found
                if deadline is not None and self.runtime.clock.now() >= deadline:
                    assert limit is not None
                    yield from TimeoutException(timeout_ms=round(limit.total_seconds() * 1000))
                yield from Effect.promise(lambda: _wait_for_news(self.runtime, ended, deadline))
        finally:
            for off in offs:
                off()

    # -- triggers -------------------------------------------------------------------------------

    def _apply(
        self, prepared: Sequence[Prepared]
    ) -> Effect[list[TriggerResult], ConflictError | _Read]:
        if not prepared:
            return Effect.succeed([])
        name, definition = self.name, self.definition
        refs: dict[str, InstanceRef] = {}
        for item in prepared:
            for ref in (
                run_ref(name, item.run_id),
                None if item.idempotency_key is None else idem_ref(name, item.idempotency_key),
                None if item.concurrency_key is None else key_ref(name, item.concurrency_key),
            ):
                if ref is not None:
                    refs.setdefault(ref.instance_id, ref)

        def handler(
            txs: Sequence[InstanceTx],
        ) -> Effect[list[TriggerResult], ConflictError | ValidationError]:
            by_id = {tx.instance_id: tx for tx in txs}
            return trigger(name, definition.expired, by_id, prepared)

        level = definition.log_level
        # A run id is made new for each trigger: with no key instance beside it, the run is
        # written in one transaction (``Engine.call(new=True)``; leased if it exists).
        only_run = len(refs) == 1
        return async_effect(
            lambda: self.runtime.call(list(refs.values()), handler, log_level=level, new=only_run)
        )

    @Effect.gen
    def batch_trigger(
        self, items: Sequence[I | TriggerRequest[I]]
    ) -> Gen[list[TriggerResult], ConflictError | _Read]:
        """Trigger every item (an input or a ``TriggerRequest``) in ONE transaction."""
        if isinstance(items, str | bytes) or not isinstance(items, Sequence):
            yield from _bad("items", "must be a sequence of inputs or TriggerRequests")
        now = self.runtime.clock.now()
        definition = self.definition
        prepared = yield from validated(
            lambda: [definition.prepare(item, new_run_id(now)) for item in items]
        )
        return (yield from self._apply(prepared))

    @Effect.gen
    def retrigger(
        self, run_id: str
    ) -> Gen[TriggerResult, InvalidStateError | ConflictError | _RunRead]:
        """A new run with a finished run's input, labels and concurrency key (``created``)."""
        ref = yield from self._ref(run_id)
        records = yield from self._records(ref)
        loaded = yield from validated(lambda: META.load(records))
        meta = yield from check_finished(loaded, ref.instance_id, "retrigger")
        if self.definition.expired(meta, self.runtime.clock.now()):
            yield from InstanceNotFoundError(instance_id=ref.instance_id)
        data = records.get(INPUT_KEY, b"null")
        yield from validated(lambda: self.definition.input_codec.decode(data))  # still valid
        prepared = Prepared(
            run_id=new_run_id(self.runtime.clock.now()),
            input_data=data,
            idempotency_key=None,
            concurrency_key=meta.concurrency_key,
            labels=dict(meta.labels),
            coalesce=None,
            run_timeout=meta.run_timeout,  # a fresh deadline, from now
        )
        results = yield from self._apply([prepared])
        return results[0]

    @Effect.gen
    def fork(
        self, run_id: str, from_step: str | None
    ) -> Gen[TriggerResult, InvalidStateError | ConflictError | _RunRead]:
        """A new run of a finished run's input starting with a copy of its steps before
        ``from_step`` (``_rerun``)."""
        ref = yield from self._ref(run_id)
        records = yield from self._records(ref)
        loaded = yield from validated(lambda: META.load(records))
        meta = yield from check_finished(loaded, ref.instance_id, "fork")
        if self.definition.expired(meta, self.runtime.clock.now()):
            yield from InstanceNotFoundError(instance_id=ref.instance_id)
        data = records.get(INPUT_KEY, b"null")
        yield from validated(lambda: self.definition.input_codec.decode(data))  # still valid
        copied = yield from validated(lambda: copy_history(records, meta, ref.id, from_step))
        prepared = Prepared(
            run_id=new_run_id(self.runtime.clock.now()),
            input_data=data,
            idempotency_key=None,
            concurrency_key=meta.concurrency_key,
            labels=dict(meta.labels),
            coalesce=None,
            run_timeout=meta.run_timeout,  # a fresh deadline, from now
            copied=copied,
            forked_from=ref.id,
        )
        results = yield from self._apply([prepared])
        return results[0]

    @Effect.gen
    def resume(self, run_id: str) -> Gen[Run[I, O], InvalidStateError | _RunRead]:
        """Make a failed or cancelled run pending again, after its last completed step
        (``_rerun``); the run as committed."""
        ref = yield from self._ref(run_id)
        refs = [ref, cancel_ref(self.name, ref.id), inbox_ref(self.name, ref.id)]
        expired = self.definition.expired

        def handler(txs: Sequence[InstanceTx]) -> Effect[None, _RunErrors]:
            return resume(txs, expired)

        level = self.definition.log_level
        yield from async_effect(lambda: self.runtime.call(refs, handler, log_level=level))
        return (yield from self._load_run(ref))

    # -- cancel / delete ------------------------------------------------------------------------

    def _meta(self, ref: InstanceRef) -> Effect[RunMeta | None, _Read]:
        return self._records(ref).flat_map(lambda records: validated(lambda: META.load(records)))

    @Effect.gen
    def cancel(self, run_id: str) -> Gen[None, InvalidStateError | _RunRead]:
        """Cancel an active run (the cancel protocol: see the module docstring)."""
        ref = yield from self._ref(run_id)
        flag = cancel_ref(self.name, ref.id)
        level = self.definition.log_level
        retain = self.definition.retain
        runtime = self.runtime

        def idle(txs: Sequence[InstanceTx]) -> Effect[None, _RunErrors]:
            return cancel_idle(txs[0], retain)

        def request(txs: Sequence[InstanceTx]) -> Effect[None, _RunErrors]:
            return request_cancel(txs[0], ref.instance_id)

        for _ in range(_CANCEL_ROUNDS):
            meta = yield from self._meta(ref)
            yield from check_active(meta, ref.instance_id)
            direct = yield from Effect.promise(
                lambda: runtime.try_call([ref], idle, log_level=level)
            )
            if direct is not None:
                return (yield from direct)
            # Held: a worker is executing it (or another call holds it for a moment).
            yield from async_effect(lambda: runtime.call([flag], request, log_level=level))
            after = yield from self._meta(ref)
            if after is not None and after.status in ("completed", "failed"):
                # The run's end was committed before the request (its commit is guarded
                # by the request, atomically): the request came too late, and stays
                # unread until the run is purged or deleted.
                yield from InvalidStateError(
                    expected=ACTIVE_TEXT, actual=after.status, operation="cancel"
                )
            if after is None or after.status in ("leased", *FINISHED):
                return None  # the worker (or a takeover) honours it
            yield from Effect.promise(lambda: runtime.wait_for_change(0.01))
        # Still held after every round: the cancel request is written, and whoever holds
        # the run next (a worker) honours it at its next step boundary.
        return None

    # -- events (``_sending``) ------------------------------------------------------------------

    @Effect.gen
    def send(
        self, run_id: str, event: object, event_id: str | None
    ) -> Gen[SendResult, InvalidStateError | _RunRead]:
        """Queue ``event`` for the run and wake it if it waits for one."""
        ref = yield from self._ref(run_id)
        return (yield from send_event(self.definition, self.runtime, ref, event, event_id))

    @Effect.gen
    def pending_events(self, run_id: str) -> Gen[PendingEvents[object], _RunRead]:
        """The events queued for the run (sent, not consumed by a wait) and what it waits for."""
        ref = yield from self._ref(run_id)
        return (yield from pending_events(self.definition, self.runtime, ref))

    @Effect.gen
    def delete_run(self, run_id: str) -> Gen[None, InvalidStateError | _RunRead]:
        """Delete a finished run with its steps, logs and idempotency mark (``run:delete``)."""
        ref = yield from self._ref(run_id)
        loaded = yield from self._meta(ref)
        meta = yield from check_finished(loaded, ref.instance_id, "delete_run")
        refs = [ref, cancel_ref(self.name, ref.id), inbox_ref(self.name, ref.id)]
        if meta.idempotency_key is not None:
            refs.append(idem_ref(self.name, meta.idempotency_key))
        level = self.definition.log_level
        yield from async_effect(lambda: self.runtime.call(refs, delete, log_level=level))
        return None


class _News:
    """What a waiter for a run's end wakes on, as one future (no task per source): the
    run's end announced in this process (``set``, sticky until ``clear``), or a ``poke`` by
    a storage change or a timer."""

    __slots__ = ("_wake", "is_set")

    def __init__(self) -> None:
        self.is_set = False
        self._wake: asyncio.Future[None] | None = None

    def set(self) -> None:
        self.is_set = True
        self.poke()

    def clear(self) -> None:
        self.is_set = False

    def poke(self, _: object = None) -> None:
        wake = self._wake
        if wake is not None and not wake.done():
            wake.set_result(None)

    async def wait(self) -> None:
        """Until the next ``set`` or ``poke`` (at once if set)."""
        if self.is_set:
            return
        self._wake = asyncio.get_running_loop().create_future()
        try:
            await self._wake
        finally:
            self._wake = None


async def _wait_for_news(runtime: WorkflowRuntime, ended: _News, deadline: datetime | None) -> None:
    """Until the run's end is announced in this process, storage changed (throttled: at most
    one look per ``_MIN_GAP``, at least one per ``_POLL``), or the deadline passed."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    changed = loop.create_task(runtime.wait_for_change(_POLL))
    changed.add_done_callback(ended.poke)
    timer = None
    if deadline is not None:
        timer = asyncio.ensure_future(runtime.clock.sleep_until(deadline))
        timer.add_done_callback(ended.poke)
    try:
        await ended.wait()
        gap = _MIN_GAP - (loop.time() - started)
        if gap > 0 and not ended.is_set and (timer is None or not timer.done()):
            # Every checkpoint of every run is a storage change: look again a bit later.
            pause = loop.call_later(gap, ended.poke)
            try:
                await ended.wait()
            finally:
                pause.cancel()
    finally:
        changed.remove_done_callback(ended.poke)
        changed.cancel()
        if timer is not None:
            timer.remove_done_callback(ended.poke)
            timer.cancel()
