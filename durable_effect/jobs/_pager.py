"""Paging over index entries: opaque cursors, and filling a page from one or more scans.

Every listing (``list_runs``, ``client.instances``) is a descending keyset scan of a few
index ranges (``Storage.scan_index``), each entry checked against the instance's snapshot
read in the same page (an entry may be stale by the time it is read, a run past its
retention is hidden, several label pairs are checked here). `fill_page` reads scans of
growing size until the page is full and one more match is seen — so ``next_cursor`` is
``None`` exactly when nothing follows — or the indexes end. Its cost is the page plus the
entries it had to skip.

A cursor is the position of the last entry of a page, ``(key, instance_id)``, encoded as
``{kind}1.{base64url(json)}``: opaque to users, checked when it comes back
(``ValidationError`` naming ``after``).
"""

from __future__ import annotations

import base64
import binascii
from collections.abc import Callable, Mapping, Sequence
from typing import Final, Protocol, TypeVar

from durable_effect._codec import decode_json, encode_json
from durable_effect.errors import ValidationError
from durable_effect.storage._port import (
    MAX_INDEX_KEY,
    MAX_SCAN_INDEXES,
    IndexHit,
    InstanceSnapshot,
)

__all__ = [
    "MAX_LIMIT",
    "IndexReader",
    "Page",
    "bad",
    "check_limit",
    "decode_cursor",
    "encode_cursor",
    "fill_page",
    "scan_many",
]

T = TypeVar("T")

#: The largest page a listing returns.
MAX_LIMIT: Final = 1000
_FIRST_SCAN: Final = 16
_MAX_SCAN: Final = 1000

_MAX_ID: Final = 1024  # the longest instance id the port allows

Position = tuple[str, str]


class IndexReader(Protocol):
    """What paging reads: ordered index entries, and the snapshots of their instances."""

    async def scan_index(
        self,
        indexes: Sequence[str],
        *,
        limit: int,
        after: tuple[str, str] | None = None,
        until: str | None = None,
        descending: bool = False,
    ) -> Sequence[IndexHit]:
        """``Storage.scan_index``."""
        ...

    async def load(self, instance_ids: Sequence[str]) -> Mapping[str, InstanceSnapshot]:
        """Committed snapshots (no lease)."""
        ...


def bad(field: str, message: str) -> ValidationError:
    """A ``ValidationError`` naming ``field``."""
    return ValidationError(schema=field, message=message, path=field)


def check_limit(value: object, field: str = "limit", *, most: int | None = MAX_LIMIT) -> int:
    """An int ``>= 0`` (and ``<= most``) — ``ValidationError`` naming ``field`` otherwise."""
    if isinstance(value, bool) or not isinstance(value, int) or value < 0:
        raise bad(field, f"must be an int >= 0, got {value!r}")
    if most is not None and value > most:
        raise bad(field, f"must be at most {most}, got {value}")
    return value


def encode_cursor(kind: str, position: Position | None) -> str:
    """The opaque cursor of ``position`` (``None``: the start) for listings of ``kind``."""
    payload = encode_json([] if position is None else list(position))
    return f"{kind}1.{base64.urlsafe_b64encode(payload).decode('ascii').rstrip('=')}"


def decode_cursor(kind: str, cursor: object, prefix: str) -> Position | None:
    """The position a cursor of ``kind`` names; ``ValidationError`` (``after``) if it is not
    one, or names an instance outside ``prefix`` (another job's cursor)."""
    if not isinstance(cursor, str):
        raise bad("after", f"must be a cursor string (a page's next_cursor), got {cursor!r}")
    head = f"{kind}1."
    if not cursor.startswith(head) or len(cursor) > 8192:
        raise bad("after", f"is not a cursor of this listing: {cursor[:80]!r}")
    body = cursor[len(head) :]
    try:
        raw = base64.urlsafe_b64decode(body + "=" * (-len(body) % 4))
        value = decode_json(raw)
    except (binascii.Error, ValueError, ValidationError):
        raise bad("after", f"is not a cursor of this listing: {cursor[:80]!r}") from None
    if value == []:
        return None
    if (
        not isinstance(value, list)
        or len(value) != 2
        or not all(isinstance(part, str) for part in value)
    ):
        raise bad("after", f"is not a cursor of this listing: {cursor[:80]!r}")
    key, instance_id = str(value[0]), str(value[1])
    if len(key) > MAX_INDEX_KEY or not instance_id or len(instance_id) > _MAX_ID:
        raise bad("after", f"is not a cursor of this listing: {cursor[:80]!r}")
    if not instance_id.startswith(prefix):
        raise bad("after", "is a cursor of another listing (another job or workflow)")
    return key, instance_id


class Page(list[T]):
    """What `fill_page` found: the items; ``more`` when a match follows them, and then the
    position to resume past (``resume``; ``None``: from the start)."""

    __slots__ = ("more", "resume")

    def __init__(self) -> None:
        super().__init__()
        self.more = False
        self.resume: Position | None = None

    def next_cursor(self, kind: str) -> str | None:
        """The cursor of the next page, ``None`` when nothing follows."""
        return encode_cursor(kind, self.resume) if self.more else None


async def scan_many(
    storage: IndexReader, indexes: Sequence[str], *, limit: int, after: Position | None
) -> list[IndexHit]:
    """``scan_index`` descending over any number of indexes (in groups the port accepts)."""
    if len(indexes) <= MAX_SCAN_INDEXES:
        return list(await storage.scan_index(indexes, limit=limit, after=after, descending=True))
    found: list[IndexHit] = []
    for start in range(0, len(indexes), MAX_SCAN_INDEXES):
        group = indexes[start : start + MAX_SCAN_INDEXES]
        found.extend(await storage.scan_index(group, limit=limit, after=after, descending=True))
    found.sort(key=lambda h: (h.key, h.instance_id), reverse=True)
    return found[:limit]


async def fill_page(
    storage: IndexReader,
    indexes: Sequence[str],
    *,
    limit: int,
    skip: int = 0,
    after: Position | None,
    read: Callable[[IndexHit, InstanceSnapshot], T | None],
) -> Page[T]:
    """Up to ``limit`` items, newest first, past ``after``, ``skip`` matches skipped.

    ``read`` turns an entry and its instance's snapshot into an item, or ``None`` when it
    does not match. ``more`` is set when one more match follows the page.
    """
    page: Page[T] = Page()
    position = after
    last_kept = after
    size = max(_FIRST_SCAN, min(limit + skip + 1, _MAX_SCAN))
    while True:
        hits = await scan_many(storage, indexes, limit=size, after=position)
        if not hits:
            return page
        snapshots = await storage.load([h.instance_id for h in hits])
        for hit in hits:
            position = (hit.key, hit.instance_id)
            item = read(hit, snapshots[hit.instance_id])
            if item is None:
                continue
            if skip:
                skip -= 1
                last_kept = position
                continue
            if len(page) == limit:  # a match follows the page: it is not the last
                page.more, page.resume = True, last_kept
                return page
            page.append(item)
            last_kept = position
        if len(hits) < size:
            return page
        size = min(size * 2, _MAX_SCAN)
