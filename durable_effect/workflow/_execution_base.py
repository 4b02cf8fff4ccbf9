"""The parts every execution of a run shares: the signals that end it from inside user code,
its buffered view of the run (``ExecutionBase``) and its checkpoints.

Signals derive from ``BaseException`` (not ``Exception``), so user code wrapping a step in
``try_promise`` cannot turn them into typed failures; the interpreter carries them as
defects to the top of the run, where ``Execution`` reads them.
"""

from __future__ import annotations

import traceback
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Never

import attrs

from durable_effect._duration import Duration, DurationInput
from durable_effect._effect import Effect
from durable_effect._events import Event, new_event_id
from durable_effect.errors import LeaseLostError, StepTimeoutError, StorageError, TimeoutException
from durable_effect.jobs._instance import InstanceTx, Savepoint, TxHooks
from durable_effect.storage._port import GuardFailed
from durable_effect.workflow import _runs
from durable_effect.workflow._runs import CANCEL_CODEC, CANCEL_KEY, RunMeta, StepRec, save_meta

if TYPE_CHECKING:
    from durable_effect.workflow._definition import WorkflowDefinition

__all__ = [
    "Aborted",
    "Attempt",
    "Cancelled",
    "ExecutionBase",
    "Signal",
    "Suspended",
    "UserError",
    "cancel_flag_record",
    "millis",
    "stack_of",
    "with_timeout",
]

_MS = timedelta(milliseconds=1)

# -- signals ----------------------------------------------------------------------------------


class Signal(BaseException):
    """Ends the execution; user code never handles it."""


class Suspended(Signal):
    """The run sleeps (a ``step.sleep`` or a step retry): commit and end the handler."""


class Cancelled(Signal):
    """A cancel request was found at a step boundary."""

    def __init__(self, step: str | None, index: int | None) -> None:
        super().__init__(step)
        self.step = step
        self.index = index


class Aborted(Signal):
    """The lease was lost (or storage failed): stop without committing anything more."""

    def __init__(self, cause: LeaseLostError | StorageError) -> None:
        super().__init__(str(cause))
        self.cause = cause


class UserError(Exception):
    """Wraps a step effect's typed failure so that only *our* timeout is a timeout."""

    def __init__(self, error: BaseException) -> None:
        super().__init__()
        self.error = error


@attrs.frozen
class Attempt:
    """One attempt of a step: its name and index, attempt number, first and own start."""

    name: str
    index: int
    number: int
    first: datetime
    started: datetime


def stack_of(error: BaseException) -> str | None:
    if error.__traceback__ is None:
        return None
    return "".join(traceback.format_exception(error))


def millis(delta: timedelta) -> int:
    return max(0, round(delta / _MS))


# -- the execution's state ----------------------------------------------------------------------


