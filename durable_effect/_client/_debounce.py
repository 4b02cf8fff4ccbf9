"""`DebounceHandle`: the client operations of a Debounce job, as lazy Effects."""

from __future__ import annotations

from typing import Generic, TypeVar

from durable_effect._client._base import JobHandle
from durable_effect._effect import Effect
from durable_effect.errors import (
    DuplicateEventError,
    ExecutionError,
    JobNotFoundError,
    StorageError,
    ValidationError,
)
from durable_effect.jobs._debounce import (
    DebounceAddResult,
    DebounceClearResult,
    DebounceDefinition,
    DebounceFlushResult,
    DebounceStateResult,
    DebounceStatusResult,
)

__all__ = ["DebounceHandle"]

S = TypeVar("S")
I = TypeVar("I")  # noqa: E741


class DebounceHandle(JobHandle[DebounceDefinition[S, I]], Generic[S, I]):
    """Operations on the instances of one Debounce job; typed by its state ``S`` and event ``I``.

    Every method returns a lazy ``Effect``: nothing is read or written until it runs.
    """

    job_type = "debounce"

    def add(
        self, *, id: str, event: I, event_id: str | None = None
    ) -> Effect[
        DebounceAddResult,
        ValidationError | DuplicateEventError | ExecutionError | JobNotFoundError | StorageError,
    ]:
        """Add ``event`` to the batch of instance ``id`` (opening one if none is pending).

        Fails with ``ValidationError`` (invalid event, state or id: nothing written),
        ``DuplicateEventError`` (``event_id`` already applied within the dedupe window),
        ``ExecutionError`` (``on_event`` failed: nothing written).
        """
        return self._call(id, lambda d, tx: d.add(tx, event, event_id))

    def flush(
        self, id: str
    ) -> Effect[
        DebounceFlushResult, ValidationError | ExecutionError | JobNotFoundError | StorageError
    ]:
        """Run ``execute`` on the pending batch now.

        Without a ``retry`` policy a failing ``execute`` fails the call with
        ``ExecutionError`` and the batch is kept as it was; with one, the call succeeds
        with ``retry_scheduled=True`` (or drops the batch when the attempts ran out).
        """
        return self._call(id, lambda d, tx: d.flush(tx))

    def clear(
        self, id: str
    ) -> Effect[DebounceClearResult, ValidationError | JobNotFoundError | StorageError]:
        """Discard the pending batch without running ``execute``."""
        return self._call(id, lambda d, tx: d.clear(tx))

    def status(
        self, id: str
    ) -> Effect[DebounceStatusResult, ValidationError | JobNotFoundError | StorageError]:
        """Whether a batch is pending (``debouncing``/``not_found``), its size and timing."""
        return self._read(id, lambda d, tx: d.status(tx))

    def get_state(
        self, id: str
    ) -> Effect[DebounceStateResult[S], ValidationError | JobNotFoundError | StorageError]:
        """The pending batch's reduced state (``state=None`` when none is pending)."""
        return self._read(id, lambda d, tx: d.get_state(tx))
