"""`WorkflowHandle[I, O]`: the client of a workflow. Every method returns a lazy ``Effect``.

Nothing is read or sent until the effect runs. Triggers (one or a batch) are one engine call
leasing every instance involved — the new runs, their idempotency marks, their concurrency
keys — and committing them together. Reads (``get_run``, ``list_runs``, ``steps``) look at
committed snapshots. ``wait`` polls committed state, waking on storage changes and on the
runtime clock (so under ``TestRuntime`` a ``wait`` with a timeout ends when the test moves
the clock past it; the run itself needs a worker — ``rt.run_until_idle()``/``advance``, or a
``jobs.worker()`` running beside the waiting task).
"""

from __future__ import annotations

import asyncio
from collections.abc import Awaitable, Callable, Mapping, Sequence
from datetime import datetime
from typing import Any, TypeAlias, TypeVar, cast

from durable_effect._client._base import JobHandle
from durable_effect._duration import Duration, DurationInput
from durable_effect._effect import Effect, Ok, async_effect
from durable_effect._runtime._engine import Engine
from durable_effect.errors import (
    ConflictError,
    ExecutionError,
    InstanceNotFoundError,
    InvalidStateError,
    JobNotFoundError,
    RunCancelledError,
    StorageError,
    TimeoutException,
    ValidationError,
)
from durable_effect.jobs._instance import InstanceRef, InstanceTx, validate_id
from durable_effect.workflow import _runs
from durable_effect.workflow._definition import Prepared, WorkflowDefinition
from durable_effect.workflow._runs import (
    FINISHED,
    INPUT_KEY,
    Coalesce,
    Run,
    RunFailure,
    RunStatus,
    StepRecord,
    TriggerRequest,
    TriggerResult,
    meta_of,
)

__all__ = ["WorkflowHandle"]

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741
R = TypeVar("R")
Err = TypeVar("Err", bound=BaseException)

_Lookup: TypeAlias = JobNotFoundError | ValidationError | StorageError
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


def _bad(field: str, message: str) -> ValidationError:
    return ValidationError(schema=field, message=message, path=field)


