"""Executing a run: the alarm handler of a workflow run, step by step, checkpoint by checkpoint.

A run's alarm is set when it is triggered (to "now"), when it sleeps (to the wake time) and
while it waits for a concurrency slot (a little later). While a worker executes the run the
alarm stays due and the instance stays leased (the runtime renews the lease), so if the
worker dies the alarm is claimed again once the lease expires and the run resumes after its
last committed step. One execution:

1. a pending run with a concurrency key claims a slot of the key (``wfkey:…``) in its own
   commit; if the key is full the run stays ``pending`` and its alarm moves a little later;
2. ``leased`` (``attempt`` + 1, ``started_at``, ``run:leased``) is buffered: it goes with the
   execution's first checkpoint, which is made just before the first step's effect runs —
   or is the end (or the sleep) itself when the run gets there first;
3. ``run(step, input)`` runs; every completed step is committed at once, atomically with a
   check of the cancel request (a commit guard on the ``wfcancel:…`` record, checked in the
   same storage commit): a step that finishes after a cancel is never recorded. The request
   is never read or leased apart from that: the first checkpoint is guarded too, and when it
   is refused the execution leaves no trace — the run is cancelled as it was;
4. the end (``completed``/``failed``/``sleeping``) is committed the same way; without a
   concurrency key that commit also releases the lease (so a run whose body reaches no step
   costs one commit after its claim); with one, the slot of the key is given back and a
   pending run of the key is woken next, and the runtime's settle releases the lease.

A checkpoint refused because the lease was lost (another worker took the run over) stops the
execution at once; nothing more is committed (the new owner continues the run).
"""

from __future__ import annotations

from collections.abc import Callable
from datetime import datetime, timedelta
from typing import TYPE_CHECKING, Any, Never

import attrs

from durable_effect import _log
from durable_effect._codec import decode_json
from durable_effect._effect import Effect
from durable_effect._events import Event
from durable_effect._exit import Exit
from durable_effect._interpreter import run_exit
from durable_effect.errors import LeaseLostError, StorageError, ValidationError
from durable_effect.jobs._instance import InstanceTx, TxHooks
from durable_effect.storage._port import Lease
from durable_effect.workflow import _runs
from durable_effect.workflow._events import (
    RunCancelled,
    RunCompleted,
    RunFailed,
    RunLeased,
    RunLeaseRenewed,
    StepCancelled,
)
from durable_effect.workflow._execution_base import (
    Aborted,
    Cancelled,
    Signal,
    Suspended,
    millis,
    stack_of,
)
from durable_effect.workflow._runs import (
    FINISHED,
    INPUT_KEY,
    KEY_CODEC,
    KEY_STATE_KEY,
    OUTPUT_KEY,
    KeyState,
    RunMeta,
    error_text,
    load_meta,
    meta_of,
)
from durable_effect.workflow._step import Step
from durable_effect.workflow._step_ops import StepOps

if TYPE_CHECKING:
    from durable_effect.workflow._definition import WorkflowDefinition

__all__ = ["Execution", "drop_mark", "handle_alarm", "retention_alarm"]

#: How much later a pending run whose concurrency key is full looks again (doubling, capped).
KEY_FULL_FIRST_DELAY = timedelta(seconds=1)
KEY_FULL_MAX_DELAY = timedelta(seconds=30)


# -- the alarm ------------------------------------------------------------------------------------


async def handle_alarm(
    definition: WorkflowDefinition[Any, Any], tx: InstanceTx, due_at: datetime
) -> Effect[None, Never]:
    """The alarm of run ``tx``: execute it, or purge it when its retention is over."""
    try:
        meta = load_meta(tx)
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
        return await _expire(definition, tx, hooks, meta)
    execution = Execution(definition, tx, hooks, meta)
    outcome: Effect[None, Never] = await execution.execute()
    return outcome


async def _expire(
    definition: WorkflowDefinition[Any, Any], tx: InstanceTx, hooks: TxHooks, meta: RunMeta
) -> Effect[None, Never]:
    """Purge a finished run whose retention is over (with its idempotency mark)."""
    retain = definition.retain
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
            ref = _runs.idem_ref(name, meta.idempotency_key)
            await hooks.checkpoint_with(tx, ref, lambda itx: drop_mark(itx, run_id))
        cancel = await hooks.peek(_runs.cancel_ref(name, run_id).instance_id)
        if cancel.exists:
            await hooks.checkpoint_with(tx, _runs.cancel_ref(name, run_id), _purge)
    except (LeaseLostError, StorageError) as exc:
        return _fail_quietly(exc)
    tx.purge()
    return Effect.succeed(None)


def _purge(ctx: InstanceTx) -> None:
    ctx.purge()


def drop_mark(itx: InstanceTx, run_id: str) -> None:
    """Forget an idempotency mark if it still names ``run_id``."""
    data = itx.get(_runs.IDEM_KEY)
    if data is not None and data.decode("utf-8") == run_id:
        itx.purge()


