"""The records of a Debounce instance.

* ``batch`` — the open batch's metadata (:class:`BatchMeta`). Its presence *is* "a batch is
  open": an instance without it reads as ``not_found`` and its next ``add`` has
  ``created=True``, whatever else it holds.
* ``state`` — the reduced state, encoded with the job's state schema (validated on every read
  and write).
* ``dedupe`` — the ``event_id`` marks (``_dedupe``). They outlive batches (ids are remembered
  for the dedupe window across flushes and clears), and an instance left with marks only
  keeps an alarm at the last expiry to delete itself.
"""

from __future__ import annotations

from datetime import datetime

import attrs

from durable_effect._codec import codec_for
from durable_effect.jobs._dedupe import Dedupe
from durable_effect.jobs._instance import InstanceTx
from durable_effect.jobs._records import Record

__all__ = ["BATCH", "STATE_KEY", "BatchMeta", "close_batch", "keep_marks_only"]

STATE_KEY = "state"


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


#: The open batch (absent: no batch is open).
BATCH: Record[BatchMeta] = Record("batch", codec_for(BatchMeta))


def close_batch(tx: InstanceTx, dedupe: Dedupe) -> None:
    """The batch is gone (flushed, cleared or dropped); only live dedupe marks remain.

    Without marks the instance is purged (records and alarm); with some, the alarm moves to
    the last expiry, when the instance deletes itself (``keep_marks_only``).
    """
    BATCH.delete(tx)
    tx.delete(STATE_KEY)
    keep_marks_only(tx, dedupe)


def keep_marks_only(tx: InstanceTx, dedupe: Dedupe) -> None:
    """An instance without a batch: prune its marks, or delete it when none is left."""
    marks = dedupe.live(tx, tx.now())
    last = marks.last_expiry()
    if last is None:
        tx.purge()
        return
    marks.write(tx)
    tx.set_alarm(last)
