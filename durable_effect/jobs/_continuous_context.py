"""`ContinuousContext[S]`: what a Continuous job's ``execute`` sees.

Whatever reads storage is an ``Effect`` (``state``); identifiers and facts of the run are
plain attributes (``instance_id``, ``id``, ``job_name``, ``run_count``, ``attempt``,
``is_retry``, ``scheduled_at``). ``set_state``/``update_state`` validate the new state
against the job's schema when they run and fail with ``ValidationError`` otherwise.
``terminate`` stops the run at once; the job then purges the instance.
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime
from typing import Generic, Never, TypeVar

from durable_effect._effect import Effect
from durable_effect.errors import ValidationError
from durable_effect.jobs._exec import Termination, validated
from durable_effect.jobs._instance import InstanceTx
from durable_effect.jobs._records import Record

__all__ = ["ContinuousContext"]

S = TypeVar("S")


class ContinuousContext(Generic[S]):
    """The context of one run of a Continuous job's ``execute``.

    Annotate handlers with it: ``def execute(ctx: ContinuousContext[MyState]) -> Gen[...]``.
    """

    __slots__ = (
        "_state",
        "_termination",
        "_tx",
        "attempt",
        "id",
        "instance_id",
        "job_name",
        "run_count",
        "scheduled_at",
    )

    #: The storage id, ``continuous:<job name>:<id>``.
    instance_id: str
    #: The id the instance was started with.
    id: str
    #: The registered job name.
    job_name: str
    #: Which run this is (1-based; retries of a run keep its number).
    run_count: int
    #: Which attempt of this run (1 = the first try).
    attempt: int
    #: The tick this run is for (the instant of a ``start`` or ``trigger`` call for those).
    scheduled_at: datetime

    def __init__(
        self,
        tx: InstanceTx,
        state: Record[S],
        *,
        run_count: int,
        attempt: int,
        scheduled_at: datetime,
    ) -> None:
        self._tx = tx
        self._state = state
        self._termination = Termination()
        self.instance_id = tx.ref.instance_id
        self.id = tx.ref.id
        self.job_name = tx.ref.job_name
        self.run_count = run_count
        self.attempt = attempt
        self.scheduled_at = scheduled_at

    @property
    def is_retry(self) -> bool:
        """Whether this attempt is a retry (``attempt > 1``)."""
        return self.attempt > 1

    @property
    def state(self) -> Effect[S]:
        """The current state (including what this run has set so far), validated."""
        return Effect.sync(self._read)

    def set_state(self, state: S) -> Effect[None, ValidationError]:
        """Replace the state; fails with ``ValidationError`` if ``state`` does not fit."""
        return self._write(state)

    def update_state(self, fn: Callable[[S], S]) -> Effect[None, ValidationError]:
        """Replace the state with ``fn(current)``; validated like ``set_state``."""
        return Effect.suspend(lambda: self._write(fn(self._read())))

    def terminate(self, reason: str | None = None) -> Effect[Never]:
        """Stop the job: this run ends here, the alarm is cancelled and all state purged."""

        termination = self._termination
        return Effect.sync(lambda: termination.request(reason))

    # -- for the job ------------------------------------------------------------------------

    @property
    def termination(self) -> Termination:
        """Whether (and why) ``terminate`` ran during this run."""
        return self._termination

    @property
    def terminated(self) -> bool:
        """Whether ``terminate`` ran during this run."""
        return self._termination.requested

    @property
    def termination_reason(self) -> str | None:
        """The reason given to ``terminate`` (the first call's)."""
        return self._termination.reason

    def _read(self) -> S:
        state = self._state.load(self._tx)
        if state is None:  # pragma: no cover - an instance always has its state record
            raise ValidationError(
                schema=self._state.codec.name, message="the instance has no state", path="$"
            )
        return state

    def _write(self, state: S) -> Effect[None, ValidationError]:
        return validated(lambda: self._state.save(self._tx, state))
