"""`Versions`: running a run's history under code that changed — the replay check and
``step.patched``.

Every step a run reaches (``step.run``, a sleep, an event wait, a child run) takes the next
*position*: the first time the code reaches a name in an execution, it is compared with the
step recorded at that position (the run's step records in index order, whatever their
status). Different names:

* when the run has a completed or unfinished (sleeping, retrying) step at that position or
  later, its history no longer fits the code: the run ends ``failed`` with
  ``NonDeterminismError(run_id, step, expected, found)`` (``expected`` the recorded name,
  ``found`` the code's) instead of re-running renamed steps silently;
* when only *failed* steps are recorded from there on (a failed run resumed under fixed
  code), those records are dropped and the code's steps run from that position.

``step.patched(name)`` is ``False`` exactly when the run already has completed (or
unfinished) steps recorded at the position where the call stands or later — it passed that
point under older code — and ``True`` otherwise. The answer is recorded (``RunMeta.patches``,
with its position, committed with the run's next checkpoint) and given again on every
replay. Patch markers take no position.
"""

from __future__ import annotations

import attrs

from durable_effect.errors import NonDeterminismError
from durable_effect.workflow._records import PatchMark, StepRec, load_steps, step_key
from durable_effect.workflow._run_state import Diverged, RunState

__all__ = ["Versions"]


class Versions:
    """The replay check and the patch markers of one execution (module docstring)."""

    def __init__(self, state: RunState) -> None:
        self.state = state
        #: The run's step records in the order they were first reached.
        self.order: list[StepRec] = load_steps(state.tx.records())
        #: How many distinct steps the code reached in this execution (the next position).
        self.reached = 0
        self._seen: set[str] = set()

    def _kept(self, position: int) -> bool:
        """Whether a step that is not failed is recorded at ``position`` or later."""
        return any(rec.status != "failed" for rec in self.order[position:])

    def reach(self, name: str) -> None:
        """The code reaches step ``name``: check it against the history (module docstring)."""
        if name in self._seen:
            return  # a repeated name gives the first step's record
        self._seen.add(name)
        position = self.reached
        self.reached += 1
        if position >= len(self.order) or self.order[position].name == name:
            return
        state = self.state
        recorded = self.order[position]
        if self._kept(position):
            error = NonDeterminismError(
                run_id=state.run_id, step=position, expected=recorded.name, found=name
            )
            state.evolve(failed_step=recorded.name)
            state.stop(Diverged(error))
        for rec in self.order[position:]:  # failed steps only: the code goes its own way
            state.tx.delete(step_key(rec.index))
            known = state.steps.get(rec.name)
            if known is not None and known.index == rec.index:
                del state.steps[rec.name]
        del self.order[position:]
        state.evolve(next_index=recorded.index)

    def patched(self, name: str) -> bool:
        """``step.patched(name)`` (module docstring)."""
        state = self.state
        state.check_open(f"patched {name!r}")
        for mark in state.meta.patches:
            if mark.name == name:
                return mark.value
        position = self.reached
        value = not self._kept(position)
        mark = PatchMark(name=name, value=value, position=position)
        state.save(attrs.evolve(state.meta, patches=[*state.meta.patches, mark]))
        return value