class WorkflowHandle(JobHandle[WorkflowDefinition[I, O]]):
    """The client of one workflow (``client.workflow(definition_or_name)``)."""

    job_type = "workflow"

    # -- helpers ---------------------------------------------------------------------------------

    def _lazy(
        self, body: Callable[[WorkflowDefinition[I, O], Engine], Awaitable[Effect[R, Any]]]
    ) -> Effect[R, Any]:
        """Resolve the workflow, open the engine and run ``body``; ``ValidationError``,
        ``StorageError`` and ``InstanceNotFoundError`` raised by it become failures.

        (The public methods declare exactly which errors each can fail with.)
        """

        async def run() -> Effect[R, Any]:
            try:
                definition = self._resolve()
            except JobNotFoundError as exc:
                return Effect.fail(exc)
            engine = await self._engine()
            try:
                result = await body(definition, engine)
            except (ValidationError, StorageError, InstanceNotFoundError) as exc:
                return Effect.fail(exc)
            return result

        return async_effect(run)

    def _run_ref(self, run_id: str) -> InstanceRef:
        checked = validate_id(run_id, field="run_id")
        ref = _runs.run_ref(self._name, checked)
        if not _runs.run_id_fits(self._name, checked):
            raise InstanceNotFoundError(instance_id=ref.instance_id)
        return ref

    async def _snapshot(self, engine: Engine, ref: InstanceRef) -> Mapping[str, bytes]:
        snaps = await engine.read([ref])
        return snaps[ref.instance_id].records

    async def _load_run(
        self, definition: WorkflowDefinition[I, O], engine: Engine, ref: InstanceRef
    ) -> Run[I, O]:
        records = await self._snapshot(engine, ref)
        run = definition.read_run(records, ref.id, self._name, engine.clock.now())
        if run is None:
            raise InstanceNotFoundError(instance_id=ref.instance_id)
        return run

    async def _apply(
        self, definition: WorkflowDefinition[I, O], engine: Engine, prepared: Sequence[Prepared]
    ) -> Effect[list[TriggerResult], ConflictError | StorageError]:
        if not prepared:
            return Effect.succeed([])
        name = self._name
        refs: dict[str, InstanceRef] = {}
        for item in prepared:
            for ref in (
                _runs.run_ref(name, item.run_id),
                None
                if item.idempotency_key is None
                else _runs.idem_ref(name, item.idempotency_key),
                None if item.concurrency_key is None else _runs.key_ref(name, item.concurrency_key),
            ):
                if ref is not None:
                    refs.setdefault(ref.instance_id, ref)

        def handler(txs: Sequence[InstanceTx]) -> Effect[list[TriggerResult], ConflictError]:
            return definition.trigger(name, {tx.instance_id: tx for tx in txs}, prepared)

        return await engine.call(list(refs.values()), handler, log_level=definition.log_level)

    # -- triggers --------------------------------------------------------------------------------

    def trigger(
        self,
        input: I,
        *,
        idempotency_key: str | None = None,
        concurrency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
        coalesce: Coalesce | None = None,
    ) -> Effect[TriggerResult, ConflictError | _Lookup]:
        """Create a pending run of ``input`` (committed when the effect succeeds).

        ``ValidationError`` (nothing written) if the input does not fit the schema or an
        option is invalid. With ``idempotency_key``, a retained run triggered with the same
        key is returned instead (``idempotent``). With ``concurrency_key``, a run of the key
        still pending fails the trigger with ``ConflictError`` — or is returned
        (``coalesced``) with ``coalesce="skip"``.
        """
        request = TriggerRequest(
            input=input,
            idempotency_key=idempotency_key,
            concurrency_key=concurrency_key,
            labels=None if labels is None else dict(labels),
            coalesce=coalesce,
        )
        return self.batch_trigger([request]).map(_first)

    def batch_trigger(
        self, items: Sequence[I | TriggerRequest[I]]
    ) -> Effect[list[TriggerResult], ConflictError | _Lookup]:
        """Trigger every item (an input or a ``TriggerRequest``) in ONE transaction.

        One result per item, in order. If any item is invalid or conflicts, nothing is
        written. Items sharing an idempotency key give one run; a second item pending on
        the same concurrency key conflicts (or coalesces) with the first.
        """

        async def body(
            definition: WorkflowDefinition[I, O], engine: Engine
        ) -> Effect[list[TriggerResult], ConflictError | StorageError]:
            if isinstance(items, str | bytes) or not isinstance(items, Sequence):
                raise _bad("items", "must be a sequence of inputs or TriggerRequests")
            now = engine.clock.now()
            prepared = [definition.prepare(item, _runs.new_run_id(now)) for item in items]
            return await self._apply(definition, engine, prepared)

        return self._lazy(body)

    def trigger_and_wait(
        self,
        input: I,
        *,
        idempotency_key: str | None = None,
        concurrency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
        coalesce: Coalesce | None = None,
        timeout: DurationInput | None = None,
    ) -> Effect[
        O,
        ConflictError
        | ExecutionError
        | RunCancelledError
        | InstanceNotFoundError
        | TimeoutException
        | _Lookup,
    ]:
        """Trigger, then wait for the run to finish and give its output.

        A failed run fails with ``ExecutionError`` (``cause``: a ``RunFailure`` carrying the
        run's error text), a cancelled one with ``RunCancelledError``; ``timeout`` (runtime
        clock) fails with ``TimeoutException`` — the run goes on. Something must execute the
        run meanwhile (a worker).
        """
        triggered = self.trigger(
            input,
            idempotency_key=idempotency_key,
            concurrency_key=concurrency_key,
            labels=labels,
            coalesce=coalesce,
        )

        def wait_for(result: TriggerResult) -> Effect[O, Any]:
            return self.wait(result.run_id, timeout=timeout).flat_map(self._outcome)

        return triggered.flat_map(wait_for)

    def _outcome(self, run: Run[I, O]) -> Effect[O, ExecutionError | RunCancelledError]:
        iid = _runs.run_ref(self._name, run.id).instance_id
        if run.status == "completed":
            return Effect.succeed(cast(O, run.output))
        if run.status == "cancelled":
            return Effect.fail(RunCancelledError(run_id=run.id))
        failure = RunFailure(run_id=run.id, error=run.error or "unknown error")
        return Effect.fail(
            ExecutionError(job_type="workflow", job_name=self._name, instance_id=iid, cause=failure)
        )

    def retrigger(
        self, run_id: str
    ) -> Effect[TriggerResult, InstanceNotFoundError | InvalidStateError | ConflictError | _Lookup]:
        """A new run with a finished run's input, labels and concurrency key (``created``).

        ``InvalidStateError`` if the run is not finished.
        """

        async def body(definition: WorkflowDefinition[I, O], engine: Engine) -> Effect[Any, Any]:
            ref = self._run_ref(run_id)
            records = await self._snapshot(engine, ref)
            try:
                meta = definition.check_finished(meta_of(records), ref.instance_id, "retrigger")
            except InvalidStateError as exc:
                return Effect.fail(exc)
            if definition.expired(meta, engine.clock.now()):
                raise InstanceNotFoundError(instance_id=ref.instance_id)
            data = records.get(INPUT_KEY, b"null")
            definition.input_codec.decode(data)  # still valid for the current schema
            prepared = Prepared(
                run_id=_runs.new_run_id(engine.clock.now()),
                input_data=data,
                idempotency_key=None,
                concurrency_key=meta.concurrency_key,
                labels=dict(meta.labels),
                coalesce=None,
            )
            applied = await self._apply(definition, engine, [prepared])
            return applied.map(_first)

        return self._lazy(body)

    # -- reads -----------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> Effect[Run[I, O], InstanceNotFoundError | _Lookup]:
        """The run as committed; ``InstanceNotFoundError`` if there is none."""

        async def body(
            definition: WorkflowDefinition[I, O], engine: Engine
        ) -> Effect[Run[I, O], Any]:
            return Effect.succeed(await self._load_run(definition, engine, self._run_ref(run_id)))

        return self._lazy(body)

    def list_runs(
        self,
        status: RunStatus | Sequence[RunStatus] | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int = 50,
        offset: int = 0,
    ) -> Effect[list[Run[I, O]], _Lookup]:
        """Runs newest first, filtered by status (one or several) and labels (AND-ed),
        ``limit`` of them after skipping ``offset``."""

        async def body(
            definition: WorkflowDefinition[I, O], engine: Engine
        ) -> Effect[list[Run[I, O]], Any]:
            wanted = _check_statuses(status)
            required = _check_labels(labels)
            for field, value in (("limit", limit), ("offset", offset)):
                given: object = value
                if isinstance(given, bool) or not isinstance(given, int) or value < 0:
                    raise _bad(field, f"must be an int >= 0, got {value!r}")
            prefix = f"{_runs.JOB_TYPE}:{self._name}:"
            ids = list(await engine.list_instances(prefix))
            ids.reverse()
            now = engine.clock.now()
            out: list[Run[I, O]] = []
            skipped = 0
            for start in range(0, len(ids), _PAGE):
                if len(out) >= limit:
                    break
                chunk = ids[start : start + _PAGE]
                snaps = await engine.load(chunk)
                for iid in chunk:
                    run = definition.read_run(
                        snaps[iid].records, iid[len(prefix) :], self._name, now
                    )
                    if run is None or (wanted is not None and run.status not in wanted):
                        continue
                    if any(run.labels.get(k) != v for k, v in required.items()):
                        continue
                    if skipped < offset:
                        skipped += 1
                        continue
                    out.append(run)
                    if len(out) >= limit:
                        break
            return Effect.succeed(out)

        return self._lazy(body)

    def steps(self, run_id: str) -> Effect[list[StepRecord], InstanceNotFoundError | _Lookup]:
        """The run's completed and failed steps in order, with outputs, errors and timings."""

        async def body(
            definition: WorkflowDefinition[I, O], engine: Engine
        ) -> Effect[list[StepRecord], Any]:
            ref = self._run_ref(run_id)
            records = await self._snapshot(engine, ref)
            meta = meta_of(records)
            if meta is None or definition.expired(meta, engine.clock.now()):
                raise InstanceNotFoundError(instance_id=ref.instance_id)
            return Effect.succeed(definition.read_steps(records))

        return self._lazy(body)

    def wait(
        self, run_id: str, timeout: DurationInput | None = None
    ) -> Effect[Run[I, O], InstanceNotFoundError | TimeoutException | _Lookup]:
        """The run once it is finished (``TimeoutException`` after ``timeout``, runtime clock)."""

        async def body(definition: WorkflowDefinition[I, O], engine: Engine) -> Effect[Any, Any]:
            ref = self._run_ref(run_id)
            clock = engine.clock
            limit = None if timeout is None else Duration.parse(timeout)
            deadline = None if limit is None else clock.now() + limit
            ended = asyncio.Event()  # set by this process's events about the run's end

            def on_end(event: object) -> None:
                if getattr(event, "run_id", None) == ref.id:
                    ended.set()

            offs = [engine.subscribe(kind, on_end) for kind in _END_EVENTS]
            try:
                while True:
                    ended.clear()
                    run = await self._load_run(definition, engine, ref)
                    if run.status in FINISHED:
                        return Effect.succeed(run)
                    if deadline is not None and clock.now() >= deadline:
                        assert limit is not None
                        millis = round(limit.total_seconds() * 1000)
                        return Effect.fail(TimeoutException(timeout_ms=millis))
                    await _wait_for_news(engine, ended, deadline)
            finally:
                for off in offs:
                    off()

        return self._lazy(body)

    # -- cancel / delete -------------------------------------------------------------------------

    def cancel(
        self, run_id: str
    ) -> Effect[None, InstanceNotFoundError | InvalidStateError | _Lookup]:
        """Cancel an active run (``InvalidStateError`` if it is finished).

        A run no worker holds (pending, sleeping, or left by a crashed worker) is cancelled
        at once. A run a worker is executing gets a cancel request: the worker stops at its
        next step boundary, and the step that was running is not recorded (``wait`` gives
        the cancelled run).
        """

        async def body(definition: WorkflowDefinition[I, O], engine: Engine) -> Effect[Any, Any]:
            ref = self._run_ref(run_id)
            cancel_ref = _runs.cancel_ref(self._name, ref.id)
            level = definition.log_level
            for _ in range(_CANCEL_ROUNDS):
                records = await self._snapshot(engine, ref)
                meta = meta_of(records)
                if meta is None:
                    raise InstanceNotFoundError(instance_id=ref.instance_id)
                if meta.status in FINISHED:
                    return Effect.fail(
                        InvalidStateError(
                            expected="pending, leased or sleeping",
                            actual=meta.status,
                            operation="cancel",
                        )
                    )
                direct = await engine.try_call(
                    [ref], lambda txs: definition.cancel_idle(txs[0]), log_level=level
                )
                if direct is not None:
                    return direct
                # Held: a worker is executing it (or another call holds it for a moment).
                requested = await engine.call(
                    [cancel_ref],
                    lambda txs: definition.request_cancel(txs[0], ref.instance_id),
                    log_level=level,
                )
                if not _succeeded(requested):
                    return requested
                after = meta_of(await self._snapshot(engine, ref))
                if after is not None and after.status in ("completed", "failed"):
                    # The run's end was committed before the request (its commit is guarded
                    # by the request, atomically): the request came too late, and stays
                    # unread until the run is purged or deleted.
                    return Effect.fail(
                        InvalidStateError(
                            expected="pending, leased or sleeping",
                            actual=after.status,
                            operation="cancel",
                        )
                    )
                if after is None or after.status in ("leased", *FINISHED):
                    return Effect.succeed(None)  # the worker (or a takeover) honours it
                await engine.wait_for_change(0.01)
            # Still held after every round: the cancel request is written, and whoever holds
            # the run next (a worker) honours it at its next step boundary.
            return Effect.succeed(None)

        return self._lazy(body)

    def delete_run(
        self, run_id: str
    ) -> Effect[None, InstanceNotFoundError | InvalidStateError | _Lookup]:
        """Delete a finished run with its steps, logs and idempotency mark (``run:delete``).

        ``InvalidStateError`` if the run is still active.
        """

        async def body(definition: WorkflowDefinition[I, O], engine: Engine) -> Effect[Any, Any]:
            ref = self._run_ref(run_id)
            records = await self._snapshot(engine, ref)
            try:
                meta = definition.check_finished(meta_of(records), ref.instance_id, "delete_run")
            except InvalidStateError as exc:
                return Effect.fail(exc)
            refs = [ref, _runs.cancel_ref(self._name, ref.id)]
            if meta.idempotency_key is not None:
                refs.append(_runs.idem_ref(self._name, meta.idempotency_key))
            return await engine.call(refs, definition.delete, log_level=definition.log_level)

        return self._lazy(body)


