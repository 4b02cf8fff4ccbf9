"""What a workflow run stores: its instance, its records, and the small instances beside it.

A run is the instance ``workflow:{name}:{run_id}``. Its records:

* ``meta`` — :class:`RunMeta` (status, labels, keys, attempt, timestamps, progress…);
* ``input`` — the input, encoded with the workflow's input schema;
* ``output`` — the output (once completed), encoded with the output schema, or as the
  plain JSON of the value with its type recorded in ``meta.output_type`` (``_values``);
* ``step:{index:06d}`` — one :class:`StepRec` per step, in the order steps were reached;
* ``log:{seq:08d}`` — one :class:`LogRec` per ``step.log`` line;
* ``end`` — written by the commit that ends the run (``put_end``; ``resume`` drops it): a
  parent suspending to wait for it as a child (``_children``) and a ``send`` racing its end
  (``_inbox``) are refused by a commit guard on it.

Beside it live four small instances (none has an alarm; the registry ignores them):
``wfidem:{name}:{key}`` (the run an idempotency key gave: ``IDEM_MARK``, and the parents
that took that run as their child and wait for it: ``waiter:…``, :class:`Waiter`),
``wfkey:{name}:{key}`` (a concurrency key: its pending run and the runs holding a slot,
``KEY_STATE``) and ``wfcancel:{name}:{run_id}`` (the cancel request of a run a worker is
executing, ``CANCEL_FLAG``) and ``wfinbox:{name}:{run_id}`` (the events sent to the run,
``_inbox``). The last two are apart from the run so that a client writes them without
waiting for the worker executing the run.
"""

from __future__ import annotations

import hashlib
import uuid
from collections.abc import Mapping
from datetime import datetime, timedelta
from typing import Literal

import attrs

from durable_effect._codec import Codec, codec_for
from durable_effect.errors import ValidationError
from durable_effect.jobs._instance import MAX_ID_LENGTH, InstanceRef, InstanceTx
from durable_effect.jobs._records import Readable, Record
from durable_effect.workflow._failures import ErrorRec
from durable_effect.workflow._results import EventWait, Progress, RunStatus

__all__ = [
    "CANCEL_FLAG",
    "CANCEL_KEY",
    "END_KEY",
    "INPUT_KEY",
    "KEY_STATE",
    "LABELS_CODEC",
    "MAX_LABELS",
    "MAX_LABEL_KEY",
    "MAX_LABEL_VALUE",
    "LOG_CODEC",
    "META",
    "OUTPUT_KEY",
    "STEP_CODEC",
    "CancelFlag",
    "KeyState",
    "LogRec",
    "PatchMark",
    "RunMeta",
    "StepRec",
    "Waiter",
    "add_waiter",
    "cancel_flag_record",
    "check_labels",
    "cancel_ref",
    "drop_mark",
    "idem_ref",
    "inbox_ref",
    "key_ref",
    "load_steps",
    "log_key",
    "new_run_id",
    "put_end",
    "run_id_fits",
    "run_ref",
    "step_key",
    "waiters_of",
]

INPUT_KEY = "input"
OUTPUT_KEY = "output"
STEP_PREFIX = "step:"
LOG_PREFIX = "log:"
CANCEL_KEY = "cancel"
END_KEY = "end"
IDEM_KEY = "run"

JOB_TYPE = "workflow"
IDEM_TYPE = "wfidem"
KEY_TYPE = "wfkey"
CANCEL_TYPE = "wfcancel"
INBOX_TYPE = "wfinbox"


