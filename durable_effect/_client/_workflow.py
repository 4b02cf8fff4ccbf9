"""`WorkflowHandle[I, O, E, V]`: the client of a workflow. Every method returns a lazy ``Effect``.

Typed by the workflow's input ``I``, output ``O``, declared errors ``E`` (``error_schema``;
``Never`` by default, so ``WorkflowHandle[I, O]`` annotations keep working) and events ``V``
(``event_schema``; ``object`` by default).

Nothing is read or sent until the effect runs. Each method is one of the workflow's
queries (``workflow/_queries``) run against the opened engine; see there for how triggers,
reads, ``wait`` and ``cancel`` work. The run itself needs a worker —
``rt.run_until_idle()``/``advance`` under ``TestRuntime``, or a ``jobs.worker()`` running
beside a waiting task.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from typing import Any, Generic, Never, TypeAlias

from typing_extensions import TypeVar

from durable_effect._client._base import JobHandle
from durable_effect._duration import DurationInput
from durable_effect._effect import Effect, async_effect
from durable_effect.errors import (
    ConflictError,
    InstanceNotFoundError,
    InvalidStateError,
    JobNotFoundError,
    StorageError,
    TimeoutException,
    ValidationError,
)
from durable_effect.workflow._definition import WorkflowDefinition
from durable_effect.workflow._pages import RunPage
from durable_effect.workflow._queries import RunQueries
from durable_effect.workflow._results import (
    Coalesce,
    PendingEvents,
    Run,
    RunErrors,
    RunStatus,
    SendResult,
    StepRecord,
    TriggerRequest,
    TriggerResult,
)

__all__ = ["WorkflowHandle"]

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741
E = TypeVar("E", bound=BaseException, default=Never)
V = TypeVar("V", default=object)
R = TypeVar("R")
Err = TypeVar("Err", bound=BaseException)

_Lookup: TypeAlias = JobNotFoundError | ValidationError | StorageError


class WorkflowHandle(JobHandle[WorkflowDefinition[I, O, E, V]], Generic[I, O, E, V]):
    """The client of one workflow (``client.workflow(definition_or_name)``)."""

    job_type = "workflow"

    def _query(
        self, op: Callable[[RunQueries[I, O]], Effect[R, Err]]
    ) -> Effect[R, Err | JobNotFoundError]:
        """Run ``op`` on the workflow's queries, once the effect runs."""

        async def run() -> Effect[R, Err | JobNotFoundError]:
            try:
                definition = self._resolve()
            except JobNotFoundError as exc:
                return Effect.fail(exc)
            engine = await self._engine()
            return op(RunQueries(definition, self._name, engine))

        return async_effect(run)

    # -- triggers --------------------------------------------------------------------------------

    def trigger(
        self,
        input: I,
        *,
        idempotency_key: str | None = None,
        concurrency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
        coalesce: Coalesce | None = None,
        run_timeout: DurationInput | None = None,
    ) -> Effect[TriggerResult, ConflictError | _Lookup]:
        """Create a pending run of ``input`` (committed when the effect succeeds).

        ``ValidationError`` (nothing written) if the input does not fit the schema or an
        option is invalid. With ``idempotency_key``, a retained run triggered with the same
        key is returned instead (``idempotent``). With ``concurrency_key``, a run of the key
        still pending fails the trigger with ``ConflictError`` — or is returned
        (``coalesced``) with ``coalesce="skip"``. ``run_timeout`` overrides the workflow's:
        the run's deadline is that long after now.
        """
        request = TriggerRequest(
            input=input,
            idempotency_key=idempotency_key,
            concurrency_key=concurrency_key,
            labels=labels,  # checked (and copied) when the run is prepared
            coalesce=coalesce,
            run_timeout=run_timeout,
        )
        return self.batch_trigger([request]).map(_first)

    def batch_trigger(
        self, items: Sequence[I | TriggerRequest[I]]
    ) -> Effect[list[TriggerResult], ConflictError | _Lookup]:
        """Trigger every item (an input or a ``TriggerRequest``) in ONE transaction.

        One result per item, in order. If any item is invalid or conflicts, nothing is
        written. Items sharing an idempotency key give one run; a second item pending on
        the same concurrency key conflicts (or coalesces) with the first.
        """
        return self._query(lambda q: q.batch_trigger(items))

    def trigger_and_wait(
        self,
        input: I,
        *,
        idempotency_key: str | None = None,
        concurrency_key: str | None = None,
        labels: Mapping[str, str] | None = None,
        coalesce: Coalesce | None = None,
        run_timeout: DurationInput | None = None,
        timeout: DurationInput | None = None,
    ) -> Effect[
        O,
        E | RunErrors | ConflictError | InstanceNotFoundError | TimeoutException | _Lookup,
    ]:
        """Trigger, then wait for the run to finish and give its output (``wait_output``).

        A failed run fails with its own error: an ``error_schema`` error as the same class
        and fields, ``RetryExhaustedError``, ``StepTimeoutError``, ``RunTimeoutError``,
        ``NonDeterminismError`` — anything else (defects, undeclared errors) as
        ``RunFailedError(run_id, error)``; a cancelled run with ``RunCancelledError``.
        ``timeout`` (runtime clock) fails with ``TimeoutException`` — the run goes on.
        Something must execute the run meanwhile (a worker).
        """
        triggered = self.trigger(
            input,
            idempotency_key=idempotency_key,
            concurrency_key=concurrency_key,
            labels=labels,
            coalesce=coalesce,
            run_timeout=run_timeout,
        )

        def wait_for(result: TriggerResult) -> Effect[O, Any]:
            return self.wait_output(result.run_id, timeout)

        return triggered.flat_map(wait_for)

    def wait_output(
        self, run_id: str, timeout: DurationInput | None = None
    ) -> Effect[O, E | RunErrors | InstanceNotFoundError | TimeoutException | _Lookup]:
        """The output of a run once it is finished, or the run's own error (as
        ``trigger_and_wait``); ``TimeoutException`` after ``timeout`` (runtime clock)."""
        # The queries fail with the run's error as a TaggedError: one of ``E`` (the declared
        # classes) or of ``RunErrors``, by construction of ``ErrorClasses.restore``.
        waited: Effect[O, Any] = self._query(lambda q: q.wait_output(run_id, timeout))
        return waited

    def retrigger(
        self, run_id: str
    ) -> Effect[TriggerResult, InstanceNotFoundError | InvalidStateError | ConflictError | _Lookup]:
        """A new run with a finished run's input, labels and concurrency key (``created``).

        ``InvalidStateError`` if the run is not finished.
        """
        return self._query(lambda q: q.retrigger(run_id))

    def fork(
        self, run_id: str, *, from_step: str | None = None
    ) -> Effect[TriggerResult, InstanceNotFoundError | InvalidStateError | ConflictError | _Lookup]:
        """A new run of a finished run's input whose steps before ``from_step`` (all its
        completed steps when ``None``) are copied, not run again; it records ``forked_from``.

        Labels and the concurrency key are copied, the idempotency key is not; the new run's
        deadline starts now. ``InvalidStateError`` if the run is not finished;
        ``ValidationError`` if ``from_step`` names no completed step of it.
        """
        return self._query(lambda q: q.fork(run_id, from_step))

    def resume(
        self, run_id: str
    ) -> Effect[Run[I, O], InstanceNotFoundError | InvalidStateError | _Lookup]:
        """Continue a failed or cancelled run after its last completed step: the same run,
        ``pending`` again (returned), its ``attempt`` growing when a worker takes it.

        Its deadline starts now; a durable sleep it was in keeps its wake time.
        ``InvalidStateError`` for a run that is not failed or cancelled.
        """
        return self._query(lambda q: q.resume(run_id))

    # -- reads -----------------------------------------------------------------------------------

    def get_run(self, run_id: str) -> Effect[Run[I, O], InstanceNotFoundError | _Lookup]:
        """The run as committed; ``InstanceNotFoundError`` if there is none."""
        return self._query(lambda q: q.get_run(run_id))

    def list_runs(
        self,
        status: RunStatus | Sequence[RunStatus] | None = None,
        labels: Mapping[str, str] | None = None,
        limit: int = 50,
        offset: int = 0,
        after: str | None = None,
    ) -> Effect[RunPage[I, O], _Lookup]:
        """Runs newest first, filtered by status (one or several, OR-ed) and labels
        (AND-ed): at most ``limit`` (up to 1,000) of them, past the cursor ``after`` (a
        page's ``next_cursor``) or after skipping ``offset`` — not both.

        A `RunPage`: a list of runs with ``next_cursor``, ``None`` exactly on the last page.
        A page costs time in proportion to the page (to the runs carrying the rarest pair
        with several label pairs; ``offset`` costs the runs it skips), not to the number of
        retained runs. ``ValidationError`` names a bad argument.
        """

        return self._query(lambda q: q.list_runs(status, labels, limit, offset, after))

    def count_runs(
        self,
        status: RunStatus | Sequence[RunStatus] | None = None,
        labels: Mapping[str, str] | None = None,
    ) -> Effect[dict[RunStatus, int], _Lookup]:
        """How many runs have each status (every status a key, 0 when none), among those
        with ``status`` (one or several) and every label in ``labels``.

        Read from counts kept with the commits (with several label pairs: the runs
        carrying the rarest pair are checked), not by reading every run.
        """

        return self._query(lambda q: q.count_runs(status, labels))

    def steps(self, run_id: str) -> Effect[list[StepRecord], InstanceNotFoundError | _Lookup]:
        """The run's completed and failed steps in order, with outputs, errors and timings."""
        return self._query(lambda q: q.steps(run_id))

    def wait(
        self, run_id: str, timeout: DurationInput | None = None
    ) -> Effect[Run[I, O], InstanceNotFoundError | TimeoutException | _Lookup]:
        """The run once it is finished (``TimeoutException`` after ``timeout``, runtime clock)."""
        return self._query(lambda q: q.wait(run_id, timeout))

    # -- events ----------------------------------------------------------------------------------

    def send(
        self, run_id: str, event: V, *, event_id: str | None = None
    ) -> Effect[SendResult, InstanceNotFoundError | InvalidStateError | _Lookup]:
        """Send ``event`` to run ``run_id``: queued for its ``step.wait_for_event`` (first in
        first out), waking a run that waits for one.

        The event is validated against the workflow's ``event_schema`` before anything is
        written (``ValidationError``). An unknown run: ``InstanceNotFoundError``; a finished
        one: ``InvalidStateError``; a pending one accepts events. An ``event_id`` already
        sent to this run gives ``accepted=False, duplicate=True`` and is not queued again.
        A send never waits for a worker that is executing the run.
        """
        return self._query(lambda q: q.send(run_id, event, event_id))

    def pending_events(
        self, run_id: str
    ) -> Effect[PendingEvents[V], InstanceNotFoundError | _Lookup]:
        """The events sent to the run and not taken by a wait (oldest first), and what the
        run waits for (``waiting``: ``None`` unless it sleeps until an event)."""
        pending: Effect[PendingEvents[Any], Any] = self._query(lambda q: q.pending_events(run_id))
        return pending

    # -- cancel / delete -------------------------------------------------------------------------

    def cancel(
        self, run_id: str
    ) -> Effect[None, InstanceNotFoundError | InvalidStateError | _Lookup]:
        """Cancel an active run (``InvalidStateError`` if it is finished).

        A run no worker holds (pending, sleeping, or left by a crashed worker) is cancelled
        at once. A run a worker is executing gets a cancel request: the worker stops at its
        next step boundary, and the step that was running is not recorded (``wait`` gives
        the cancelled run).
        """
        return self._query(lambda q: q.cancel(run_id))

    def delete_run(
        self, run_id: str
    ) -> Effect[None, InstanceNotFoundError | InvalidStateError | _Lookup]:
        """Delete a finished run with its steps, logs and idempotency mark (``run:delete``).

        ``InvalidStateError`` if the run is still active.
        """
        return self._query(lambda q: q.delete_run(run_id))


def _first(results: list[TriggerResult]) -> TriggerResult:
    return results[0]
