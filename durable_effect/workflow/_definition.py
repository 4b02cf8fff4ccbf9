"""`Workflow.make` and `WorkflowDefinition[I, O]`: step-checkpointed runs (Durably's model).

``Workflow.make(input_schema, run, output_schema=None, concurrency_limit=1, retain=None)``
builds a definition; ``run(step, input) -> Effect[O, E]`` (usually ``@Effect.gen``) is the
workflow. Runs go ``pending → leased → completed | failed | cancelled``, plus ``sleeping``
while they wait for a ``step.sleep`` or a step retry. How one execution proceeds is in
``_execute``; what is stored is in ``_runs``. The methods below are the client operations,
each a function of the ``InstanceTx``\\ s the client leased (or of a committed snapshot).

* **trigger**: validates the input (``ValidationError``: nothing written), then per item:
  an idempotency key already used by a retained run gives that run (``idempotent``); a
  concurrency key with a run still pending fails with ``ConflictError`` — or gives that run
  with ``coalesce="skip"`` (``coalesced``); otherwise a ``pending`` run is written with its
  alarm now (``created``). A batch is one transaction: all items or none.
* **cancel**: a run no worker holds (pending, sleeping, or abandoned by a crashed worker)
  is cancelled at once; for a run a worker is executing, a cancel request is written and the
  worker stops at its next step boundary (the step's result is not recorded).
* **delete** and **retrigger** need a finished run; **cancel** an active one
  (``InvalidStateError`` otherwise). Unknown runs: ``InstanceNotFoundError``.
* **retention**: with ``retain``, a finished run (and its idempotency mark) is purged that
  long after it finished; until the purge runs, reads already treat it as gone.
"""

from __future__ import annotations

import types
from collections.abc import Callable, Mapping, Sequence
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, Never, TypeAlias, TypeVar, overload

import attrs

from durable_effect import _log
from durable_effect._codec import Codec, codec_for, decode_json
from durable_effect._duration import Duration, DurationInput
from durable_effect._effect import Effect, async_effect
from durable_effect._events import Event, new_event_id
from durable_effect.errors import (
    ConflictError,
    InstanceNotFoundError,
    InvalidStateError,
    ValidationError,
)
from durable_effect.jobs._base import JobDefinition
from durable_effect.jobs._instance import InstanceTx, validate_id
from durable_effect.workflow import _runs
from durable_effect.workflow._events import (
    RunCancelled,
    RunCoalesced,
    RunDeleted,
    RunTriggered,
    StepCancelled,
)
from durable_effect.workflow._execute import drop_mark, handle_alarm, retention_alarm
from durable_effect.workflow._execution_base import cancel_flag_record
from durable_effect.workflow._runs import (
    CANCEL_KEY,
    FINISHED,
    IDEM_KEY,
    INPUT_KEY,
    KEY_CODEC,
    KEY_STATE_KEY,
    LABELS_CODEC,
    OUTPUT_KEY,
    Coalesce,
    KeyState,
    Run,
    RunMeta,
    StepRecord,
    TriggerRequest,
    TriggerResult,
    load_meta,
    meta_of,
    save_meta,
)
from durable_effect.workflow._step import Step

__all__ = ["Prepared", "RunFn", "Workflow", "WorkflowDefinition"]

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741
J = TypeVar("J")

RunFn: TypeAlias = Callable[[Step, I], Effect[O, BaseException]]

_RunErrors: TypeAlias = InstanceNotFoundError | InvalidStateError | ValidationError

_ACTIVE_TEXT = "pending, leased or sleeping"
_FINISHED_TEXT = "completed, failed or cancelled"


@attrs.frozen(kw_only=True)
class Prepared:
    """A validated trigger item, with the id its run gets if one is created."""

    run_id: str
    input_data: bytes
    idempotency_key: str | None
    concurrency_key: str | None
    labels: dict[str, str]
    coalesce: Coalesce | None


