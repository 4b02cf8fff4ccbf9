"""The Python side of `PostgresStorage`'s values: checks, parameters, rows, URLs.

Pure functions and small classes, no I/O: the checks made before anything is sent (kept
identical to `MemoryStorage`'s, plus what PostgreSQL ``text`` cannot hold), the folding of a
commit's writes into the array parameters of ``commit_writes``, and the grouping of result
rows into snapshots.
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Sequence
from datetime import UTC, datetime
from typing import Any
from urllib.parse import urlsplit

from durable_effect.errors import LeaseLostError
from durable_effect.storage._checks import (
    check_id,
    check_index,
    check_owner,
    check_text,
    instant,
    ttl_of,
    unique_ids,
    validate_commit,
)
from durable_effect.storage._port import InstanceSnapshot, InstanceWrite, Keep, Lease

__all__ = [
    "Found",
    "Plan",
    "check_id",
    "check_owner",
    "check_text",
    "group",
    "instant",
    "lease_lost",
    "redact",
    "storable",
    "ttl_of",
    "unique_ids",
    "utc",
    "validate_commit",
]


class Found:
    """What the rows of one instance say: generation (0 for plain reads), alarm, records."""

    __slots__ = ("alarm_at", "generation", "records")

    def __init__(self, generation: int, alarm_at: datetime | None) -> None:
        self.generation = generation
        self.alarm_at = alarm_at
        self.records: dict[str, bytes] = {}

    def snapshot(self, instance_id: str) -> InstanceSnapshot:
        return InstanceSnapshot(
            instance_id=instance_id, records=self.records, alarm_at=self.alarm_at
        )


def group(rows: Iterable[tuple[Any, ...]]) -> dict[str, Found]:
    """Rows ``(instance_id, generation, due_at, key, value)`` by instance, in first-seen order."""
    found: dict[str, Found] = {}
    for instance_id, generation, due_at, key, value in rows:
        got = found.get(instance_id)
        if got is None:
            alarm_at = None if due_at is None else utc(due_at)
            got = found[instance_id] = Found(int(generation or 0), alarm_at)
        if key is not None:
            got.records[key] = bytes(value)
    return found


class Plan:
    """The writes of one commit folded per instance into the arrays ``commit_writes`` takes.

    Several writes to one instance apply in order (each one's purge, deletes, puts, alarm,
    index), so they fold into one: a purge forgets what came before it, a delete cancels an
    earlier put, the last alarm change and the last index set win (a purge sets an empty
    one). ``index_ids`` are the instances whose entries are replaced by ``entry_*``.
    """

    def __init__(self, writes: Sequence[InstanceWrite]) -> None:
        purges: set[str] = set()
        deletes: dict[str, set[str]] = {}
        puts: dict[str, dict[str, bytes]] = {}
        alarms: dict[str, datetime | None] = {}
        indexes: dict[str, list[tuple[str, str]]] = {}
        for write in writes:
            i = write.instance_id
            if write.purge:
                purges.add(i)
                deletes.pop(i, None)
                puts.pop(i, None)
                indexes[i] = []
            for key in write.deletes:
                puts.get(i, {}).pop(key, None)
                deletes.setdefault(i, set()).add(key)
            for key, value in write.puts.items():
                puts.setdefault(i, {})[key] = bytes(value)
            if not isinstance(write.alarm, Keep):
                alarms[i] = None if write.alarm is None else instant(write.alarm)
            entries = check_index(write)
            if entries is not None:
                indexes[i] = entries
        self.purge_ids = sorted(purges)
        self.index_ids = sorted(indexes)
        rows = [(i, name, key) for i in self.index_ids for name, key in indexes[i]]
        self.entry_ids = [i for i, _, _ in rows]
        self.entry_names = [name for _, name, _ in rows]
        self.entry_keys = [key for _, _, key in rows]
        dropped = [
            (i, key)
            for i, keys in deletes.items()
            if i not in purges
            for key in sorted(keys)
            if key not in puts.get(i, {})
        ]
        self.delete_ids = [i for i, _ in dropped]
        self.delete_keys = [key for _, key in dropped]
        put_rows = [
            (i, key, value) for i, records in puts.items() for key, value in records.items()
        ]
        self.put_ids = [i for i, _, _ in put_rows]
        self.put_keys = [key for _, key, _ in put_rows]
        self.put_values = [value for _, _, value in put_rows]
        self.alarm_ids = list(alarms)
        self.alarm_ats = list(alarms.values())


def utc(value: datetime) -> datetime:
    return value.astimezone(UTC)


def lease_lost(lease: Lease) -> LeaseLostError:
    return LeaseLostError(
        instance_id=lease.instance_id, owner=lease.owner, generation=lease.generation
    )


def storable(text: str) -> bool:
    """Whether ``text`` can be a PostgreSQL ``text`` value (no NUL, valid unicode)."""
    if "\x00" in text:
        return False
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        return False
    return True


def redact(url: str) -> str:
    """``url`` (a URL or a ``key=value`` conninfo string) without its password."""
    if "://" not in url:
        return re.sub(r"(password\s*=\s*)('(?:[^'\\]|\\.)*'|\S+)", r"\1***", url)
    try:
        parts = urlsplit(url)
        password = parts.password
    except ValueError:
        return url
    if password is None:
        return url
    netloc = parts.netloc.replace(f":{password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
