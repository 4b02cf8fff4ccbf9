"""The results of the Continuous client operations (frozen values; times are aware UTC)."""

from __future__ import annotations

from datetime import datetime
from typing import Generic, Literal, TypeVar

import attrs

__all__ = [
    "ContinuousGetStateResult",
    "ContinuousPauseResult",
    "ContinuousResumeResult",
    "ContinuousStartResult",
    "ContinuousStatusResult",
    "ContinuousTerminateResult",
    "ContinuousTriggerResult",
]

S = TypeVar("S")


@attrs.frozen(kw_only=True)
class ContinuousStartResult:
    """What ``start`` did: ``created`` (False: it existed, input ignored), the status now."""

    created: bool
    instance_id: str
    status: Literal["running", "paused", "terminated"]


@attrs.frozen(kw_only=True)
class ContinuousTriggerResult:
    """``triggered``: execute ran (False: no such instance); ``terminated``: it terminated."""

    triggered: bool
    terminated: bool


@attrs.frozen(kw_only=True)
class ContinuousStatusResult:
    """The status of an instance.

    ``next_run_at`` is when execute runs next (the pending retry if any, else the next tick;
    None while paused); ``last_error`` is the error of the latest run (None if it succeeded).
    """

    status: Literal["running", "paused", "not_found"]
    run_count: int = 0
    next_run_at: datetime | None = None
    last_run_at: datetime | None = None
    last_error: str | None = None


@attrs.frozen(kw_only=True)
class ContinuousGetStateResult(Generic[S]):
    """The state of an instance (None when it does not exist)."""

    state: S | None


@attrs.frozen(kw_only=True)
class ContinuousPauseResult:
    """``paused``: this call paused a running instance; ``status``: the status after it."""

    paused: bool
    status: Literal["paused", "not_found"]


@attrs.frozen(kw_only=True)
class ContinuousResumeResult:
    """``resumed``: this call resumed a paused instance; ``status``: the status after it."""

    resumed: bool
    status: Literal["running", "not_found"]


@attrs.frozen(kw_only=True)
class ContinuousTerminateResult:
    """``terminated`` False with ``reason="not_found"`` when there was no such instance."""

    terminated: bool
    reason: str | None
