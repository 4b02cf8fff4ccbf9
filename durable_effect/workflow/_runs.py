"""Workflow runs as stored and as shown: records, public result shapes, ids and value codecs.

A run is the instance ``workflow:{name}:{run_id}``. Its records:

* ``meta`` — :class:`RunMeta` (status, labels, keys, attempt, timestamps, progress…);
* ``input`` — the input, encoded with the workflow's input schema;
* ``output`` — the output (once completed), encoded with the output schema, or as the
  plain JSON of the value with its type recorded in ``meta.output_type``;
* ``step:{index:06d}`` — one :class:`StepRec` per step, in the order steps were reached;
* ``log:{seq:08d}`` — one :class:`LogRec` per ``step.log`` line.

Beside it live three small instances (none has an alarm; the registry ignores them):
``wfidem:{name}:{key}`` (the run an idempotency key gave), ``wfkey:{name}:{key}`` (a
concurrency key: its pending run and the runs holding a slot) and
``wfcancel:{name}:{run_id}`` (the cancel request of a run a worker is executing).

Values without a schema (step results, outputs) are stored as JSON together with the import
path of their type, and always handed back *decoded* — on the first execution too — so a
step gives the same value and type on its first run and on every replay (**fix**).
"""

from __future__ import annotations

import hashlib
import importlib
import types
import uuid
from datetime import datetime
from typing import Any, Generic, Literal, TypeAlias, TypeVar

import attrs

from durable_effect._codec import Codec, codec_for, decode_json, encode_json
from durable_effect.errors import TaggedError, ValidationError
from durable_effect.jobs._instance import MAX_ID_LENGTH, InstanceRef, InstanceTx

__all__ = [
    "ACTIVE",
    "FINISHED",
    "CancelFlag",
    "Coalesce",
    "KeyState",
    "LogRec",
    "Progress",
    "Run",
    "RunFailure",
    "RunMeta",
    "RunStatus",
    "StepRec",
    "StepRecord",
    "TriggerRequest",
    "TriggerResult",
    "cancel_ref",
    "decode_value",
    "encode_value",
    "idem_ref",
    "key_ref",
    "new_run_id",
    "run_ref",
]

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741

RunStatus: TypeAlias = Literal["pending", "leased", "sleeping", "completed", "failed", "cancelled"]
StepStatus: TypeAlias = Literal["completed", "failed"]
Coalesce: TypeAlias = Literal["skip"]
Disposition: TypeAlias = Literal["created", "idempotent", "coalesced"]

#: Statuses of a run that is over (only these can be deleted or retriggered).
FINISHED: frozenset[str] = frozenset({"completed", "failed", "cancelled"})
#: Statuses of a run that is not over (only these can be cancelled).
ACTIVE: frozenset[str] = frozenset({"pending", "leased", "sleeping"})

META_KEY = "meta"
INPUT_KEY = "input"
OUTPUT_KEY = "output"
STEP_PREFIX = "step:"
LOG_PREFIX = "log:"
CANCEL_KEY = "cancel"
IDEM_KEY = "run"
KEY_STATE_KEY = "state"

JOB_TYPE = "workflow"
IDEM_TYPE = "wfidem"
KEY_TYPE = "wfkey"
CANCEL_TYPE = "wfcancel"


# -- public shapes ------------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class Progress:
    """What ``step.progress(current, total, message)`` reported last."""

    current: int
    total: int | None = None
    message: str | None = None


@attrs.frozen(kw_only=True)
class Run(Generic[I, O]):
    """One run of a workflow, as committed.

    ``error`` is ``"<Tag>: <message>"`` for a failed run. ``current_step`` is the step the run
    was in (or last reached) at its last checkpoint. ``attempt`` counts how many times a
    worker took the run (1 on the first lease, one more after each sleep, retry wait or
    takeover of a crashed worker's run). A worker's taking of the run is committed with its
    first checkpoint (just before its first step's effect runs, or its end): a worker that
    died before that left no trace.
    """

    id: str
    workflow: str
    status: RunStatus
    input: I
    output: O | None
    error: str | None
    labels: dict[str, str]
    progress: Progress | None
    attempt: int
    created_at: datetime
    started_at: datetime | None
    completed_at: datetime | None
    current_step: str | None
    idempotency_key: str | None = None
    concurrency_key: str | None = None

    @property
    def finished(self) -> bool:
        """Whether the run is over (completed, failed or cancelled)."""
        return self.status in FINISHED


@attrs.frozen(kw_only=True)
class StepRecord:
    """A committed step of a run: its output (completed) or its error (failed)."""

    name: str
    index: int
    status: StepStatus
    output: object
    error: str | None
    started_at: datetime
    completed_at: datetime | None
    attempts: int = 1


@attrs.frozen(kw_only=True)
class TriggerResult:
    """What a trigger did: ``created`` a run, found it by key (``idempotent``), or joined
    the pending run of its concurrency key (``coalesced``)."""

    run_id: str
    disposition: Disposition


