"""Input checks every backend makes before it touches anything (``ValueError``).

One copy for memory, SQLite and PostgreSQL, so the three refuse exactly the same inputs; and
`prefix_upper`, the bound both SQL backends turn a ``list_instances`` prefix into.
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime, timedelta
from typing import Final

from durable_effect.storage._port import (
    FEED_ENTRY_MAX,
    MAX_INDEX_ENTRIES,
    MAX_INDEX_KEY,
    MAX_INDEX_NAME,
    MAX_SCAN_INDEXES,
    InstanceWrite,
    Keep,
    Lease,
)

__all__ = [
    "prefix_upper",
    "MAX_ID_LENGTH",
    "MAX_INDEX_ENTRIES",
    "MAX_INDEX_KEY",
    "MAX_INDEX_NAME",
    "MAX_SCAN_INDEXES",
    "check_feed",
    "check_feed_read",
    "check_id",
    "check_index",
    "check_index_key",
    "check_index_name",
    "check_indexes",
    "check_scan",
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


def check_index_name(name: object) -> str:
    """An index name: a non-empty str of at most 256 characters, no NUL, valid unicode."""
    if not isinstance(name, str) or not name:
        raise ValueError(f"index names are non-empty strings, got {name!r}")
    if len(name) > MAX_INDEX_NAME or "\x00" in name:
        raise ValueError(f"index names have at most {MAX_INDEX_NAME} characters and no NUL")
    check_text(name, "index name")
    return name


def check_index_key(key: object) -> str:
    """An index key: a str of at most 128 characters (empty allowed), no NUL, valid unicode."""
    if not isinstance(key, str):
        raise ValueError(f"index keys are strings, got {type(key).__name__}")
    if len(key) > MAX_INDEX_KEY or "\x00" in key:
        raise ValueError(f"index keys have at most {MAX_INDEX_KEY} characters and no NUL")
    check_text(key, "index key")
    return key


def check_index(write: InstanceWrite) -> list[tuple[str, str]] | None:
    """The ``(name, key)`` entries a write sets (sorted by name), ``None`` for ``KEEP``."""
    index = write.index
    if isinstance(index, Keep):
        return None
    if not isinstance(index, Mapping):
        raise ValueError(f"index must be a mapping of index names to keys or KEEP, got {index!r}")
    if len(index) > MAX_INDEX_ENTRIES:
        raise ValueError(f"an instance has at most {MAX_INDEX_ENTRIES} index entries")
    return sorted((check_index_name(n), check_index_key(k)) for n, k in index.items())


def check_scan(
    indexes: Sequence[str], limit: int, after: tuple[str, str] | None, until: str | None
) -> list[str]:
    """The arguments of ``scan_index``: the distinct index names, in the given order."""
    names = check_indexes(indexes)
    given: object = limit
    if isinstance(given, bool) or not isinstance(given, int) or limit < 0:
        raise ValueError(f"limit must be an int >= 0, got {limit!r}")
    if after is not None:
        pair: object = after
        if not isinstance(pair, tuple) or len(pair) != 2:
            raise ValueError(f"after must be a (key, instance_id) pair, got {after!r}")
        check_index_key(after[0])
        check_id(after[1])
    if until is not None:
        check_index_key(until)
    return names


def check_indexes(indexes: Sequence[str]) -> list[str]:
    """Index names for a scan or a count: at most 256, each checked, repeats dropped."""
    if isinstance(indexes, str) or not isinstance(indexes, Sequence):
        raise ValueError(f"indexes must be a sequence of index names, got {indexes!r}")
    names = list(dict.fromkeys(check_index_name(n) for n in indexes))
    if len(names) > MAX_SCAN_INDEXES:
        raise ValueError(f"at most {MAX_SCAN_INDEXES} indexes per scan or count")
    return names


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
        check_index(write)


def check_feed(feed: Sequence[bytes], retain: int) -> list[bytes]:
    """A commit's feed entries as ``bytes`` (``ValueError`` for another type or one too
    large); only the newest ``retain`` of them, since older ones would be trimmed at once."""
    if isinstance(feed, bytes | bytearray | memoryview | str):
        raise ValueError("feed is a sequence of bytes entries, not one value")
    out: list[bytes] = []
    for entry in feed:
        if not isinstance(entry, bytes | bytearray | memoryview):
            raise ValueError(f"feed entries are bytes, got {type(entry).__name__}")
        data = bytes(entry)
        if len(data) > FEED_ENTRY_MAX:
            raise ValueError(f"a feed entry has at most {FEED_ENTRY_MAX} bytes, got {len(data)}")
        out.append(data)
    return out[-retain:] if len(out) > retain else out


def check_feed_read(after: int, limit: int) -> None:
    """The arguments of ``read_feed``: ``after`` an int >= 0, ``limit`` an int >= 1."""
    given: tuple[tuple[str, object, int], ...] = (("after", after, 0), ("limit", limit, 1))
    for name, value, least in given:
        if isinstance(value, bool) or not isinstance(value, int) or value < least:
            raise ValueError(f"{name} must be an int >= {least}, got {value!r}")


def prefix_upper(prefix: str) -> str | None:
    """The least string above every string starting with ``prefix`` (code point order).

    A prefix scan is ``prefix <= id < prefix_upper(prefix)``, without the upper bound when
    it is ``None`` (every character of ``prefix`` is the last code point).

    >>> prefix_upper("task:a:"), prefix_upper("a\\U0010ffff"), prefix_upper("\\ud7ff")
    ('task:a;', 'b', '\\ue000')
    """
    chars = list(prefix)
    while chars:
        code = ord(chars[-1]) + 1
        if code <= 0x10FFFF:
            chars[-1] = chr(0xE000 if 0xD800 <= code <= 0xDFFF else code)
            return "".join(chars)
        chars.pop()
    return None