def _bad(schema: str, message: str) -> ValidationError:
    return ValidationError(schema=schema, message=message, path=schema)


@attrs.frozen(kw_only=True, eq=False)
class WorkflowDefinition(JobDefinition, Generic[I, O]):
    """A workflow (made by ``Workflow.make``); its methods are the workflow's semantics."""

    job_type: ClassVar[str] = "workflow"

    input_schema: object
    run: RunFn[I, O]
    output_schema: object
    concurrency_limit: int
    retain: timedelta | None
    input_codec: Codec[I] = attrs.field(repr=False)
    level: int = attrs.field(repr=False)

    @property
    def log_level(self) -> int:
        return self.level

    # -- the alarm ---------------------------------------------------------------------------

    def on_alarm(self, tx: InstanceTx, due_at: datetime) -> Effect[None, Never]:
        """Execute the run (or purge it when its retention is over)."""
        return async_effect(lambda: handle_alarm(self, tx, due_at))

    # -- trigger -----------------------------------------------------------------------------

    def prepare(self, item: object, run_id: str) -> Prepared:
        """Validate one trigger item (an input or a ``TriggerRequest``); ``ValidationError``."""
        request = item if isinstance(item, TriggerRequest) else TriggerRequest(input=item)
        data = self.input_codec.encode(self.input_codec.validate(request.input))
        idem = request.idempotency_key
        if idem is not None:
            validate_id(idem, field="idempotency_key")
        key = request.concurrency_key
        if key is not None:
            validate_id(key, field="concurrency_key")
        labels: dict[str, str] = {}
        if request.labels is not None:
            if not isinstance(request.labels, Mapping):
                raise _bad("labels", "must be a mapping of str to str")
            labels = LABELS_CODEC.validate(dict(request.labels))
        coalesce: object = request.coalesce
        if coalesce is not None and coalesce != "skip":
            raise _bad("coalesce", f"must be None or 'skip', got {coalesce!r}")
        return Prepared(
            run_id=run_id,
            input_data=data,
            idempotency_key=idem,
            concurrency_key=key,
            labels=labels,
            coalesce=request.coalesce,
        )

    def trigger(
        self, name: str, txs: Mapping[str, InstanceTx], items: Sequence[Prepared]
    ) -> Effect[list[TriggerResult], ConflictError]:
        """Apply prepared triggers of workflow ``name`` to the leased instances ``txs``
        (by instance id: every new run, idempotency mark and concurrency key involved)."""

        async def run() -> Effect[list[TriggerResult], ConflictError]:
            return await self._trigger(name, txs, items)

        return async_effect(run)

    async def _trigger(
        self, name: str, txs: Mapping[str, InstanceTx], items: Sequence[Prepared]
    ) -> Effect[list[TriggerResult], ConflictError]:
        results: list[TriggerResult] = []
        events: list[tuple[InstanceTx, Event]] = []
        created: set[str] = set()
        for item in items:
            ref = _runs.run_ref(name, item.run_id)
            rtx = txs[ref.instance_id]
            now = rtx.now()
            base: dict[str, Any] = {
                "event_id": new_event_id(),
                "timestamp": now,
                "job_name": name,
                "labels": dict(item.labels),
            }
            itx: InstanceTx | None = None
            if item.idempotency_key is not None:
                itx = txs[_runs.idem_ref(name, item.idempotency_key).instance_id]
                mark = itx.get(IDEM_KEY)
                if mark is not None:
                    existing = mark.decode("utf-8")
                    if existing in created or await self._retained(rtx, name, existing, now):
                        results.append(TriggerResult(run_id=existing, disposition="idempotent"))
                        continue
            if item.concurrency_key is not None:
                key = item.concurrency_key
                ktx = txs[_runs.key_ref(name, key).instance_id]
                data = ktx.get(KEY_STATE_KEY)
                state = KeyState() if data is None else KEY_CODEC.decode(data)
                pending = state.pending
                if (
                    pending is not None
                    and pending not in created
                    and not await self._still_pending(rtx, name, pending)
                ):
                    pending = None
                if pending is not None:
                    if item.coalesce != "skip":
                        return Effect.fail(
                            ConflictError(
                                key=key,
                                message=f"run {pending} of workflow {name!r} is already pending "
                                "for this concurrency key",
                            )
                        )
                    iid = _runs.run_ref(name, pending).instance_id
                    events.append(
                        (
                            rtx,
                            RunCoalesced(
                                **base, instance_id=iid, run_id=pending, concurrency_key=key
                            ),
                        )
                    )
                    results.append(TriggerResult(run_id=pending, disposition="coalesced"))
                    continue
                ktx.put(KEY_STATE_KEY, KEY_CODEC.encode(attrs.evolve(state, pending=item.run_id)))
            meta = RunMeta(
                status="pending",
                created_at=now,
                labels=dict(item.labels),
                idempotency_key=item.idempotency_key,
                concurrency_key=item.concurrency_key,
            )
            save_meta(rtx, meta)
            rtx.put(INPUT_KEY, item.input_data)
            rtx.set_alarm(now)
            if itx is not None:
                itx.put(IDEM_KEY, item.run_id.encode("utf-8"))
            created.add(item.run_id)
            events.append(
                (
                    rtx,
                    RunTriggered(
                        **base,
                        instance_id=ref.instance_id,
                        run_id=item.run_id,
                        input=decode_json(item.input_data),
                        idempotency_key=item.idempotency_key,
                        concurrency_key=item.concurrency_key,
                    ),
                )
            )
            results.append(TriggerResult(run_id=item.run_id, disposition="created"))
        for tx, event in events:
            tx.emit(event)
        return Effect.succeed(results)

    async def _retained(self, tx: InstanceTx, name: str, run_id: str, now: datetime) -> bool:
        """Whether the run an idempotency mark names still exists (and is not expired)."""
        if tx.hooks is None:  # pragma: no cover - the engine always gives hooks
            return True
        snap = await tx.hooks.peek(_runs.run_ref(name, run_id).instance_id)
        meta = meta_of(snap.records)
        return meta is not None and not self.expired(meta, now)

    async def _still_pending(self, tx: InstanceTx, name: str, run_id: str) -> bool:
        """Whether a concurrency key's pending run is still pending (else the mark is stale)."""
        if tx.hooks is None:  # pragma: no cover
            return True
        snap = await tx.hooks.peek(_runs.run_ref(name, run_id).instance_id)
        meta = meta_of(snap.records)
        return meta is not None and meta.status == "pending"

    # -- reads -------------------------------------------------------------------------------

    def expired(self, meta: RunMeta, now: datetime) -> bool:
        """Whether a finished run's retention is over (it is about to be purged)."""
        return (
            self.retain is not None
            and meta.status in FINISHED
            and meta.completed_at is not None
            and meta.completed_at + self.retain <= now
        )

    def read_run(
        self, records: Mapping[str, bytes], run_id: str, name: str, now: datetime
    ) -> Run[I, O] | None:
        """The run in a committed snapshot (``None``: no such run, or past its retention)."""
        meta = meta_of(records)
        if meta is None or self.expired(meta, now):
            return None
        input_value = self.input_codec.decode(records.get(INPUT_KEY, b"null"))
        output: Any = None
        data = records.get(OUTPUT_KEY)
        if data is not None:
            if self.output_schema is not None:
                output = codec_for(self.output_schema).decode(data)
            else:
                output = _runs.decode_loose(data, meta.output_type)
        return Run(
            id=run_id,
            workflow=name,
            status=meta.status,
            input=input_value,
            output=output,
            error=meta.error,
            labels=dict(meta.labels),
            progress=meta.progress,
            attempt=meta.attempt,
            created_at=meta.created_at,
            started_at=meta.started_at,
            completed_at=meta.completed_at,
            current_step=meta.current_step,
            idempotency_key=meta.idempotency_key,
            concurrency_key=meta.concurrency_key,
        )

    def read_steps(self, records: Mapping[str, bytes]) -> list[StepRecord]:
        """The completed and failed steps in a committed snapshot, in order."""
        out: list[StepRecord] = []
        for rec in _runs.load_steps(records):
            if rec.status == "sleeping":
                continue
            output: object = None
            if rec.status == "completed" and rec.output is not None:
                output = _runs.decode_loose(rec.output.encode("utf-8"), rec.output_type)
            out.append(
                StepRecord(
                    name=rec.name,
                    index=rec.index,
                    status="completed" if rec.status == "completed" else "failed",
                    output=output,
                    error=rec.error,
                    started_at=rec.started_at,
                    completed_at=rec.completed_at,
                    attempts=rec.attempts,
                )
            )
        return out

    # -- cancel / delete ---------------------------------------------------------------------

    def _check_active(self, tx: InstanceTx, meta: RunMeta | None) -> RunMeta:
        if meta is None:
            raise InstanceNotFoundError(instance_id=tx.instance_id)
        if meta.status in FINISHED:
            raise InvalidStateError(expected=_ACTIVE_TEXT, actual=meta.status, operation="cancel")
        return meta

    def cancel_idle(
        self, tx: InstanceTx
    ) -> Effect[None, InstanceNotFoundError | InvalidStateError | ValidationError]:
        """Cancel a run no worker holds (this handler holds its lease)."""

        def run() -> Effect[None, InstanceNotFoundError | InvalidStateError | ValidationError]:
            try:
                meta = self._check_active(tx, load_meta(tx))
            except (InstanceNotFoundError, InvalidStateError, ValidationError) as exc:
                return Effect.fail(exc)
            now = tx.now()
            base: dict[str, Any] = {
                "event_id": new_event_id(),
                "timestamp": now,
                "instance_id": tx.instance_id,
                "run_id": tx.ref.id,
                "job_name": tx.ref.job_name,
                "labels": dict(meta.labels),
            }
            if meta.status == "sleeping" and meta.current_step is not None:
                tx.emit(StepCancelled(**base, step_name=meta.current_step))
            save_meta(tx, attrs.evolve(meta, status="cancelled", completed_at=now))
            tx.set_alarm(retention_alarm(self, now))
            tx.emit(RunCancelled(**{**base, "event_id": new_event_id()}))
            return Effect.succeed(None)

        return Effect.suspend(run)

    def request_cancel(
        self, ctx: InstanceTx, run_instance_id: str
    ) -> Effect[None, InstanceNotFoundError | InvalidStateError | ValidationError]:
        """Write a cancel request for a run a worker holds (``ctx`` is ``wfcancel:…``)."""

        async def run() -> Effect[None, _RunErrors]:
            if ctx.hooks is None:  # pragma: no cover
                raise RuntimeError("request_cancel needs the runtime's hooks")
            snap = await ctx.hooks.peek(run_instance_id)
            try:
                meta = meta_of(snap.records)
                if meta is None:
                    raise InstanceNotFoundError(instance_id=run_instance_id)
                if meta.status in FINISHED:
                    raise InvalidStateError(
                        expected=_ACTIVE_TEXT, actual=meta.status, operation="cancel"
                    )
            except (InstanceNotFoundError, InvalidStateError, ValidationError) as exc:
                return Effect.fail(exc)
            if ctx.get(CANCEL_KEY) is None:
                ctx.put(CANCEL_KEY, cancel_flag_record(ctx.now()))
            return Effect.succeed(None)

        return async_effect(run)

    def check_finished(self, meta: RunMeta | None, instance_id: str, operation: str) -> RunMeta:
        """The meta of a finished run, or the error ``operation`` fails with."""
        if meta is None:
            raise InstanceNotFoundError(instance_id=instance_id)
        if meta.status not in FINISHED:
            raise InvalidStateError(
                expected=_FINISHED_TEXT, actual=meta.status, operation=operation
            )
        return meta

    def delete(
        self, txs: Sequence[InstanceTx]
    ) -> Effect[None, InstanceNotFoundError | InvalidStateError | ValidationError]:
        """Delete a finished run: ``txs`` = the run, its cancel instance, its idempotency mark."""

        def run() -> Effect[None, InstanceNotFoundError | InvalidStateError | ValidationError]:
            rtx, ctx, *rest = txs
            try:
                meta = self.check_finished(load_meta(rtx), rtx.instance_id, "delete_run")
            except (InstanceNotFoundError, InvalidStateError, ValidationError) as exc:
                return Effect.fail(exc)
            rtx.purge()
            if ctx.exists:
                ctx.purge()
            for itx in rest:
                drop_mark(itx, rtx.ref.id)
            rtx.emit(
                RunDeleted(
                    event_id=new_event_id(),
                    timestamp=rtx.now(),
                    instance_id=rtx.instance_id,
                    run_id=rtx.ref.id,
                    job_name=rtx.ref.job_name,
                    labels=dict(meta.labels),
                )
            )
            return Effect.succeed(None)

        return Effect.suspend(run)


