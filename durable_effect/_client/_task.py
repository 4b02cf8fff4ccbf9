"""`TaskHandle[S, I]`: the client of a Task job. Every method returns a lazy ``Effect``.

Nothing is read or sent until the effect runs. ``send``/``trigger``/``terminate`` run as one
handler of the instance (leased; committed if and only if the effect succeeds);
``status``/``get_state`` read the committed snapshot.
"""

from __future__ import annotations

from typing import TypeVar

from durable_effect._client._base import JobHandle
from durable_effect._effect import Effect
from durable_effect.errors import (
    DuplicateEventError,
    ExecutionError,
    JobNotFoundError,
    StorageError,
    ValidationError,
)
from durable_effect.jobs._task import (
    TaskDefinition,
    TaskGetStateResult,
    TaskSendResult,
    TaskStatusResult,
    TaskTerminateResult,
    TaskTriggerResult,
)

__all__ = ["TaskHandle"]

S = TypeVar("S")
I = TypeVar("I")  # noqa: E741

_Lookup = JobNotFoundError | ValidationError | StorageError


class TaskHandle(JobHandle[TaskDefinition[S, I]]):
    """The client of one Task job (``client.task(definition_or_name)``)."""

    job_type = "task"

    def send(
        self, *, id: str, event: I, event_id: str | None = None
    ) -> Effect[TaskSendResult, DuplicateEventError | ExecutionError | _Lookup]:
        """Deliver ``event`` to instance ``id`` (creating it): ``on_event``, then ``on_idle``.

        Fails with ``ValidationError`` (nothing written) if the event does not fit the
        schema, ``DuplicateEventError`` if ``event_id`` was already applied to the instance,
        ``ExecutionError`` if a handler failed and ``on_error`` did not handle it.
        """
        return self._call(id, lambda d, tx: d.send(tx, event, event_id))

    def trigger(self, id: str) -> Effect[TaskTriggerResult, ExecutionError | _Lookup]:
        """Run ``execute`` now (``triggered=False`` if the instance does not exist)."""
        return self._call(id, lambda d, tx: d.trigger(tx))

    def status(self, id: str) -> Effect[TaskStatusResult, _Lookup]:
        """``active`` (execution scheduled), ``idle`` or ``not_found``, with the counters."""
        return self._read(id, lambda d, tx: d.status(tx))

    def get_state(self, id: str) -> Effect[TaskGetStateResult[S], _Lookup]:
        """The state (``None`` if unset), the scheduled time and the creation time."""
        return self._read(id, lambda d, tx: d.get_state(tx))

    def terminate(self, id: str) -> Effect[TaskTerminateResult, _Lookup]:
        """Cancel the schedule and delete the instance; the id can start afresh."""
        return self._call(id, lambda d, tx: d.terminate(tx))
