"""What a Task instance stores: the user's state, its ``meta`` record, its dedupe marks.

* ``state`` — the user's state, encoded with the job's state schema (validated on every
  read and write); absent until a handler sets it;
* ``meta`` — :class:`TaskMeta`: counters, creation time, a pending alarm retry;
* ``dedupe`` — the ``event_id`` marks (``_dedupe``).

The instance's single alarm is its schedule (``ctx.schedule``), or a pending alarm retry.
"""

from __future__ import annotations

from datetime import datetime
from typing import TypeVar

import attrs

from durable_effect._codec import Codec, codec_for
from durable_effect.jobs._records import Record

__all__ = ["META", "STATE_KEY", "TaskMeta", "state_record"]

S = TypeVar("S")

#: The record holding the user's state (encoded with the user's schema).
STATE_KEY = "state"


@attrs.frozen(kw_only=True)
class TaskMeta:
    """The metadata record of a Task instance."""

    created_at: datetime
    event_count: int = 0
    execute_count: int = 0
    #: How many attempts of the pending alarm's execute already failed (0: no retry pending).
    retry_attempt: int = 0
    #: When the first failed attempt of the pending retry started.
    retry_started_at: datetime | None = None


#: The ``meta`` record.
META: Record[TaskMeta] = Record("meta", codec_for(TaskMeta))


def state_record(codec: Codec[S]) -> Record[S]:
    """The ``state`` record of a job whose state schema has ``codec``."""
    return Record(STATE_KEY, codec)