def _fail_quietly(exc: LeaseLostError | StorageError) -> Effect[None, Never]:
    """End the handler without committing (the engine releases what is left)."""
    _log.LOGGER.warning("workflow run stopped without committing: %s", exc)
    failed: Effect[None, Any] = Effect.fail(exc)
    return failed


def retention_alarm(definition: WorkflowDefinition[Any, Any], now: datetime) -> datetime | None:
    """The alarm of a run that just finished: its purge time, or none."""
    return None if definition.retain is None else now + definition.retain


class Execution(StepOps):
    """One handler executing one run (see the module docstring)."""

    # -- the execution ---------------------------------------------------------------------------

    async def execute(self) -> Effect[None, Never]:
        try:
            return await self._execute()
        except Aborted as aborted:
            return _fail_quietly(aborted.cause)

    async def _execute(self) -> Effect[None, Never]:
        tx, meta = self.tx, self.meta
        key = meta.concurrency_key
        if meta.status == "pending" and key is not None and not await self._claim_slot(key):
            polls = meta.key_polls + 1
            delay = min(KEY_FULL_FIRST_DELAY * 2 ** min(polls - 1, 10), KEY_FULL_MAX_DELAY)
            self._save(attrs.evolve(meta, key_polls=polls))
            tx.set_alarm(tx.now() + delay)
            return Effect.succeed(None)
        now = tx.now()
        self.attempt = meta.attempt + 1
        lease = self.hooks.lease_of(tx.instance_id)
        # Buffered, not committed: the start goes with the first checkpoint (a run whose
        # body ends before any step costs one commit, its end).
        self._start(
            attrs.evolve(
                meta,
                status="leased",
                attempt=self.attempt,
                started_at=meta.started_at or now,
                key_polls=0,
            ),
            RunLeased(
                **self._base(),
                attempt=self.attempt,
                lease_owner=None if lease is None else lease.owner,
                lease_expires_at=None if lease is None else lease.expires_at,
            ),
        )
        self.hooks.on_renewed(self._renewed)
        exit_ = await self._run_user()
        signal = self.signal
        if signal is None and not exit_.is_ok and isinstance(exit_.error, Signal):
            signal = exit_.error
        if isinstance(signal, Aborted):
            return _fail_quietly(signal.cause)
        if isinstance(signal, Suspended):
            await self._end(lambda: None)
            return Effect.succeed(None)
        if isinstance(signal, Cancelled):
            await self._end_cancelled(signal.step, signal.index)
            return Effect.succeed(None)
        if exit_.is_ok:
            try:
                data, path = _runs.encode_value(exit_.value, self.d.output_schema)
            except (ValidationError, TypeError) as exc:
                await self._end_failed(exc)
            else:
                await self._end_completed(data, path)
        else:
            await self._end_failed(exit_.error)
        return Effect.succeed(None)

    def _renewed(self, lease: Lease) -> Event | None:
        # Nothing while the start is not committed: ``run:leased`` is not out yet either.
        if (
            lease.instance_id != self.tx.instance_id
            or self.signal is not None
            or self.unstarted is not None
        ):
            return None
        return RunLeaseRenewed(
            **self._base(), lease_owner=lease.owner, lease_expires_at=lease.expires_at
        )

    async def _run_user(self) -> Exit[Any, BaseException]:
        try:
            value = self.d.input_codec.decode(self.tx.get(INPUT_KEY) or b"null")
        except ValidationError as exc:
            return Exit.fail(exc)
        step = Step(self)
        with _log.annotate({"run_id": self.run_id}):
            try:
                program = self.d.run(step, value)
                if not isinstance(program, Effect):
                    raise TypeError(
                        f"a workflow's run must return an Effect, got {type(program).__name__}"
                    )
            except Exception as exc:
                return Exit.die(exc)
            return await run_exit(program)

    # -- endings --------------------------------------------------------------------------------

    async def _end(self, build: Callable[[], None]) -> bool:
        """Buffer an ending and commit it unless a cancel was requested (then cancel)."""
        point = self.tx.savepoint()
        before = self.meta
        mark = len(self.tx.events)
        build()
        try:
            committed = await self._checkpoint_unless_cancelled(release=self.end_releases)
        except Aborted:
            del self.tx.events[mark:]
            raise
        if not committed:
            self.tx.rollback(point)
            del self.tx.events[mark:]
            self.meta = before
            step = self.current
            if self.unstarted is not None:  # its first checkpoint: the execution never began
                self._unstart()
                step = None
            await self._end_cancelled(step, None)
            return False
        return True

    async def _end_completed(self, data: bytes, path: str | None) -> None:
        def build() -> None:
            now = self.tx.now()
            self.tx.put(OUTPUT_KEY, data)
            self._save(
                attrs.evolve(
                    self.meta,
                    status="completed",
                    completed_at=now,
                    output_type=path,
                    error=None,
                )
            )
            self.tx.set_alarm(retention_alarm(self.d, now))
            started = self.meta.started_at or now
            self._emit(
                RunCompleted(
                    **self._base(), output=decode_json(data), duration_ms=millis(now - started)
                )
            )

        if await self._end(build):
            await self._free_slot()

    async def _end_failed(self, error: BaseException) -> None:
        def build() -> None:
            now = self.tx.now()
            text = error_text(error)
            self._save(attrs.evolve(self.meta, status="failed", completed_at=now, error=text))
            self.tx.set_alarm(retention_alarm(self.d, now))
            self._emit(
                RunFailed(
                    **self._base(),
                    error=text,
                    failed_step_name=self.meta.failed_step,
                    stack=stack_of(error),
                )
            )

        if await self._end(build):
            await self._free_slot()

    async def _end_cancelled(self, step: str | None, index: int | None) -> None:
        now = self.tx.now()
        if step is not None:
            rec = self.steps.get(step)
            self._emit(
                StepCancelled(
                    **self._base(),
                    step_name=step,
                    step_index=index if index is not None else (rec.index if rec else None),
                )
            )
        self._save(attrs.evolve(self.meta, status="cancelled", completed_at=now))
        self.tx.set_alarm(retention_alarm(self.d, now))
        self._emit(RunCancelled(**self._base()))
        await self._checkpoint(release=self.end_releases)
        await self._free_slot()

    # -- concurrency keys -----------------------------------------------------------------------

    async def _stale_holders(self, key: str) -> set[str]:
        """Runs holding a slot of ``key`` that are over (or gone): their slots are free."""
        snap = await self.hooks.peek(_runs.key_ref(self.workflow, key).instance_id)
        data = snap.records.get(KEY_STATE_KEY)
        state = KeyState() if data is None else KEY_CODEC.decode(data)
        stale: set[str] = set()
        for other in state.leased:
            if other == self.run_id:
                continue
            found = await self.hooks.peek(_runs.run_ref(self.workflow, other).instance_id)
            other_meta = meta_of(found.records)
            if other_meta is None or other_meta.status in FINISHED:
                stale.add(other)
        return stale

    async def _claim_slot(self, key: str) -> bool:
        try:
            stale = await self._stale_holders(key)
        except (StorageError, ValidationError) as exc:
            _log.LOGGER.warning("%s: cannot read concurrency key %r: %s", self.run_id, key, exc)
            return False
        run_id, limit = self.run_id, self.d.concurrency_limit

        def claim(ktx: InstanceTx) -> bool:
            data = ktx.get(KEY_STATE_KEY)
            state = KeyState() if data is None else KEY_CODEC.decode(data)
            holders = [r for r in state.leased if r not in stale]
            granted = run_id in holders or len(holders) < limit
            if granted and run_id not in holders:
                holders.append(run_id)
            pending = None if granted and state.pending == run_id else state.pending
            new = KeyState(pending=pending, leased=holders)
            if new != state:
                ktx.put(KEY_STATE_KEY, KEY_CODEC.encode(new))
            return granted

        try:
            return await self.hooks.checkpoint_with(
                self.tx, _runs.key_ref(self.workflow, key), claim
            )
        except (LeaseLostError, StorageError) as exc:
            self._raise(Aborted(exc))

    async def _free_slot(self) -> None:
        """Give back this run's slot and wake the key's pending run (best effort: a slot of
        a finished run is also found free by the next claim)."""
        key = self.meta.concurrency_key
        if key is None:
            return
        run_id = self.run_id

        def free(ktx: InstanceTx) -> str | None:
            data = ktx.get(KEY_STATE_KEY)
            state = KeyState() if data is None else KEY_CODEC.decode(data)
            if run_id in state.leased:
                holders = [r for r in state.leased if r != run_id]
                ktx.put(KEY_STATE_KEY, KEY_CODEC.encode(attrs.evolve(state, leased=holders)))
            return state.pending

        try:
            pending = await self.hooks.checkpoint_with(
                self.tx, _runs.key_ref(self.workflow, key), free
            )
            if pending is None or pending == run_id:
                return
            ref = _runs.run_ref(self.workflow, pending)
            snap = await self.hooks.peek(ref.instance_id)
            other = meta_of(snap.records)
            now = self.tx.now()
            # Only a run waiting for its next look at the key: no worker holds it long.
            if other is None or other.status != "pending" or snap.alarm_at is None:
                return
            if snap.alarm_at <= now:
                return

            def wake(ptx: InstanceTx) -> None:
                current = load_meta(ptx)
                if current is not None and current.status == "pending":
                    ptx.set_alarm(now)

            await self.hooks.checkpoint_with(self.tx, ref, wake)
        except (LeaseLostError, StorageError, ValidationError) as exc:
            _log.LOGGER.warning("%s: could not free its concurrency slot: %s", run_id, exc)