@attrs.frozen(kw_only=True)
class PatchMark:
    """A recorded ``step.patched(name)``: its answer, and how many steps the run had
    reached when it was asked (its position)."""

    name: str
    value: bool
    position: int


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
    #: The run's deadline (``run_timeout`` after its trigger) and that timeout.
    run_timeout: timedelta | None = None
    deadline: datetime | None = None
    #: The error of a failed run, by tag and fields (``_failures``); ``error`` is its text.
    failure: ErrorRec | None = None
    #: The run that started this one as a child (``step.run_workflow``/``start_workflow``),
    #: and that run's workflow.
    parent_run_id: str | None = None
    parent_workflow: str | None = None
    #: A cancelled run whose unfinished children are still to be cancelled (its next alarm,
    #: at once, does it: ``_children``).
    cancel_children: bool = False
    #: A finished child run whose parent is still to be woken: its end commit sets its
    #: alarm now, and that alarm wakes the parent again — should the wake right after the
    #: end be lost (the worker died between the two: ``_children``).
    wake_parent: bool = False
    #: The run this one was forked from (``fork``).
    forked_from: str | None = None
    #: The ``step.patched`` markers the run recorded (``_versions``).
    patches: list[PatchMark] = attrs.field(factory=list)
    #: What a ``sleeping`` run waits for, when it is an event (a ``send`` wakes it).
    waiting: EventWait | None = None
    #: The events sent to the run before this sequence number were still queued when it
    #: ended: never delivered, even once it is resumed (``_rerun``).
    events_from: int = 0


@attrs.frozen(kw_only=True)
class StepRec:
    """A ``step:{index}`` record. ``status`` ``retrying``: failed, its retry alarm is set;
    ``sleeping``: a ``step.sleep`` (or an event wait) not yet over. A completed event wait
    records the event it consumed (``event_seq``; ``None``: it timed out) — from this run's
    inbox, or (``event_from``, a wait a fork copied) from the inbox of that other run."""

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
    #: The child run a ``step.run_workflow``/``start_workflow`` step started.
    child_workflow: str | None = None
    child_run_id: str | None = None
    event_seq: int | None = None
    event_from: str | None = None


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


#: The run's ``meta`` record.
META: Record[RunMeta] = Record("meta", codec_for(RunMeta))
#: The state of a concurrency key (in ``wfkey:…``).
KEY_STATE: Record[KeyState] = Record("state", codec_for(KeyState))
#: A cancel request (in ``wfcancel:…``); checked by the run's commits, never read.
CANCEL_FLAG: Record[CancelFlag] = Record(CANCEL_KEY, codec_for(CancelFlag))
STEP_CODEC: Codec[StepRec] = codec_for(StepRec)
LOG_CODEC: Codec[LogRec] = codec_for(LogRec)
LABELS_CODEC: Codec[dict[str, str]] = codec_for(dict[str, str])

#: SPEC 10.1's bounds on a run's labels.
MAX_LABELS = 64
MAX_LABEL_KEY = 128
MAX_LABEL_VALUE = 1024


def check_labels(labels: object, field: str = "labels") -> dict[str, str]:
    """``labels`` checked against SPEC 10.1: a mapping of at most 64 labels, keys of 1 to 128
    characters, values of at most 1,024, neither with NUL; ``ValidationError`` naming it.

    >>> check_labels({"team": "ops"})
    {'team': 'ops'}
    >>> check_labels({"": "x"})
    Traceback (most recent call last):
        ...
    durable_effect.errors.ValidationError: ValidationError: labels: a key must be 1 to 128 \
characters, got ''
    """
    if not isinstance(labels, Mapping):
        raise _bad_labels(field, f"must be a mapping of str to str, got {type(labels).__name__}")
    if len(labels) > MAX_LABELS:
        raise _bad_labels(field, f"at most {MAX_LABELS} labels per run, got {len(labels)}")
    checked: dict[str, str] = {}
    for key, value in labels.items():
        if not isinstance(key, str):
            raise _bad_labels(field, f"a key must be a str, got {type(key).__name__}")
        if not 1 <= len(key) <= MAX_LABEL_KEY:
            shown = key if len(key) <= 40 else key[:40] + "…"
            raise _bad_labels(
                field, f"a key must be 1 to {MAX_LABEL_KEY} characters, got {shown!r}"
            )
        if "\x00" in key:
            raise _bad_labels(field, f"a key must not contain NUL, got {key!r}")
        where = f"{field}[{key!r}]"
        if not isinstance(value, str):
            raise _bad_labels(where, f"must be a str, got {type(value).__name__}")
        if len(value) > MAX_LABEL_VALUE:
            raise _bad_labels(
                where, f"must be at most {MAX_LABEL_VALUE} characters, got {len(value)}"
            )
        if "\x00" in value:
            raise _bad_labels(where, "must not contain NUL")
        checked[key] = value
    return checked


