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
from durable_effect.jobs._instance import InstanceTx

__all__ = ["JobDefinition"]


class JobDefinition(abc.ABC):
    """The runtime's view of a job definition."""

    #: ``continuous``, ``debounce``, ``task`` or ``workflow``: the first part of instance ids.
    job_type: ClassVar[str]

    @property
    @abc.abstractmethod
    def log_level(self) -> int:
        """Records below this level from the job's handlers are dropped."""

    @abc.abstractmethod
    def on_alarm(self, tx: InstanceTx, due_at: datetime) -> Effect[None, Never]:
        """Handle the instance's alarm (due at ``due_at``).

        Must not fail: every failure of user code is handled here (recorded, retried,
        reported as events) and the resulting decisions are committed. It must also leave
        the alarm moved or cleared, or the alarm fires again at once.
        """
