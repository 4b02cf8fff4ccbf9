"""`Checkpoints`: the commits an execution makes under its lease, guarded by the cancel flag.

Every completed step (and the run's end) is committed at once, atomically with a check of
the run's cancel request: a commit guard on the ``wfcancel:…`` record, checked in the same
storage commit, so a step that finishes after a cancel is never recorded. The request is
never read or leased apart from that.

The execution's start (``leased``, ``attempt``, ``started_at``, ``run:leased``) is buffered,
not committed: it goes with the first checkpoint — just before the first step's effect runs
(``announce``), or with the run's end or sleep when none comes first. When that first
checkpoint is refused by a cancel request, the execution leaves no trace (``unstart``): the
run is cancelled as it was, like a run no worker holds.

A commit refused because the lease was lost (another worker took the run over) or because
storage failed ends the execution with ``Aborted``: nothing more is committed.

``commit_or_cancel`` is the run's *step boundary*: every step operation that commits passes
through it (a deadline check belongs there too).
"""

from __future__ import annotations

from collections.abc import Sequence

from durable_effect._events import Event
from durable_effect.errors import LeaseLostError, StorageError
from durable_effect.jobs._instance import TxHooks
from durable_effect.storage._port import GuardFailed
from durable_effect.workflow._records import CANCEL_KEY, RunMeta, cancel_ref
from durable_effect.workflow._run_state import Aborted, Cancelled, Mark, RunState

__all__ = ["Checkpoints"]


class Checkpoints:
    """The commits of one execution of one run (see the module docstring)."""

    def __init__(self, state: RunState, hooks: TxHooks) -> None:
        self.state = state
        self.hooks = hooks
        flag = cancel_ref(state.workflow, state.run_id)
        self._cancel_guard = ((flag.instance_id, CANCEL_KEY),)
        # While the start is buffered but not committed: where the buffer stood before
        # it, and the metadata before it.
        self.unstarted: tuple[Mark, RunMeta] | None = None

    # -- the start --------------------------------------------------------------------------------

    def start(self, meta: RunMeta, event: Event) -> None:
        """Buffer the execution's start (``meta``: the leased metadata, ``event``: its
        ``run:leased``); it is committed with the first checkpoint."""
        state = self.state
        self.unstarted = (state.mark(), state.meta)
        state.save(meta)
        state.emit(event)

    def unstart(self) -> None:
        """The first checkpoint was refused by a cancel request: forget everything this
        execution buffered, its start included."""
        assert self.unstarted is not None
        mark, meta = self.unstarted
        self.state.undo(mark)
        self.state.meta = meta
        self.unstarted = None

    async def announce(self) -> None:
        """Commit the start if it is not yet: a step's effect is about to run (so while it
        runs the run shows ``leased``, and a crash of the worker counts)."""
        if self.unstarted is not None:
            await self.commit_or_cancel(self.state.mark(), None, None)

    # -- commits ----------------------------------------------------------------------------------

    async def commit(self, *, release: bool = False) -> None:
        """Commit what is buffered, unguarded (fenced by the lease); ``release``: the last."""
        try:
            await self.hooks.checkpoint(self.state.tx, release=release)
        except (LeaseLostError, StorageError) as exc:
            self.state.stop(Aborted(exc))
        self.unstarted = None

    async def commit_unless_cancelled(self, *, release: bool = False) -> bool:
        """Commit what is buffered unless a cancel was requested (then commit nothing).

        ``False`` when a cancel request refused the commit (one round trip: the guard is
        checked by the commit itself). ``release``: the run's last commit.
        """
        return await self.commit_guarded(release=release) is None

    async def commit_guarded(
        self, also: Sequence[tuple[str, str]] = (), *, release: bool = False
    ) -> GuardFailed | None:
        """Commit what is buffered unless a cancel was requested or one of the records
        ``also`` exists (then commit nothing and give the refusal: ``is_cancel`` tells)."""
        try:
            await self.hooks.checkpoint(
                self.state.tx, unless_present=(*self._cancel_guard, *also), release=release
            )
        except GuardFailed as refused:
            return refused
        except (LeaseLostError, StorageError) as exc:
            self.state.stop(Aborted(exc))
        self.unstarted = None
        return None

    def is_cancel(self, refused: GuardFailed) -> bool:
        """Whether a refused commit was refused by the run's cancel request."""
        return (refused.instance_id, refused.key) == self._cancel_guard[0]

    async def commit_or_cancel(self, mark: Mark, step: str | None, index: int | None) -> None:
        """A step boundary: commit unless cancelled. Refused by a cancel request, what was
        buffered since ``mark`` is dropped and ``Cancelled`` ends the execution
        (``Cancelled(None, None)`` when it was the execution's first checkpoint)."""
        state = self.state
        try:
            committed = await self.commit_unless_cancelled()
        except Aborted:
            state.drop_events(mark)
            raise
        if committed:
            return
        state.undo(mark)
        if self.unstarted is not None:
            self.unstart()
            step, index = None, None
        state.stop(Cancelled(step, index))
