"""`WorkflowDefinition[I, O]`: a registered workflow — its schemas, its ``run``, its limits.

The definition is what the runtime sees of a workflow: its alarm handler (``on_alarm``:
execute the run, ``_driver``), how a trigger item is validated (``prepare``) and how a
committed run reads (``read_run``, ``read_steps``; ``expired`` once its retention is over),
which index entries a run gets (``indexer``, ``_index``) and the retention sweep its
bookkeeping instance's alarm runs (``on_meta_alarm``, ``_retention``). What a client call
does to the instances it leased is in ``_operations``; the queries the client makes
(listing, waiting, the cancel protocol) in ``_queries``.
"""

from __future__ import annotations

import types
import typing
from collections.abc import Callable, Mapping
from datetime import datetime, timedelta
from typing import Any, ClassVar, Generic, Never, TypeAlias, cast

import attrs
from typing_extensions import TypeVar

from durable_effect._codec import Codec, codec_for, decode_json
from durable_effect._duration import Duration, DurationInput
from durable_effect._effect import Effect, async_effect
from durable_effect.errors import ValidationError
from durable_effect.jobs._base import JobDefinition
from durable_effect.jobs._instance import InstanceTx, validate_id
from durable_effect.workflow._driver import handle_alarm
from durable_effect.workflow._failures import ErrorClasses
from durable_effect.workflow._inbox import Outgoing, check_event_size
from durable_effect.workflow._index import RunIndexer
from durable_effect.workflow._operations import Prepared
from durable_effect.workflow._records import (
    INPUT_KEY,
    META,
    OUTPUT_KEY,
    RunMeta,
    check_labels,
    load_steps,
)
from durable_effect.workflow._results import FINISHED, Run, StepRecord, TriggerRequest
from durable_effect.workflow._retention import sweep
from durable_effect.workflow._step import Step
from durable_effect.workflow._values import KnownTypes, decode_loose

__all__ = ["RunFn", "WorkflowDefinition"]

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741
#: The errors a run fails with as themselves after persistence (``error_schema``).
E = TypeVar("E", bound=BaseException, default=Never)
#: The events a run accepts (``event_schema``).
V = TypeVar("V", default=object)

RunFn: TypeAlias = Callable[[Step, I], Effect[O, BaseException]]


def event_classes(schema: object) -> tuple[type, ...]:
    """The classes an event of ``schema`` may be: ``A | B`` gives ``(A, B)``."""
    if schema is None:
        return ()
    union = typing.get_origin(schema) in (typing.Union, types.UnionType)
    members = typing.get_args(schema) if union else (schema,)
    return tuple(m for m in members if isinstance(m, type))


def _bad(schema: str, message: str) -> ValidationError:
    return ValidationError(schema=schema, message=message, path=schema)


def parse_run_timeout(value: DurationInput, error: Callable[[str, str], Exception]) -> timedelta:
    """A run timeout (a positive duration); ``error("run_timeout", message)`` is raised if not."""
    try:
        parsed = Duration.parse(value)
    except (TypeError, ValueError) as exc:
        raise error("run_timeout", str(exc)) from None
    if parsed <= timedelta(0):
        raise error("run_timeout", f"must be positive, got {value!r}")
    return parsed


