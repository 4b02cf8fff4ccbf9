"""`ContinuousHandle`: the client operations of a Continuous job, as lazy Effects."""

from __future__ import annotations

from typing import Generic, TypeVar

from durable_effect._client._base import JobHandle
from durable_effect._effect import Effect
from durable_effect.errors import ExecutionError, JobNotFoundError, StorageError, ValidationError
from durable_effect.jobs._continuous import (
    ContinuousDefinition,
    ContinuousGetStateResult,
    ContinuousPauseResult,
    ContinuousResumeResult,
    ContinuousStartResult,
    ContinuousStatusResult,
    ContinuousTerminateResult,
    ContinuousTriggerResult,
)

__all__ = ["ContinuousHandle"]

S = TypeVar("S")


class ContinuousHandle(JobHandle[ContinuousDefinition[S]], Generic[S]):
    """Operations on the instances of one Continuous job; typed by its state ``S``.

    Every method returns a lazy ``Effect``: nothing is read or written until it runs. Every
    one can fail with ``JobNotFoundError`` (no Continuous job of that name), ``ValidationError``
    (a bad id, input or stored state: nothing written) and ``StorageError``.
    """

    job_type = "continuous"

    def start(
        self, *, id: str, input: S
    ) -> Effect[
        ContinuousStartResult, ValidationError | ExecutionError | JobNotFoundError | StorageError
    ]:
        """Create instance ``id`` with state ``input`` and schedule it (run it now by default).

        An existing instance is left alone (``created=False``, ``input`` ignored). If the
        immediate first run fails: with ``retry`` the instance is created with the retry
        scheduled; without, the call fails with ``ExecutionError`` and nothing is written.
        """
        return self._call(id, lambda d, tx: d.start(tx, input))

    def trigger(
        self, id: str
    ) -> Effect[
        ContinuousTriggerResult, ValidationError | ExecutionError | JobNotFoundError | StorageError
    ]:
        """Run ``execute`` now (a new run); the schedule is kept, a pending retry abandoned.

        A failing run fails the call with ``ExecutionError``; nothing is written.
        """
        return self._call(id, lambda d, tx: d.trigger(tx))

    def status(
        self, id: str
    ) -> Effect[ContinuousStatusResult, ValidationError | JobNotFoundError | StorageError]:
        """``running``/``paused``/``not_found``, run count, next and last run, last error."""
        return self._read(id, lambda d, tx: d.status(tx))

    def get_state(
        self, id: str
    ) -> Effect[ContinuousGetStateResult[S], ValidationError | JobNotFoundError | StorageError]:
        """The instance's state (``state=None`` when it does not exist)."""
        return self._read(id, lambda d, tx: d.get_state(tx))

    def pause(
        self, id: str
    ) -> Effect[ContinuousPauseResult, ValidationError | JobNotFoundError | StorageError]:
        """Stop the schedule (no alarm fires) without losing the state."""
        return self._call(id, lambda d, tx: d.pause(tx))

    def resume(
        self, id: str
    ) -> Effect[ContinuousResumeResult, ValidationError | JobNotFoundError | StorageError]:
        """Restart the schedule at its next future tick; paused time is not caught up."""
        return self._call(id, lambda d, tx: d.resume(tx))

    def terminate(
        self, id: str, reason: str | None = None
    ) -> Effect[ContinuousTerminateResult, ValidationError | JobNotFoundError | StorageError]:
        """Cancel the alarm and delete everything (``reason="not_found"`` when absent)."""
        return self._call(id, lambda d, tx: d.terminate(tx, reason))