@attrs.frozen(kw_only=True)
class TriggerRequest(Generic[I]):
    """One item of ``batch_trigger``, with the options of ``trigger``."""

    input: I
    idempotency_key: str | None = None
    concurrency_key: str | None = None
    labels: dict[str, str] | None = None
    coalesce: Coalesce | None = None


class RunFailure(Exception):
    """The cause of the ``ExecutionError`` a failed run gives ``trigger_and_wait``.

    ``error`` is the run's error text (``"<Tag>: <message>"``); the original exception
    object lived in the worker that ran the step.
    """

    def __init__(self, run_id: str, error: str) -> None:
        super().__init__(error)
        self.run_id = run_id
        self.error = error

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, RunFailure):
            return NotImplemented
        return (self.run_id, self.error) == (other.run_id, other.error)

    def __hash__(self) -> int:
        return hash((self.run_id, self.error))


# -- stored records -----------------------------------------------------------------------------


@attrs.frozen(kw_only=True)
class RunMeta:
    """The ``meta`` record of a run."""

    status: RunStatus
    created_at: datetime
    labels: dict[str, str] = attrs.field(factory=dict)
    idempotency_key: str | None = None
    concurrency_key: str | None = None
    attempt: int = 0
    started_at: datetime | None = None
    completed_at: datetime | None = None
    error: str | None = None
    failed_step: str | None = None
    current_step: str | None = None
    progress: Progress | None = None
    output_type: str | None = None
    next_index: int = 0
    log_seq: int = 0
    #: How many times the run found its concurrency key full (for the back-off).
    key_polls: int = 0
    #: How many ``step.log``/``step.progress`` calls made outside any step are committed:
    #: a re-execution skips that many (they were done by an earlier execution).
    outside_logs: int = 0
    outside_progress: int = 0


@attrs.frozen(kw_only=True)
class StepRec:
    """A ``step:{index}`` record. ``status`` ``retrying``: failed, its retry alarm is set;
    ``sleeping``: a ``step.sleep`` not yet over."""

    name: str
    index: int
    status: Literal["completed", "failed", "retrying", "sleeping"]
    started_at: datetime
    first_started_at: datetime
    completed_at: datetime | None = None
    attempts: int = 1
    output: str | None = None
    output_type: str | None = None
    error: str | None = None
    wake_at: datetime | None = None


@attrs.frozen(kw_only=True)
class LogRec:
    """A ``log:{seq}`` record."""

    at: datetime
    level: Literal["info", "warn", "error"]
    message: str
    step: str | None = None
    data: dict[str, object] = attrs.field(factory=dict)


@attrs.frozen(kw_only=True)
class KeyState:
    """The state of a concurrency key: its pending run, and the runs holding a slot."""

    pending: str | None = None
    leased: list[str] = attrs.field(factory=list)


@attrs.frozen(kw_only=True)
class CancelFlag:
    """A cancel request for a run a worker is executing."""

    requested_at: datetime


META_CODEC: Codec[RunMeta] = codec_for(RunMeta)
STEP_CODEC: Codec[StepRec] = codec_for(StepRec)
LOG_CODEC: Codec[LogRec] = codec_for(LogRec)
KEY_CODEC: Codec[KeyState] = codec_for(KeyState)
CANCEL_CODEC: Codec[CancelFlag] = codec_for(CancelFlag)
LABELS_CODEC: Codec[dict[str, str]] = codec_for(dict[str, str])


def load_meta(tx: InstanceTx) -> RunMeta | None:
    """The run's metadata (``None`` when the run does not exist)."""
    data = tx.get(META_KEY)
    return None if data is None else META_CODEC.decode(data)


def meta_of(records: Any) -> RunMeta | None:
    """The metadata in a snapshot's records mapping."""
    data = records.get(META_KEY)
    return None if data is None else META_CODEC.decode(data)


def save_meta(tx: InstanceTx, meta: RunMeta) -> None:
    """Write the run's metadata."""
    tx.put(META_KEY, META_CODEC.encode(meta))


def step_key(index: int) -> str:
    """The record key of step ``index``."""
    return f"{STEP_PREFIX}{index:06d}"


def log_key(seq: int) -> str:
    """The record key of log line ``seq``."""
    return f"{LOG_PREFIX}{seq:08d}"


def load_steps(records: Any) -> list[StepRec]:
    """Every step record, in index order."""
    return [STEP_CODEC.decode(records[k]) for k in sorted(records) if k.startswith(STEP_PREFIX)]


# -- ids ----------------------------------------------------------------------------------------


class _RunIds:
    """Makes run ids; remembers the last millisecond to keep same-millisecond ids in order."""

    def __init__(self) -> None:
        self.last_ms = -1
        self.in_ms = 0

    def new(self, now: datetime) -> str:
        ms = int(now.timestamp() * 1000)
        if ms == self.last_ms:
            self.in_ms += 1
        else:
            self.last_ms, self.in_ms = ms, 0
        return f"{ms:013d}-{self.in_ms:06x}{uuid.uuid4().hex[:10]}"


