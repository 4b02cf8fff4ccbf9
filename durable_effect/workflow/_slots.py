"""Concurrency keys: at most ``concurrency_limit`` leased runs per key, one pending.

A key's state (``wfkey:{name}:{key}``, ``KEY_STATE``) names its pending run and the runs
holding a slot. A pending run claims a slot in its own commit before it starts; a full key
leaves it pending (the driver looks again a little later). A run gives its slot back after
its end and wakes the key's pending run. A slot held by a run that is over (or gone) is free:
the next claim finds it so, which also covers a run that died before giving its slot back.
"""

from __future__ import annotations

from durable_effect import _log
from durable_effect.errors import LeaseLostError, StorageError, ValidationError
from durable_effect.jobs._instance import InstanceTx, TxHooks
from durable_effect.workflow._records import KEY_STATE, META, KeyState, key_ref, run_ref
from durable_effect.workflow._results import FINISHED
from durable_effect.workflow._run_state import Aborted, RunState

__all__ = ["claim_slot", "free_slot"]


def _key_state(ktx: InstanceTx) -> KeyState:
    state = KEY_STATE.load(ktx)
    return KeyState() if state is None else state


async def _stale_holders(state: RunState, hooks: TxHooks, key: str) -> set[str]:
    """Runs holding a slot of ``key`` that are over (or gone): their slots are free."""
    snap = await hooks.peek(key_ref(state.workflow, key).instance_id)
    found = KEY_STATE.load(snap.records)
    stale: set[str] = set()
    for other in [] if found is None else found.leased:
        if other == state.run_id:
            continue
        other_snap = await hooks.peek(run_ref(state.workflow, other).instance_id)
        other_meta = META.load(other_snap.records)
        if other_meta is None or other_meta.status in FINISHED:
            stale.add(other)
    return stale


async def claim_slot(state: RunState, hooks: TxHooks, key: str, limit: int) -> bool:
    """Take a slot of ``key`` for the run (committed with the key's state); False if full."""
    try:
        stale = await _stale_holders(state, hooks, key)
    except (StorageError, ValidationError) as exc:
        _log.LOGGER.warning("%s: cannot read concurrency key %r: %s", state.run_id, key, exc)
        return False
    run_id = state.run_id

    def claim(ktx: InstanceTx) -> bool:
        current = _key_state(ktx)
        holders = [r for r in current.leased if r not in stale]
        granted = run_id in holders or len(holders) < limit
        if granted and run_id not in holders:
            holders.append(run_id)
        pending = None if granted and current.pending == run_id else current.pending
        new = KeyState(pending=pending, leased=holders)
        if new != current:
            KEY_STATE.save(ktx, new)
        return granted

    try:
        return await hooks.checkpoint_with(state.tx, key_ref(state.workflow, key), claim)
    except (LeaseLostError, StorageError) as exc:
        state.stop(Aborted(exc))


async def free_slot(state: RunState, hooks: TxHooks) -> None:
    """Give back the run's slot and wake the key's pending run (best effort: a slot of a
    finished run is also found free by the next claim)."""
    key = state.meta.concurrency_key
    if key is None:
        return
    run_id = state.run_id

    def free(ktx: InstanceTx) -> str | None:
        current = _key_state(ktx)
        if run_id in current.leased:
            holders = [r for r in current.leased if r != run_id]
            KEY_STATE.save(ktx, KeyState(pending=current.pending, leased=holders))
        return current.pending

    try:
        pending = await hooks.checkpoint_with(state.tx, key_ref(state.workflow, key), free)
        if pending is None or pending == run_id:
            return
        ref = run_ref(state.workflow, pending)
        snap = await hooks.peek(ref.instance_id)
        other = META.load(snap.records)
        now = state.now()
        # Only a run waiting for its next look at the key: no worker holds it long.
        if other is None or other.status != "pending" or snap.alarm_at is None:
            return
        if snap.alarm_at <= now:
            return

        def wake(ptx: InstanceTx) -> None:
            current = META.load(ptx)
            if current is not None and current.status == "pending":
                ptx.set_alarm(now)

        await hooks.checkpoint_with(state.tx, ref, wake)
    except (LeaseLostError, StorageError, ValidationError) as exc:
        _log.LOGGER.warning("%s: could not free its concurrency slot: %s", run_id, exc)
