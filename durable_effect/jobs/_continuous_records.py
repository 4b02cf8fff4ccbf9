"""What a Continuous instance stores: the user's state and its ``meta`` record.

* ``state`` — the user's state, encoded with the job's state schema (``state_record``);
* ``meta`` — :class:`Meta`: status, run count, the next regular tick (kept while paused: it
  anchors an ``every`` grid), the last run and error, and a pending retry.

The instance's single alarm is the pending retry if any, else the next tick; none while
paused (``Meta.alarm``).
"""

from __future__ import annotations

from datetime import datetime
from typing import Literal, TypeVar

import attrs

from durable_effect._codec import Codec, codec_for
from durable_effect.jobs._records import Record

__all__ = ["META", "STATE_KEY", "Meta", "PendingRetry", "Run", "state_record"]

S = TypeVar("S")

#: The record holding the user's state (encoded with the user's schema).
STATE_KEY = "state"


@attrs.frozen(kw_only=True)
class PendingRetry:
    """A retry waiting for its alarm."""

    attempt: int  # the attempt the retry alarm runs
    at: datetime  # when it fires
    scheduled_at: datetime  # the tick of the run being retried
    first_started_at: datetime  # when attempt 1 started (Retry.max_duration)


@attrs.frozen(kw_only=True)
class Meta:
    """The ``meta`` record of an instance."""

    status: Literal["running", "paused"]
    run_count: int
    next_run_at: datetime  # the next regular tick; kept while paused (it anchors the grid)
    created_at: datetime
    last_run_at: datetime | None = None
    last_error: str | None = None
    retry: PendingRetry | None = None

    @property
    def alarm(self) -> datetime | None:
        """Where the instance's alarm belongs: the pending retry, else the next tick."""
        if self.status == "paused":
            return None
        return self.retry.at if self.retry is not None else self.next_run_at


#: The ``meta`` record.
META: Record[Meta] = Record("meta", codec_for(Meta))


def state_record(codec: Codec[S]) -> Record[S]:
    """The ``state`` record of a job whose state schema has ``codec``."""
    return Record(STATE_KEY, codec)


@attrs.frozen(kw_only=True)
class Run:
    """The facts of one attempt of one run, as the context shows them."""

    run_count: int
    attempt: int
    scheduled_at: datetime
    started_at: datetime
    first_started_at: datetime
