"""What a Continuous instance stores besides the user's state, and small shared helpers.

``Meta`` is the ``meta`` record: status, run count, the next regular tick (kept while paused:
it anchors an ``every`` grid), the last run and error, and a pending retry. Its alarm is the
pending retry if any, else the next tick; none while paused. Encoded with a validating codec.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Literal, TypedDict, TypeVar

import attrs

from durable_effect._codec import Codec, codec_for
from durable_effect._effect import Effect
from durable_effect._events import JobFailed, JobTerminated, new_event_id
from durable_effect.errors import ValidationError
from durable_effect.jobs._exec import error_info
from durable_effect.jobs._instance import InstanceTx

__all__ = [
    "META_KEY",
    "Attempt",
    "EventIds",
    "Meta",
    "PendingRetry",
    "Run",
    "cause_of",
    "event_ids",
    "failed_event",
    "guarded",
    "load_meta",
    "save_meta",
    "terminated_event",
]

S = TypeVar("S")

#: The record holding the instance's metadata.
META_KEY = "meta"


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


META_CODEC: Codec[Meta] = codec_for(Meta)


@attrs.frozen(kw_only=True)
class Run:
    """The facts of one attempt of one run, as the context shows them."""

    run_count: int
    attempt: int
    scheduled_at: datetime
    started_at: datetime
    first_started_at: datetime


@attrs.frozen(kw_only=True)
class Attempt:
    """How one attempt of ``execute`` ended."""

    kind: Literal["ok", "failed", "terminated"]
    duration_ms: int
    pre_state: object
    error: BaseException | None = None
    reason: str | None = None


def guarded(build: Callable[[], Effect[S, ValidationError]]) -> Effect[S, ValidationError]:
    """Run ``build`` lazily; a ``ValidationError`` it raises fails the effect."""

    def run() -> Effect[S, ValidationError]:
        try:
            return build()
        except ValidationError as exc:
            return Effect.fail(exc)

    return Effect.suspend(run)


def load_meta(tx: InstanceTx) -> Meta | None:
    """The instance's metadata (``None``: no instance); ``ValidationError`` if unreadable."""
    data = tx.get(META_KEY)
    return None if data is None else META_CODEC.decode(data)


def save_meta(tx: InstanceTx, meta: Meta) -> None:
    """Write ``meta`` and move the alarm where it belongs."""
    tx.put(META_KEY, META_CODEC.encode(meta))
    tx.set_alarm(meta.alarm)


def cause_of(attempt: Attempt) -> BaseException:
    """The error of a failed attempt."""
    assert attempt.error is not None
    return attempt.error


class EventIds(TypedDict):
    """The fields every event of an instance shares."""

    event_id: str
    timestamp: datetime
    instance_id: str
    id: str
    job_type: str
    job_name: str


def event_ids(tx: InstanceTx) -> EventIds:
    """The fields every event of this instance shares (timestamp: the runtime clock)."""
    ref = tx.ref
    return EventIds(
        event_id=new_event_id(),
        timestamp=tx.now(),
        instance_id=ref.instance_id,
        id=ref.id,
        job_type=ref.job_type,
        job_name=ref.job_name,
    )


def failed_event(tx: InstanceTx, run: Run, attempt: Attempt, *, will_retry: bool) -> JobFailed:
    """``job.failed`` for a failed attempt."""
    return JobFailed(
        **event_ids(tx),
        run_count=run.run_count,
        attempt=run.attempt,
        error=error_info(cause_of(attempt)),
        will_retry=will_retry,
        pre_execution_state=attempt.pre_state,
    )


def terminated_event(tx: InstanceTx, reason: str | None, run_count: int | None) -> JobTerminated:
    """``job.terminated``."""
    return JobTerminated(**event_ids(tx), reason=reason, run_count=run_count)
