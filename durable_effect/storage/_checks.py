"""Input checks every backend makes before it touches anything (``ValueError``).

One copy for memory, SQLite and PostgreSQL, so the three refuse exactly the same inputs.
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from durable_effect.storage._port import InstanceWrite, Lease

__all__ = [
    "MAX_ID_LENGTH",
    "check_id",
    "check_limit",
    "check_listing",
    "check_owner",
    "check_text",
    "instant",
    "ttl_of",
    "unique_ids",
    "validate_commit",
]

#: A stored instance id: a user id of 512 characters plus the job type and name.
MAX_ID_LENGTH: Final = 1024


def instant(value: datetime) -> datetime:
    """``value`` as an aware UTC datetime; ``ValueError`` for a naive one."""
    if value.tzinfo is None or value.utcoffset() is None:
        raise ValueError(f"instants must be aware datetimes, got naive {value!r}")
    return value.astimezone(UTC)


def ttl_of(ttl: timedelta) -> timedelta:
    """A lease duration, which must be positive."""
    if ttl <= timedelta(0):
        raise ValueError(f"ttl must be positive, got {ttl!r}")
    return ttl


def check_text(text: str, what: str) -> None:
    """Refuse strings that are not valid unicode (lone surrogates)."""
    try:
        text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ValueError(f"{what} {text!r} is not valid unicode text") from exc


def check_owner(owner: str) -> None:
    """A lease owner: valid unicode without NUL."""
    check_text(owner, "owner")
    if "\x00" in owner:
        raise ValueError(f"owners are strings without NUL, got {owner!r}")


def check_id(instance_id: str) -> str:
    """An instance id: non-empty, at most 1024 characters, no NUL, valid unicode."""
    if not instance_id:
        raise ValueError(f"instance ids are non-empty strings, got {instance_id!r}")
    if len(instance_id) > MAX_ID_LENGTH or "\x00" in instance_id:
        raise ValueError(f"instance ids have at most 1024 characters and no NUL: {instance_id!r}")
    check_text(instance_id, "instance id")
    return instance_id


def check_limit(limit: int | None) -> None:
    """``ValueError`` for a negative ``limit`` (``None`` means no limit)."""
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")


def check_listing(prefix: str, after: str | None, limit: int | None) -> None:
    """The arguments of ``list_instances``: a text ``prefix`` and ``after``, a limit >= 0."""
    check_limit(limit)
    check_text(prefix, "prefix")
    if after is not None:
        check_text(after, "after")


def unique_ids(instance_ids: Iterable[str]) -> list[str]:
    """Checked ids, refusing repeats."""
    ids = [check_id(i) for i in instance_ids]
    if len(set(ids)) != len(ids):
        raise ValueError(f"instance ids repeat in {ids!r}")
    return ids


def validate_commit(leases: Sequence[Lease], writes: Sequence[InstanceWrite]) -> None:
    """Every write covered by a lease, keys and values of the right kind, aware alarms."""
    covered = {lease.instance_id for lease in leases}
    for write in writes:
        check_id(write.instance_id)
        if write.instance_id not in covered:
            raise ValueError(f"write for {write.instance_id!r} is not covered by a lease")
        for key in (*write.puts, *write.deletes):
            if "\x00" in key:
                raise ValueError(f"record keys are strings without NUL, got {key!r}")
            check_text(key, "record key")
        for value in write.puts.values():
            if not isinstance(value, bytes | bytearray | memoryview):
                raise ValueError(f"record values are bytes, got {type(value).__name__}")
        if isinstance(write.alarm, datetime):
            instant(write.alarm)
