"""What the client operations of a Task job return: frozen, keyword-only values.

Times are aware UTC datetimes.
"""

from __future__ import annotations

from datetime import datetime
from typing import Generic, Literal, TypeVar

import attrs

__all__ = [
    "TaskGetStateResult",
    "TaskSendResult",
    "TaskStatusResult",
    "TaskTerminateResult",
    "TaskTriggerResult",
]

S = TypeVar("S")


@attrs.frozen(kw_only=True)
class TaskSendResult:
    """What ``send`` did: whether it created the instance, and what is scheduled now."""

    created: bool
    instance_id: str
    scheduled_at: datetime | None


@attrs.frozen(kw_only=True)
class TaskTriggerResult:
    """Whether ``trigger`` ran ``execute`` (``False``: the instance does not exist)."""

    triggered: bool


@attrs.frozen(kw_only=True)
class TaskStatusResult:
    """``active`` (an execution is scheduled), ``idle`` or ``not_found``, with the counters.

    For ``not_found`` the counters are 0 and the times ``None``.
    """

    status: Literal["active", "idle", "not_found"]
    scheduled_at: datetime | None
    event_count: int
    execute_count: int
    created_at: datetime | None


@attrs.frozen(kw_only=True)
class TaskGetStateResult(Generic[S]):
    """The state (``None`` if unset or not found), the schedule, the creation time."""

    state: S | None
    scheduled_at: datetime | None
    created_at: datetime | None


@attrs.frozen(kw_only=True)
class TaskTerminateResult:
    """Whether ``terminate`` deleted an instance (``False``: there was none)."""

    terminated: bool