@attrs.frozen(kw_only=True, eq=False)
class WorkflowDefinition(JobDefinition, Generic[I, O, E, V]):
    """A workflow (made by ``Workflow.make``); its methods are the workflow's semantics.

    Typed by its input ``I``, output ``O``, declared errors ``E`` (``error_schema``; ``Never``
    by default) and events ``V`` (``event_schema``; ``object`` by default).
    """

    job_type: ClassVar[str] = "workflow"

    input_schema: object
    run: RunFn[I, O]
    output_schema: object
    concurrency_limit: int
    retain: timedelta | None
    input_codec: Codec[I] = attrs.field(repr=False)
    level: int = attrs.field(repr=False)
    event_schema: object = None
    error_schema: object = None
    run_timeout: timedelta | None = None
    #: Decodes and validates the events sent to a run (any JSON value without a schema).
    event_codec: Codec[Any] = attrs.field(repr=False, factory=lambda: codec_for(object))
    #: The classes a stored type name may name (``_values``).
    known: KnownTypes = attrs.field(repr=False, factory=KnownTypes)
    #: The errors that read back as themselves (``_failures``).
    errors: ErrorClasses = attrs.field(repr=False, factory=ErrorClasses)

    @property
    def log_level(self) -> int:
        return self.level

    def indexer(self, name: str) -> RunIndexer:
        """Runs listed by status, label and purge time (see ``workflow._index``)."""
        return RunIndexer(name, self.retain)

    def index_version(self) -> str:
        """The entries depend on ``retain`` (the purge instants): a change rebuilds them."""
        kept = "-" if self.retain is None else str(self.retain // timedelta(microseconds=1))
        return f"1:{kept}"

    def meta_alarm(self, now: datetime) -> datetime | None:
        """With ``retain``, the retention sweep (``_retention``): first at once."""
        return None if self.retain is None else now

    def on_meta_alarm(self, tx: InstanceTx, due_at: datetime) -> Effect[None, Never]:
        """The retention sweep: purge a batch of runs past ``retain``, re-arm."""
        return async_effect(lambda: sweep(self, tx))

    @property
    def event_classes(self) -> tuple[type, ...]:
        """The classes of ``event_schema`` (one, or the members of a union)."""
        return event_classes(self.event_schema)

    # -- the alarm ---------------------------------------------------------------------------

    def on_alarm(self, tx: InstanceTx, due_at: datetime) -> Effect[None, Never]:
        """Execute the run (or purge it when its retention is over)."""
        return async_effect(lambda: handle_alarm(self, tx))

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
            labels = check_labels(request.labels)
        coalesce: object = request.coalesce
        if coalesce is not None and coalesce != "skip":
            raise _bad("coalesce", f"must be None or 'skip', got {coalesce!r}")
        timeout = self.run_timeout
        if request.run_timeout is not None:
            timeout = parse_run_timeout(request.run_timeout, _bad)
        return Prepared(
            run_id=run_id,
            input_data=data,
            idempotency_key=idem,
            concurrency_key=key,
            labels=labels,
            coalesce=request.coalesce,
            run_timeout=timeout,
        )

    def prepare_event(self, event: object, event_id: str | None) -> Outgoing:
        """Validate an event to send (``ValidationError`` naming the field; nothing written)."""
        if event_id is not None:
            validate_id(event_id, field="event_id")
        try:
            data = self.event_codec.encode(event)  # ValidationError with the path in the event
        except RecursionError:
            raise _bad("event", "is nested too deeply") from None
        check_event_size(data)
        return Outgoing(data=data, event_id=event_id)

    # -- reads -------------------------------------------------------------------------------

    def expired(self, meta: RunMeta, now: datetime) -> bool:
        """Whether a finished run's retention is over (it is about to be purged)."""
        return (
            self.retain is not None
            and meta.status in FINISHED
            and meta.completed_at is not None
            and meta.completed_at + self.retain <= now
        )

    def decode_output(self, data: bytes, output_type: str | None) -> O:
        """A stored output as the run's output (its ``output_schema``, or its recorded type)."""
        if self.output_schema is not None:
            return cast(O, codec_for(self.output_schema).decode(data))
        return cast(O, decode_loose(data, output_type, self.known))

    def read_run(
        self, records: Mapping[str, bytes], run_id: str, name: str, now: datetime
    ) -> Run[I, O] | None:
        """The run in a committed snapshot (``None``: no such run, or past its retention)."""
        meta = META.load(records)
        if meta is None or self.expired(meta, now):
            return None
        input_value = self.input_codec.decode(records.get(INPUT_KEY, b"null"))
        output: Any = None
        data = records.get(OUTPUT_KEY)
        if data is not None:
            output = self.decode_output(data, meta.output_type)
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
            parent_run_id=meta.parent_run_id,
            forked_from=meta.forked_from,
        )

    def read_event(self, data: str | bytes) -> object:
        """A stored event, for a read: its ``event_schema`` class, or plain JSON builtins if
        it no longer fits the schema."""
        try:
            event: object = self.event_codec.decode(data)
        except ValidationError:
            return decode_json(data)
        return event

    def _step_output(self, output: str, path: str | None, event_seq: int | None) -> object:
        if event_seq is not None:  # an event a wait took: of the declared event_schema
            return self.read_event(output)
        return decode_loose(output.encode("utf-8"), path, self.known)

    def read_steps(self, records: Mapping[str, bytes]) -> list[StepRecord]:
        """The completed and failed steps in a committed snapshot, in order."""
        out: list[StepRecord] = []
        for rec in load_steps(records):
            if rec.status == "sleeping":
                continue
            output: object = None
            if rec.status == "completed" and rec.output is not None:
                output = self._step_output(rec.output, rec.output_type, rec.event_seq)
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