def _check_callable(field: str, value: object) -> None:
    if not callable(value):
        raise TypeError(f"Workflow.make: {field} must be callable, got {type(value).__name__}")


def _schema_codec(field: str, schema: object) -> Codec[Any]:
    try:
        return codec_for(schema)
    except TypeError as exc:
        raise TypeError(f"Workflow.make: {field}: {exc}") from None


class Workflow:
    """Namespace of ``Workflow.make``."""

    @overload
    @staticmethod
    def make(
        input_schema: type[I],
        run: RunFn[I, O],
        output_schema: type[O] | None = None,
        concurrency_limit: int = 1,
        retain: DurationInput | None = None,
        *,
        logging: bool | int = False,
    ) -> WorkflowDefinition[I, O]: ...

    @overload
    @staticmethod
    def make(
        input_schema: types.UnionType | type[J],
        run: RunFn[I, O],
        output_schema: object = None,
        concurrency_limit: int = 1,
        retain: DurationInput | None = None,
        *,
        logging: bool | int = False,
    ) -> WorkflowDefinition[I, O]: ...

    @staticmethod
    def make(
        input_schema: Any,
        run: Any,
        output_schema: Any = None,
        concurrency_limit: int = 1,
        retain: DurationInput | None = None,
        *,
        logging: bool | int = False,
    ) -> WorkflowDefinition[Any, Any]:
        """Define a workflow: ``run(step, input) -> Effect[O, E]`` over inputs of
        ``input_schema``, outputs validated with ``output_schema`` (default: stored as the
        output's own type), at most ``concurrency_limit`` leased runs per concurrency key,
        finished runs purged ``retain`` after they finish (default: kept).

        Invalid arguments raise ``TypeError``/``ValueError`` naming the field.
        """
        input_codec = _schema_codec("input_schema", input_schema)
        if output_schema is not None:
            _schema_codec("output_schema", output_schema)
        _check_callable("run", run)
        limit: object = concurrency_limit
        if isinstance(limit, bool) or not isinstance(limit, int) or concurrency_limit < 1:
            raise ValueError(
                f"Workflow.make: concurrency_limit must be an int >= 1, got {concurrency_limit!r}"
            )
        kept: timedelta | None = None
        if retain is not None:
            try:
                kept = Duration.parse(retain)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"Workflow.make: retain: {exc}") from None
        try:
            level = _log.level_for(logging)
        except TypeError as exc:
            raise TypeError(f"Workflow.make: logging: {exc}") from None
        return WorkflowDefinition(
            input_schema=input_schema,
            run=run,
            output_schema=output_schema,
            concurrency_limit=concurrency_limit,
            retain=kept,
            input_codec=input_codec,
            level=level,
        )
