"""The execution driver: the alarm handler of a workflow run, from its claim to its end.

A run's alarm is set when it is triggered (to "now"), when it sleeps (to the wake time) and
while it waits for a concurrency slot (a little later). While a worker executes the run the
alarm stays due and the instance stays leased (the runtime renews the lease), so if the
worker dies the alarm is claimed again once the lease expires and the run resumes after its
last committed step. One execution (``Execution.execute``):

1. a pending run with a concurrency key claims a slot of the key (``_slots``) in its own
   commit; if the key is full the run stays ``pending`` and its alarm moves a little later;
2. ``leased`` (``attempt`` + 1, ``started_at``, ``run:leased``) is buffered: it goes with the
   execution's first checkpoint (``_checkpoint``);
3. ``run(step, input)`` runs; its steps (``_step_runner``) commit at step boundaries, each
   guarded by the cancel request;
4. the end — ``completed``/``failed``/``cancelled``, or ``sleeping`` — is committed the same
   way; without a concurrency key that commit also releases the lease (so a run whose body
   reaches no step costs one commit after its claim); with one, the slot of the key is
   given back and a pending run of the key is woken next, and the runtime's settle releases
   the lease.

A finished run has no alarm: the workflow's retention sweep purges it (``_retention``). A
finished run written by a release from before the sweep keeps the purge alarm that release
gave it; when that fires, the run is purged (``expire``).
What a failed run records of its error, and what a run past a deadline does, belong to the
endings here (``_end_failed``, and the step boundary in ``_checkpoint``).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from datetime import datetime, timedelta
from typing import Any, Never, Protocol

import attrs

from durable_effect import _log
from durable_effect._codec import Codec, decode_json
from durable_effect._effect import Effect
from durable_effect._exit import Exit
from durable_effect._interpreter import run_exit
from durable_effect.errors import LeaseLostError, RunTimeoutError, StorageError, ValidationError
from durable_effect.jobs._instance import InstanceTx, TxHooks
from durable_effect.storage._port import Lease
from durable_effect.workflow._checkpoint import Checkpoints
from durable_effect.workflow._children import (
    cancel_children,
    finished_event,
    has_children,
    must_wake_parent,
    wake_parent,
    wake_retry_at,
)
from durable_effect.workflow._events import (
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunLeased,
    RunLeaseRenewed,
    StepCancelled,
)
from durable_effect.workflow._records import (
    INPUT_KEY,
    META,
    OUTPUT_KEY,
    RunMeta,
    cancel_ref,
    drop_mark,
    idem_ref,
    inbox_ref,
    put_end,
)
from durable_effect.workflow._results import FINISHED
from durable_effect.workflow._run_state import (
    Aborted,
    Cancelled,
    Diverged,
    RunState,
    Signal,
    Suspended,
    TimedOut,
    finished_alarm,
    millis,
    stack_of,
)
from durable_effect.workflow._slots import claim_slot, free_slot
from durable_effect.workflow._step import Step
from durable_effect.workflow._step_runner import StepRunner, StepTypes
from durable_effect.workflow._values import encode_value, error_text

__all__ = ["Execution", "RunSpec", "handle_alarm"]

#: How much later a pending run whose concurrency key is full looks again (doubling, capped).
KEY_FULL_FIRST_DELAY = timedelta(seconds=1)
KEY_FULL_MAX_DELAY = timedelta(seconds=30)


class RunSpec(StepTypes, Protocol):
    """What the driver needs of a workflow definition."""

    @property
    def run(self) -> Callable[[Step, Any], Effect[Any, BaseException]]:
        """The workflow: ``run(step, input)``."""
        ...

    @property
    def input_codec(self) -> Codec[Any]:
        """Decodes the stored input."""
        ...

    @property
    def output_schema(self) -> object:
        """Encodes the output (``None``: its own type)."""
        ...

    @property
    def concurrency_limit(self) -> int:
        """Leased runs per concurrency key."""
        ...

    @property
    def retain(self) -> timedelta | None:
        """How long a finished run is kept (``None``: forever)."""
        ...


# -- the alarm ------------------------------------------------------------------------------------


async def handle_alarm(spec: RunSpec, tx: InstanceTx) -> Effect[None, Never]:
    """The alarm of run ``tx``: execute it, or purge it when its retention is over."""
    try:
        meta = META.load(tx)
    except ValidationError as exc:
        _log.LOGGER.error("%s: unreadable run metadata, alarm dropped: %s", tx.instance_id, exc)
        tx.set_alarm(None)
        return Effect.succeed(None)
    if meta is None:  # a stale alarm of a run that no longer exists
        tx.set_alarm(None)
        return Effect.succeed(None)
    hooks = tx.hooks
    if hooks is None:  # pragma: no cover - the engine always gives hooks
        raise RuntimeError("workflow runs need the runtime's checkpoint hooks")
    if meta.status in FINISHED:
        if meta.cancel_children:  # a cancelled run: cancel its unfinished children first
            try:
                await cancel_children(tx, hooks)
            except (LeaseLostError, StorageError, ValidationError) as exc:
                _log.LOGGER.warning("%s: could not cancel its children: %s", tx.instance_id, exc)
                tx.set_alarm(tx.now() + KEY_FULL_FIRST_DELAY)  # try again a little later
                return Effect.succeed(None)
            META.save(tx, attrs.evolve(meta, cancel_children=False))
            meta = attrs.evolve(meta, cancel_children=False)
        if meta.wake_parent:  # a child's end whose wake is not delivered yet (``_children``)
            if not await wake_parent(tx, hooks, meta):
                tx.set_alarm(wake_retry_at(meta, tx.now()))  # its parent was held: later
                return Effect.succeed(None)
            META.save(tx, attrs.evolve(meta, wake_parent=False))
            tx.set_alarm(finished_alarm(spec.retain, tx.now()))
            return Effect.succeed(None)
        return await expire(spec.retain, tx, hooks, meta)
    return await Execution(spec, tx, hooks, meta).execute()


async def expire(
    retain: timedelta | None, tx: InstanceTx, hooks: TxHooks, meta: RunMeta
) -> Effect[None, Never]:
    """Purge a finished run whose retention is over (with its idempotency mark)."""
    if retain is None or meta.completed_at is None:
        tx.set_alarm(None)
        return Effect.succeed(None)
    purge_at = meta.completed_at + retain
    if tx.now() < purge_at:
        tx.set_alarm(purge_at)
        return Effect.succeed(None)
    name, run_id = tx.ref.job_name, tx.ref.id
    try:
        if meta.idempotency_key is not None:
            ref = idem_ref(name, meta.idempotency_key)
            await hooks.checkpoint_with(tx, ref, lambda itx: drop_mark(itx, run_id))
        for side in (cancel_ref(name, run_id), inbox_ref(name, run_id)):
            if (await hooks.peek(side.instance_id)).exists:
                await hooks.checkpoint_with(tx, side, _purge)
    except (LeaseLostError, StorageError) as exc:
        return _fail_quietly(exc)
    tx.purge()
    return Effect.succeed(None)


def _purge(ctx: InstanceTx) -> None:
    ctx.purge()


def _fail_quietly(exc: LeaseLostError | StorageError) -> Effect[None, Never]:
    """End the handler without committing (the engine releases what is left)."""
    _log.LOGGER.warning("workflow run stopped without committing: %s", exc)
    failed: Effect[None, Any] = Effect.fail(exc)
    return failed


# -- one execution --------------------------------------------------------------------------------


class Execution:
    """One handler executing one run (see the module docstring)."""

    def __init__(self, spec: RunSpec, tx: InstanceTx, hooks: TxHooks, meta: RunMeta) -> None:
        self.spec = spec
        self.hooks = hooks
        self.state = RunState(tx, meta)
        self.checkpoints = Checkpoints(self.state, hooks)
        self.steps = StepRunner(self.state, self.checkpoints, spec)
        # The run's end may release the lease in its own commit: nothing follows it (a run
        # with a concurrency key gives its slot back after its end, under the lease).
        # A child run wakes its parent after its end, under the lease: not released by it.
        self.end_releases = meta.concurrency_key is None and meta.parent_run_id is None

    async def execute(self) -> Effect[None, Never]:
        try:
            return await self._execute()
        except Aborted as aborted:
            return _fail_quietly(aborted.cause)

    async def _execute(self) -> Effect[None, Never]:
        state, meta = self.state, self.state.meta
        if state.past_deadline():  # it starts (or wakes up) past its deadline
            await self._end_failed(self._timed_out(), defect=False)
            return Effect.succeed(None)
        key = meta.concurrency_key
        limit = self.spec.concurrency_limit
        if (
            meta.status == "pending"
            and key is not None
            and not await claim_slot(state, self.hooks, key, limit)
        ):
            polls = meta.key_polls + 1
            delay = min(KEY_FULL_FIRST_DELAY * 2 ** min(polls - 1, 10), KEY_FULL_MAX_DELAY)
            state.evolve(key_polls=polls)
            state.tx.set_alarm(state.wake_alarm(state.now() + delay))
            return Effect.succeed(None)
        self._start()
        self.hooks.on_renewed(self._renewed)
        exit_ = await self._run_user()
        signal = state.signal
        if signal is None and not exit_.is_ok and isinstance(exit_.error, Signal):
            signal = exit_.error
        if isinstance(signal, Aborted):
            return _fail_quietly(signal.cause)
        if isinstance(signal, Suspended):
            # Nothing follows a suspension (a run sleeping keeps its concurrency slot): its
            # commit releases the lease, so a ``send`` finds the run free right after it.
            await self._end(lambda: None, release=True, also=state.suspend_guards)
        elif isinstance(signal, Cancelled):
            await self._end_cancelled(signal.step, signal.index)
        elif isinstance(signal, TimedOut):
            await self._end_failed(self._timed_out(), defect=False)
        elif isinstance(signal, Diverged):
            await self._end_failed(signal.error, defect=False)
        elif exit_.is_ok:
            try:
                data, path = encode_value(exit_.value, self.spec.output_schema, self.spec.known)
            except (ValidationError, TypeError) as exc:
                await self._end_failed(exc, defect=True)
            else:
                await self._end_completed(data, path)
        else:
            await self._end_failed(exit_.error, defect=exit_.is_defect)
        return Effect.succeed(None)

    def _timed_out(self) -> RunTimeoutError:
        meta = self.state.meta
        assert meta.run_timeout is not None
        if meta.failed_step is None and meta.current_step is not None:
            self.state.evolve(failed_step=meta.current_step)  # where it stopped
        return RunTimeoutError(run_id=self.state.run_id, timeout=meta.run_timeout)

    def _start(self) -> None:
        """Buffer the start: committed with the execution's first checkpoint (a run whose
        body ends before any step costs one commit, its end)."""
        state, meta = self.state, self.state.meta
        now = state.now()
        state.attempt = meta.attempt + 1
        lease = self.hooks.lease_of(state.tx.instance_id)
        leased = RunLeased(
            **state.fields(),
            attempt=state.attempt,
            lease_owner=None if lease is None else lease.owner,
            lease_expires_at=None if lease is None else lease.expires_at,
        )
        self.checkpoints.start(
            attrs.evolve(
                meta,
                status="leased",
                attempt=state.attempt,
                started_at=meta.started_at or now,
                key_polls=0,
                waiting=None,
            ),
            leased,
        )

    def _renewed(self, lease: Lease) -> RunLeaseRenewed | None:
        # Nothing while the start is not committed: ``run:leased`` is not out yet either.
        state = self.state
        if (
            lease.instance_id != state.tx.instance_id
            or state.signal is not None
            or self.checkpoints.unstarted is not None
        ):
            return None
        return RunLeaseRenewed(
            **state.fields(), lease_owner=lease.owner, lease_expires_at=lease.expires_at
        )

    async def _run_user(self) -> Exit[Any, BaseException]:
        state = self.state
        try:
            value = self.spec.input_codec.decode(state.tx.get(INPUT_KEY) or b"null")
        except ValidationError as exc:
            return Exit.fail(exc)
        step = Step(self.steps)
        with _log.annotate({"run_id": state.run_id}):
            try:
                program = self.spec.run(step, value)
                if not isinstance(program, Effect):
                    raise TypeError(
                        f"a workflow's run must return an Effect, got {type(program).__name__}"
                    )
            except Exception as exc:
                return Exit.die(exc)
            return await run_exit(program)

    # -- endings --------------------------------------------------------------------------------

    async def _end(
        self,
        build: Callable[[], None],
        *,
        release: bool | None = None,
        also: Sequence[tuple[str, str]] = (),
    ) -> bool:
        """Buffer an ending and commit it unless a cancel was requested (then cancel).

        ``also``: records that refuse the commit too — what a suspending run waits for, come
        after it looked (the ``end`` of a waited-for child, the inbox's next event): the run
        then looks again at once (its alarm now) instead of sleeping.
        """
        state = self.state
        mark = state.mark()
        before = state.meta
        build()
        checkpoints = self.checkpoints
        released = self.end_releases if release is None else release
        try:
            refused = await checkpoints.commit_guarded(also, release=released)
            if refused is not None and not checkpoints.is_cancel(refused):
                state.tx.set_alarm(state.now())
                refused = await checkpoints.commit_guarded(release=released)
        except Aborted:
            state.drop_events(mark)
            raise
        if refused is None:
            return True
        state.undo(mark)
        state.meta = before
        step = state.current
        if self.checkpoints.unstarted is not None:  # its first checkpoint: it never began
            self.checkpoints.unstart()
            step = None
        await self._end_cancelled(step, None)
        return False

    def _finish(self, now: datetime, **changes: Any) -> None:
        """Buffer a finished status (and the retention alarm); a child announces its end
        to its parent (``run:child-finished``; the wake follows the commit)."""
        state = self.state
        state.evolve(completed_at=now, **changes)
        put_end(state.tx)
        state.tx.set_alarm(finished_alarm(self.spec.retain, now))
        if must_wake_parent(state.meta):  # its next alarm, at once, wakes the parent again
            state.evolve(wake_parent=True)
            state.tx.set_alarm(now)
        event = finished_event(state.workflow, state.run_id, state.meta, now)
        if event is not None:
            state.emit(event)

    async def _ended(self) -> None:
        """After the end's commit: give the concurrency slot back, wake a parent — once
        delivered, ``wake_parent`` is cleared by the handler's last commit; otherwise the
        run's alarm tries again (``_children``)."""
        state = self.state
        await free_slot(state, self.hooks)
        woken = await wake_parent(state.tx, self.hooks, state.meta)
        if not state.meta.wake_parent:
            return
        if woken:
            state.evolve(wake_parent=False)
        if state.meta.cancel_children:
            return  # its alarm, now, cancels its children (and tries the wake again)
        now = state.now()
        state.tx.set_alarm(
            finished_alarm(self.spec.retain, now) if woken else wake_retry_at(state.meta, now)
        )

    async def _end_completed(self, data: bytes, path: str | None) -> None:
        state = self.state

        def build() -> None:
            now = state.now()
            state.tx.put(OUTPUT_KEY, data)
            self._finish(now, status="completed", output_type=path, error=None)
            started = state.meta.started_at or now
            state.emit(
                RunCompleted(
                    **state.fields(), output=decode_json(data), duration_ms=millis(now - started)
                )
            )

        if await self._end(build):
            await self._ended()

    async def _end_failed(self, error: BaseException, *, defect: bool) -> None:
        state = self.state
        failure = self.spec.errors.persist(error, defect=defect)

        def build() -> None:
            text = error_text(error)
            self._finish(state.now(), status="failed", error=text, failure=failure)
            state.emit(
                RunFailed(
                    **state.fields(),
                    error=text,
                    failed_step_name=state.meta.failed_step,
                    stack=stack_of(error),
                )
            )

        if await self._end(build):
            await self._ended()

    async def _end_cancelled(self, step: str | None, index: int | None) -> None:
        state = self.state
        if step is not None:
            rec = state.steps.get(step)
            state.emit(
                StepCancelled(
                    **state.fields(),
                    step_name=step,
                    step_index=index if index is not None else (rec.index if rec else None),
                )
            )
        now = state.now()
        self._finish(now, status="cancelled")
        if has_children(state.tx.records()):  # its next alarm, at once, cancels them
            state.evolve(cancel_children=True)
            state.tx.set_alarm(now)
        state.emit(RunCancelled(**state.fields()))
        await self.checkpoints.commit(release=self.end_releases)
        await self._ended()