def _bad_labels(path: str, message: str) -> ValidationError:
    return ValidationError(schema="labels", message=message, path=path)


def cancel_flag_record(now: datetime) -> bytes:
    """The record a cancel request writes into ``wfcancel:…`` (``CANCEL_FLAG``)."""
    return CANCEL_FLAG.codec.encode(CancelFlag(requested_at=now))


def step_key(index: int) -> str:
    """The record key of step ``index``."""
    return f"{STEP_PREFIX}{index:06d}"


def log_key(seq: int) -> str:
    """The record key of log line ``seq``."""
    return f"{LOG_PREFIX}{seq:08d}"


def load_steps(records: Mapping[str, bytes]) -> list[StepRec]:
    """Every step record, in index order."""
    return [STEP_CODEC.decode(records[k]) for k in sorted(records) if k.startswith(STEP_PREFIX)]


def mark_of(source: Readable) -> str | None:
    """The run an idempotency mark (``wfidem:…``) names, if any."""
    data = source.get(IDEM_KEY)
    return None if data is None else data.decode("utf-8")


def set_mark(itx: InstanceTx, run_id: str) -> None:
    """Make the idempotency mark ``itx`` name ``run_id``."""
    itx.put(IDEM_KEY, run_id.encode("utf-8"))


@attrs.frozen(kw_only=True)
class Waiter:
    """A ``waiter:…`` record of an idempotency mark: a run waiting for the mark's run as a
    child it did not start (``step.run_workflow(..., idempotency_key=...)``)."""

    workflow: str
    run_id: str


WAITER_PREFIX = "waiter:"
WAITER_CODEC: Codec[Waiter] = codec_for(Waiter)


def add_waiter(itx: InstanceTx, workflow: str, run_id: str) -> None:
    """Record in the mark ``itx`` that run ``run_id`` of ``workflow`` waits for its run."""
    digest = hashlib.sha256(f"{workflow}\x00{run_id}".encode()).hexdigest()[:32]
    itx.put(
        f"{WAITER_PREFIX}{digest}", WAITER_CODEC.encode(Waiter(workflow=workflow, run_id=run_id))
    )


def waiters_of(source: Mapping[str, bytes]) -> list[Waiter]:
    """The waiters an idempotency mark records (``ValidationError`` if one is unreadable)."""
    return [WAITER_CODEC.decode(source[k]) for k in sorted(source) if k.startswith(WAITER_PREFIX)]


def put_end(tx: InstanceTx) -> None:
    """Write the ``end`` record of a run, in the commit that ends it."""
    tx.put(END_KEY, b"1")


def drop_mark(itx: InstanceTx, run_id: str) -> None:
    """Forget an idempotency mark if it still names ``run_id``."""
    if mark_of(itx) == run_id:
        itx.purge()


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


def inbox_ref(name: str, run_id: str) -> InstanceRef:
    """The instance holding the events sent to run ``run_id``."""
    return _sub_id(INBOX_TYPE, name, run_id)


def cancel_ref(name: str, run_id: str) -> InstanceRef:
    """The instance holding a cancel request for run ``run_id``."""
    return _sub_id(CANCEL_TYPE, name, run_id)


def run_id_fits(name: str, run_id: str) -> bool:
    """Whether ``run_id`` can name a run of workflow ``name`` at all (id length)."""
    return len(run_ref(name, run_id).instance_id) <= MAX_ID_LENGTH
