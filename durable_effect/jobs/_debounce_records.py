"""The records of a Debounce instance and the helpers that read and write them.

* ``batch`` — the open batch's metadata (:class:`BatchMeta`). Its presence *is* "a batch is
  open": an instance without it reads as ``not_found`` and its next ``add`` has
  ``created=True``, whatever else it holds.
* ``state`` — the reduced state, encoded with the job's state schema (validated on every read
  and write).
* ``dedupe`` — ``event_id`` → expiry. It outlives batches (ids are remembered for the dedupe
  window across flushes and clears); expired marks are pruned on every write, and an
  instance left with marks only keeps an alarm at the last expiry to delete itself.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import Any, TypeVar

import attrs

from durable_effect._codec import Codec, codec_for
from durable_effect._duration import Duration
from durable_effect._effect import Effect
from durable_effect._events import new_event_id
from durable_effect.errors import ValidationError
from durable_effect.jobs._instance import InstanceTx

__all__ = [
    "BATCH",
    "BATCH_CODEC",
    "DEDUPE",
    "STATE",
    "BatchMeta",
    "close_batch",
    "event_fields",
    "live_marks",
    "load_batch",
    "millis",
    "validated",
    "write_marks",
]

T = TypeVar("T")

BATCH = "batch"
STATE = "state"
DEDUPE = "dedupe"


@attrs.frozen(kw_only=True)
class BatchMeta:
    """The open batch's metadata (the ``batch`` record)."""

    count: int
    started_at: datetime
    last_event_at: datetime
    attempt: int = 1  # the number of the next flush try
    retry_at: datetime | None = None  # set after a failed try: when the next one runs
    retry_reason: str | None = None  # the flush reason of the failed tries
    first_try_at: datetime | None = None  # when the first try started (retry max_duration)


BATCH_CODEC: Codec[BatchMeta] = codec_for(BatchMeta)
_MARKS_CODEC: Codec[dict[str, datetime]] = codec_for(dict[str, datetime])


def validated(thunk: Callable[[], T]) -> Effect[T, ValidationError]:
    """Run ``thunk``; a ``ValidationError`` it raises is a typed failure, anything else a defect."""

    def catch(exc: Exception) -> ValidationError:
        if isinstance(exc, ValidationError):
            return exc
        raise exc

    return Effect.try_(thunk, catch=catch)


def millis(delta: timedelta) -> int:
    """A non-negative duration in whole milliseconds."""
    return max(0, Duration.millis(delta))


def load_batch(tx: InstanceTx) -> BatchMeta | None:
    """The open batch's metadata, or ``None`` when no batch is open."""
    raw = tx.get(BATCH)
    return None if raw is None else BATCH_CODEC.decode(raw)


def live_marks(tx: InstanceTx, now: datetime) -> tuple[dict[str, datetime], bool]:
    """The dedupe marks still alive at ``now``, and whether expired ones were pruned."""
    raw = tx.get(DEDUPE)
    if raw is None:
        return {}, False
    marks = _MARKS_CODEC.decode(raw)
    live = {k: v for k, v in marks.items() if v > now}
    return live, len(live) != len(marks)


def write_marks(tx: InstanceTx, marks: dict[str, datetime]) -> None:
    """Store ``marks`` (deleting the record when there are none)."""
    if marks:
        tx.put(DEDUPE, _MARKS_CODEC.encode(marks))
    else:
        tx.delete(DEDUPE)


def close_batch(tx: InstanceTx) -> None:
    """The batch is gone (flushed, cleared or dropped); only live dedupe marks remain.

    Without marks the instance is purged (records and alarm); with some, the alarm moves to
    the last expiry, when the instance deletes itself.
    """
    marks, pruned = live_marks(tx, tx.now())
    if not marks:
        tx.purge()
        return
    tx.delete(BATCH)
    tx.delete(STATE)
    if pruned:
        write_marks(tx, marks)
    tx.set_alarm(max(marks.values()))


def event_fields(tx: InstanceTx) -> dict[str, Any]:
    """The fields every telemetry event of this instance carries (runtime clock)."""
    return {
        "event_id": new_event_id(),
        "timestamp": tx.now(),
        "instance_id": tx.ref.instance_id,
        "id": tx.ref.id,
        "job_type": tx.ref.job_type,
        "job_name": tx.ref.job_name,
    }
