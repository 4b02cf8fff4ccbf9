"""What every job definition gives the runtime: its type, its log level, its alarm handler.

A definition is a frozen value made by ``Continuous.make`` / ``Debounce.make`` /
``Task.make``; it carries no name (the registry's key names it). Client operations are
methods of the concrete definitions, each a function of an ``InstanceTx`` returning an
``Effect``; the runtime runs it under the instance's lease and commits the buffered writes
if (and only if) the effect succeeds.
"""

from __future__ import annotations

import abc
from datetime import datetime
from typing import ClassVar, Never

from durable_effect._effect import Effect
from durable_effect.jobs._instance import Indexer, InstanceTx

__all__ = ["JobDefinition"]


class JobDefinition(abc.ABC):
    """The runtime's view of a job definition."""

    #: ``continuous``, ``debounce``, ``task`` or ``workflow``: the first part of instance ids.
    job_type: ClassVar[str]

    @property
    @abc.abstractmethod
    def log_level(self) -> int:
        """Records below this level from the job's handlers are dropped."""

    def indexer(self, name: str) -> Indexer | None:
        """What index entries the job's instances get when registered as ``name`` (none by
        default). The runtime commits them with the records they depend on."""
        return None

    def index_version(self) -> str:
        """Changes whenever the entries the indexer gives change (a rebuild is then due)."""
        return "1"

    def meta_alarm(self, now: datetime) -> datetime | None:
        """The alarm the job's bookkeeping instance needs when it has none (none by
        default; workflows with ``retain``: the retention sweep, at once)."""
        return None

    def on_meta_alarm(self, tx: InstanceTx, due_at: datetime) -> Effect[None, Never]:
        """Handle the alarm of the job's bookkeeping instance ``tx`` (by default: drop it)."""
        tx.set_alarm(None)
        return Effect.succeed(None)

    @abc.abstractmethod
    def on_alarm(self, tx: InstanceTx, due_at: datetime) -> Effect[None, Never]:
        """Handle the instance's alarm (due at ``due_at``).

        Must not fail: every failure of user code is handled here (recorded, retried,
        reported as events) and the resulting decisions are committed. It must also leave
        the alarm moved or cleared, or the alarm fires again at once.
        """
