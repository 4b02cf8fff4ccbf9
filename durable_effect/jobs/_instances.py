"""`InstanceInfo` and `InstancePage`: what ``client.instances(...)`` lists.

An `InstancePage` *is* a ``list[InstanceInfo]`` with ``next_cursor`` (the opaque ``after=``
of the next page, ``None`` exactly when nothing follows), like ``RunPage``.
"""

from __future__ import annotations

from collections.abc import Iterable
from datetime import datetime

import attrs

__all__ = ["InstanceInfo", "InstancePage"]


@attrs.frozen(kw_only=True)
class InstanceInfo:
    """One job instance: who it is, its status, its alarm and when it was created.

    ``status`` is what the job's ``status()`` says: ``running``/``paused`` (Continuous),
    ``debouncing`` (Debounce, while a batch is open), ``active``/``idle`` (Task).
    ``created_at`` is when the instance (for Debounce: its open batch) was created.
    """

    instance_id: str
    id: str
    job_type: str
    job_name: str
    status: str
    next_alarm_at: datetime | None
    created_at: datetime


class InstancePage(list[InstanceInfo]):
    """Instances newest first, and ``next_cursor`` (``None`` on the last page).

    >>> page = InstancePage([], next_cursor=None)
    >>> page == [], page.next_cursor
    (True, None)
    """

    __slots__ = ("next_cursor",)

    def __init__(
        self, instances: Iterable[InstanceInfo] = (), *, next_cursor: str | None = None
    ) -> None:
        super().__init__(instances)
        self.next_cursor: str | None = next_cursor

    def __repr__(self) -> str:
        return f"InstancePage({list.__repr__(self)}, next_cursor={self.next_cursor!r})"
