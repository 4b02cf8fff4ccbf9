"""`RunPage`: one page of ``list_runs`` — a list of runs with the cursor of the next page.

A `RunPage` *is* a ``list[Run[I, O]]`` (so code written when ``list_runs`` returned a list
keeps working, at run time and under mypy) with one more attribute, ``next_cursor``: the
opaque ``after=`` of the next page, ``None`` exactly when nothing follows.
"""

from __future__ import annotations

from collections.abc import Iterable
from typing import Generic, TypeVar

from durable_effect.workflow._results import Run

__all__ = ["RunPage"]

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741


class RunPage(list[Run[I, O]], Generic[I, O]):
    """Runs newest first, and ``next_cursor`` (``None`` on the last page).

    >>> page = RunPage([], next_cursor=None)
    >>> page == [], page.next_cursor
    (True, None)
    """

    __slots__ = ("next_cursor",)

    def __init__(self, runs: Iterable[Run[I, O]] = (), *, next_cursor: str | None = None) -> None:
        super().__init__(runs)
        self.next_cursor: str | None = next_cursor

    def __repr__(self) -> str:
        return f"RunPage({list.__repr__(self)}, next_cursor={self.next_cursor!r})"