_RUN_IDS = _RunIds()


def new_run_id(now: datetime) -> str:
    """A fresh run id, ordered by creation time: ``{epoch_ms:013d}-{seq:06x}{random}``.

    Ids made in this process in the same millisecond keep their creation order.
    """
    return _RUN_IDS.new(now)


def _sub_id(job_type: str, name: str, key: str) -> InstanceRef:
    """An instance ref whose id is ``key``, hashed when the whole id would be too long."""
    ref = InstanceRef(job_type=job_type, job_name=name, id=key)
    if len(ref.instance_id) <= MAX_ID_LENGTH:
        return ref
    digest = hashlib.sha256(key.encode("utf-8")).hexdigest()
    return InstanceRef(job_type=job_type, job_name=name, id=f"#sha256:{digest}")


def run_ref(name: str, run_id: str) -> InstanceRef:
    """The run instance ``workflow:{name}:{run_id}``."""
    return InstanceRef(job_type=JOB_TYPE, job_name=name, id=run_id)


def idem_ref(name: str, key: str) -> InstanceRef:
    """The instance remembering which run idempotency key ``key`` gave."""
    return _sub_id(IDEM_TYPE, name, key)


def key_ref(name: str, key: str) -> InstanceRef:
    """The instance of concurrency key ``key``."""
    return _sub_id(KEY_TYPE, name, key)


def cancel_ref(name: str, run_id: str) -> InstanceRef:
    """The instance holding a cancel request for run ``run_id``."""
    return _sub_id(CANCEL_TYPE, name, run_id)


def run_id_fits(name: str, run_id: str) -> bool:
    """Whether ``run_id`` can name a run of workflow ``name`` at all (id length)."""
    return len(run_ref(name, run_id).instance_id) <= MAX_ID_LENGTH


# -- values without a schema --------------------------------------------------------------------

_JSON_NATIVE = (str, int, float, bool, list, dict, types.NoneType)


def type_path(tp: type) -> str:
    """``module:qualname`` of a type."""
    return f"{tp.__module__}:{tp.__qualname__}"


def resolve_type(path: str) -> type:
    """The type named by ``type_path`` (``TypeError`` if it cannot be imported)."""
    module_name, _, qualname = path.partition(":")
    try:
        found: object = importlib.import_module(module_name)
        for part in qualname.split("."):
            found = getattr(found, part)
    except (ImportError, AttributeError) as exc:
        raise TypeError(f"cannot import the type {path!r}: {exc}") from None
    if not isinstance(found, type):
        raise TypeError(f"{path!r} is not a type")
    return found


def encode_value(value: object, schema: object = None) -> tuple[bytes, str | None]:
    """JSON bytes of ``value``, and the import path of the type to decode it with.

    With ``schema``, the value is validated against it (``ValidationError``). Without one,
    JSON-native values (``str``, ``int``, ``float``, ``bool``, ``None``, ``list``, ``dict``)
    are stored as they are; any other type msgspec supports (Structs, attrs classes,
    dataclasses, ``datetime``, ``tuple``, ``set``…) must be importable by its module path
    (``TypeError`` otherwise: define it at module level, or pass ``schema=``).
    """
    if schema is not None:
        data = codec_for(schema).encode(value)
        return data, type_path(schema) if isinstance(schema, type) and _importable(schema) else None
    tp = type(value)
    if tp in _JSON_NATIVE:
        return encode_json(value), None
    path = type_path(tp)
    try:
        same = resolve_type(path) is tp
    except TypeError:
        same = False
    if not same:
        raise TypeError(
            f"a value of type {tp.__qualname__} cannot be stored without a schema: its type is "
            "not importable by module path (define it at module level, or pass schema=)"
        )
    return codec_for(tp).encode(value), path


def decode_value(data: bytes, path: str | None, schema: object = None) -> object:
    """The value of ``encode_value``'s bytes: decoded with ``schema``, else the recorded type."""
    if schema is not None:
        result: object = codec_for(schema).decode(data)
        return result
    if path is None:
        return decode_json(data)
    decoded: object = codec_for(resolve_type(path)).decode(data)
    return decoded


def decode_loose(data: bytes, path: str | None) -> object:
    """Like ``decode_value``, falling back to plain JSON if the recorded type is gone."""
    try:
        return decode_value(data, path)
    except (TypeError, ValidationError):
        return decode_json(data)


def _importable(schema: type) -> bool:
    try:
        return resolve_type(type_path(schema)) is schema
    except TypeError:
        return False


def error_text(error: BaseException) -> str:
    """``"<Tag>: <message>"`` (tagged errors) or ``"<ExceptionType>: <message>"``."""
    if isinstance(error, TaggedError):
        return str(error)
    return f"{type(error).__name__}: {error}"