async def _wait_for_news(engine: Engine, ended: asyncio.Event, deadline: datetime | None) -> None:
    """Until the run's end is announced in this process, storage changed (throttled: at most
    one look per ``_MIN_GAP``, at least one per ``_POLL``), or the deadline passed."""
    loop = asyncio.get_running_loop()
    started = loop.time()
    announced = asyncio.ensure_future(ended.wait())
    changed = asyncio.ensure_future(engine.wait_for_change(_POLL))
    waiters: set[asyncio.Future[Any]] = {announced, changed}
    timer = None
    if deadline is not None:
        timer = asyncio.ensure_future(engine.clock.sleep_until(deadline))
        waiters.add(timer)
    try:
        await asyncio.wait(waiters, return_when=asyncio.FIRST_COMPLETED)
        gap = _MIN_GAP - (loop.time() - started)
        if gap > 0 and not announced.done() and (timer is None or not timer.done()):
            # Every checkpoint of every run is a storage change: look again a bit later.
            pause = asyncio.ensure_future(asyncio.sleep(gap))
            waiters.add(pause)
            pending = {w for w in waiters if not w.done()}
            await asyncio.wait(pending, return_when=asyncio.FIRST_COMPLETED)
    finally:
        for waiter in waiters:
            waiter.cancel()


def _first(results: list[TriggerResult]) -> TriggerResult:
    return results[0]


def _succeeded(effect: Effect[Any, Any]) -> bool:
    """Whether a settled call's replayed outcome is a success."""
    return isinstance(Effect.run_sync(effect.either()).unwrap(), Ok)


def _check_statuses(status: object) -> frozenset[str] | None:
    if status is None:
        return None
    given = [status] if isinstance(status, str) else status
    if not isinstance(given, Sequence | frozenset | set):
        raise _bad("status", f"must be a run status or a sequence of them, got {status!r}")
    wanted = frozenset(str(s) for s in given)
    unknown = wanted - _STATUSES
    if unknown:
        raise _bad("status", f"unknown run status {sorted(unknown)}; one of {sorted(_STATUSES)}")
    return wanted


def _check_labels(labels: object) -> dict[str, str]:
    if labels is None:
        return {}
    if not isinstance(labels, Mapping):
        raise _bad("labels", "must be a mapping of str to str")
    return _runs.LABELS_CODEC.validate(dict(labels))