class ExecutionBase:
    """One handler executing one run: its buffered view and its checkpoints."""

    def __init__(
        self,
        definition: WorkflowDefinition[Any, Any],
        tx: InstanceTx,
        hooks: TxHooks,
        meta: RunMeta,
    ) -> None:
        self.d = definition
        self.tx = tx
        self.hooks = hooks
        self.meta = meta
        self.workflow = tx.ref.job_name
        self.run_id = tx.ref.id
        self.attempt = meta.attempt
        self.cancel_ref = _runs.cancel_ref(self.workflow, self.run_id)
        self.cancel_guard = ((self.cancel_ref.instance_id, CANCEL_KEY),)
        self.steps: dict[str, StepRec] = {}
        for rec in _runs.load_steps(tx.records()):
            self.steps.setdefault(rec.name, rec)
        self.signal: Signal | None = None
        self.busy: str | None = None
        self.current: str | None = None
        # While the execution's start (``leased``, ``attempt``, ``started_at``,
        # ``run:leased``) is buffered but not committed: where the buffer stood before it,
        # and the meta before it. It goes with the first checkpoint (see ``_start``).
        self.unstarted: tuple[Savepoint, int, RunMeta] | None = None
        # The run's end may release the lease in its own commit: nothing follows it (a run
        # with a concurrency key gives its slot back after its end, under the lease).
        self.end_releases = meta.concurrency_key is None
        # Calls of step.log / step.progress outside steps in this execution (see RunMeta).
        self.outside_logs = 0
        self.outside_progress = 0

    # -- helpers ---------------------------------------------------------------------------------

    def _base(self) -> dict[str, Any]:
        return {
            "event_id": new_event_id(),
            "timestamp": self.tx.now(),
            "instance_id": self.tx.instance_id,
            "run_id": self.run_id,
            "job_name": self.workflow,
            "labels": dict(self.meta.labels),
        }

    def _emit(self, event: Event) -> Event:
        self.tx.emit(event)
        return event

    def _save(self, meta: RunMeta) -> None:
        self.meta = meta
        save_meta(self.tx, meta)

    def _put_step(self, rec: StepRec) -> None:
        self.tx.put(_runs.step_key(rec.index), _runs.STEP_CODEC.encode(rec))

    def _raise(self, signal: Signal) -> Never:
        self.signal = signal
        raise signal

    def _start(self, meta: RunMeta, event: Event) -> None:
        """Buffer the execution's start (``meta`` is the leased meta, ``event`` its
        ``run:leased``): it is committed with the execution's first checkpoint — before the
        first step's effect runs, or with the run's end or sleep when none comes first."""
        self.unstarted = (self.tx.savepoint(), len(self.tx.events), self.meta)
        self._save(meta)
        self._emit(event)

    def _unstart(self) -> None:
        """The execution's first checkpoint was refused by a cancel request: forget all it
        buffered, its start included (the run is cancelled as it was, like a run that no
        worker holds)."""
        assert self.unstarted is not None
        point, mark, meta = self.unstarted
        self.tx.rollback(point)
        del self.tx.events[mark:]
        self.meta = meta
        self.unstarted = None

    async def _checkpoint(self, *, release: bool = False) -> None:
        """Commit what is buffered now (fenced by the lease); ``release``: the last one."""
        try:
            await self.hooks.checkpoint(self.tx, release=release)
        except (LeaseLostError, StorageError) as exc:
            self._raise(Aborted(exc))
        self.unstarted = None

    async def _checkpoint_unless_cancelled(self, *, release: bool = False) -> bool:
        """Commit what is buffered unless a cancel was requested (then commit nothing).

        Returns ``False`` when a cancel request refused the commit. The request is checked
        by the commit itself (a guard on the ``wfcancel:…`` record), atomically with respect
        to the commit that writes the request: one round trip, no lease on ``wfcancel:…``,
        and no read of it beforehand (the execution's first checkpoint is always guarded,
        so a request waiting when a worker takes the run is found there).
        ``release``: the run's last commit, which releases the lease too.
        """
        try:
            await self.hooks.checkpoint(self.tx, unless_present=self.cancel_guard, release=release)
        except GuardFailed:
            return False
        except (LeaseLostError, StorageError) as exc:
            self._raise(Aborted(exc))
        self.unstarted = None
        return True

    async def _checkpoint_or_cancel(
        self, point: Savepoint, mark: int, step: str | None, index: int | None
    ) -> None:
        """A guarded checkpoint inside the run: refused by a cancel request, what was
        buffered since ``point``/``mark`` is dropped and ``Cancelled`` ends the execution
        (``Cancelled(None, None)`` when it was the execution's first checkpoint)."""
        try:
            committed = await self._checkpoint_unless_cancelled()
        except Aborted:
            del self.tx.events[mark:]
            raise
        if committed:
            return
        self.tx.rollback(point)
        del self.tx.events[mark:]
        if self.unstarted is not None:
            self._unstart()
            step, index = None, None
        self._raise(Cancelled(step, index))

    async def _announce(self) -> None:
        """Commit the execution's start if it is not yet: a step's effect is about to run
        (so while it runs the run shows ``leased``, and a crash of the worker counts)."""
        if self.unstarted is not None:
            await self._checkpoint_or_cancel(self.tx.savepoint(), len(self.tx.events), None, None)

    def _check_open(self, what: str, *, inside_step: bool = False) -> None:
        if self.signal is not None:
            raise self.signal
        if self.busy is not None and not inside_step:
            raise RuntimeError(
                f"{what} while step {self.busy!r} is running: steps of a run execute one at a "
                "time (do not nest steps or run them concurrently)"
            )


def with_timeout(
    name: str, effect: Effect[Any, BaseException], timeout: DurationInput | None
) -> Effect[Any, BaseException]:
    if timeout is None:
        return effect
    delay = Duration.parse(timeout)
    limit_ms = millis(delay)

    def wrap(error: BaseException) -> BaseException:
        return UserError(error)

    def unwrap(error: BaseException) -> BaseException:
        if isinstance(error, UserError):
            return error.error
        if isinstance(error, TimeoutException):
            return StepTimeoutError(step=name, timeout_ms=limit_ms)
        return error

    return effect.map_error(wrap).timeout(delay).map_error(unwrap)


def cancel_flag_record(now: datetime) -> bytes:
    """The record a cancel request writes into ``wfcancel:…``."""
    return CANCEL_CODEC.encode(_runs.CancelFlag(requested_at=now))
