"""Continuous jobs: run ``execute`` on a schedule (``every`` or ``cron``), with durable state.

``Continuous.make(...)`` gives a ``ContinuousDefinition[S]`` (``_continuous_definition``);
its methods are the client operations (``start``, ``trigger``, ``status``, ``get_state``,
``pause``, ``resume``, ``terminate``) and the alarm handler. An instance keeps two records,
``state`` and ``meta`` (``_continuous_records``); its single alarm is at the pending retry
if there is one, else at the next tick (none while paused).

Ticks are anchored (no drift): when the alarm of tick ``t`` fires, the next tick is the one
after ``t`` on the schedule, not "now + interval". A tick is *missed* when its alarm fires
after the following tick has already passed; ``misfire`` then decides: ``run_once`` runs
once (``scheduled_at`` = the latest missed tick), ``skip`` runs nothing, ``run_all`` runs
every missed tick oldest first (one alarm each). Either way the job then waits for the first
future tick.

A run that fails has its state writes discarded. With ``retry``, the next attempt is an alarm
after the backoff (``attempt`` grows, ``run_count`` does not); when attempts run out,
``job.retryExhausted`` is emitted and the instance purged. Without ``retry`` the failure is
recorded (``last_error``, ``job.failed``) and the next tick stays scheduled. A ``start`` or
``trigger`` whose run fails unhandled fails with ``ExecutionError`` and writes nothing —
except a ``start`` with ``retry``, which creates the instance with the retry scheduled.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import TypeVar

from durable_effect._backoff import Retry
from durable_effect._duration import DurationInput
from durable_effect._effect import Effect
from durable_effect.jobs._checks import Checks
from durable_effect.jobs._continuous_context import ContinuousContext
from durable_effect.jobs._continuous_definition import ContinuousDefinition, Misfire
from durable_effect.jobs._continuous_results import (
    ContinuousGetStateResult,
    ContinuousPauseResult,
    ContinuousResumeResult,
    ContinuousStartResult,
    ContinuousStatusResult,
    ContinuousTerminateResult,
    ContinuousTriggerResult,
)
from durable_effect.jobs._continuous_schedule import Cron, Every, Schedule

__all__ = [
    "Continuous",
    "ContinuousContext",
    "ContinuousDefinition",
    "ContinuousGetStateResult",
    "ContinuousPauseResult",
    "ContinuousResumeResult",
    "ContinuousStartResult",
    "ContinuousStatusResult",
    "ContinuousTerminateResult",
    "ContinuousTriggerResult",
    "Cron",
    "Every",
    "Misfire",
    "Schedule",
]

S = TypeVar("S")

_MISFIRES: tuple[Misfire, ...] = ("run_once", "skip", "run_all")


class Continuous:
    """Namespace of the Continuous job type: ``make``, ``every``, ``cron``."""

    __slots__ = ()

    @staticmethod
    def make(  # noqa: PLR0917 - SPEC's signature: state_schema, schedule, execute positional
        state_schema: type[S],
        schedule: Schedule,
        execute: Callable[[ContinuousContext[S]], Effect[None, BaseException]],
        start_immediately: bool = True,
        retry: Retry | None = None,
        logging: bool | int | None = None,
        misfire: Misfire = "run_once",
    ) -> ContinuousDefinition[S]:
        """Define a Continuous job; bad arguments raise ``TypeError``/``ValueError`` at once."""
        check = Checks("Continuous.make")
        check.schema("state_schema", state_schema)
        given: object = schedule
        if not isinstance(given, Every | Cron):
            raise TypeError(
                "Continuous.make: schedule must be Continuous.every(...) or "
                f"Continuous.cron(...), got {given!r}"
            )
        check.callable("execute", execute)
        check.boolean("start_immediately", start_immediately)
        check.retry(retry)
        check.logging(logging)
        check.one_of("misfire", misfire, _MISFIRES)
        return ContinuousDefinition(
            state_schema=state_schema,
            schedule=schedule,
            execute=execute,
            start_immediately=start_immediately,
            retry=retry,
            logging=logging,
            misfire=misfire,
        )

    @staticmethod
    def every(duration: DurationInput) -> Every:
        """Run every ``duration`` (anything ``Duration.parse`` takes; must be positive)."""
        return Every.parse(duration)

    @staticmethod
    def cron(expr: str, tz: str = "UTC") -> Cron:
        """Run at a cron expression's fire times in ``tz`` (5 fields, or 6 seconds-first)."""
        return Cron.parse(expr, tz)
