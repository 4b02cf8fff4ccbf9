"""Storage backends behind the `Storage` port, and `open_storage` to pick one by URL.

>>> open_storage("memory://")
MemoryStorage()
>>> open_storage("sqlite:///jobs.db?synchronous=normal")
SqliteStorage('jobs.db', synchronous='normal')
>>> open_storage("sqlite:////var/lib/app/jobs.db")
SqliteStorage('/var/lib/app/jobs.db', synchronous='full')
>>> open_storage("redis://localhost")
Traceback (most recent call last):
    ...
ValueError: unsupported storage URL 'redis://localhost': use memory://, sqlite:/// or postgresql://
"""

from __future__ import annotations

import importlib
from typing import Literal
from urllib.parse import parse_qsl, unquote, urlsplit

from durable_effect.storage._memory import MemoryStorage
from durable_effect.storage._port import (
    KEEP,
    Acquired,
    AlarmChange,
    Claimed,
    FeedEntry,
    IndexHit,
    InstanceSnapshot,
    InstanceWrite,
    Keep,
    Lease,
    Storage,
)
from durable_effect.storage._postgres import PostgresStorage
from durable_effect.storage._sqlite import SqliteStorage

__all__ = [
    "KEEP",
    "Acquired",
    "AlarmChange",
    "Claimed",
    "IndexHit",
    "FeedEntry",
    "InstanceSnapshot",
    "InstanceWrite",
    "Keep",
    "Lease",
    "MemoryStorage",
    "PostgresStorage",
    "SqliteStorage",
    "Storage",
    "open_storage",
]

_POSTGRES_HINT = "install the PostgreSQL extra: pip install durable_effect[postgres]"


def open_storage(url: str | Storage) -> Storage:
    """The backend a URL names, not yet opened (a `Storage` passes through unchanged).

    * ``memory://`` — a fresh `MemoryStorage`.
    * ``sqlite:///relative/path.db``, ``sqlite:////absolute/path.db`` — a `SqliteStorage`
      (three slashes, then the path; percent-escapes are decoded). The query may set
      ``synchronous=full`` (the default) or ``synchronous=normal``.
    * ``postgresql://…`` / ``postgres://…`` — a ``PostgresStorage`` (needs the ``postgres``
      extra).

    Raises ``ValueError`` naming the URL for an unknown scheme or a bad parameter.
    """
    if isinstance(url, Storage):
        return url
    parts = urlsplit(url)
    scheme = parts.scheme.lower()
    if scheme == "memory":
        if parts.netloc or parts.path or parts.query or parts.fragment:
            raise ValueError(f"the memory storage URL takes nothing after memory://, got {url!r}")
        return MemoryStorage()
    if scheme == "sqlite":
        return _sqlite_from_url(url)
    if scheme in ("postgresql", "postgres"):
        return _postgres_from_url(url)
    raise ValueError(f"unsupported storage URL {url!r}: use memory://, sqlite:/// or postgresql://")


def _sqlite_from_url(url: str) -> SqliteStorage:
    parts = urlsplit(url)
    if parts.netloc or not parts.path.startswith("/") or len(parts.path) < 2 or parts.fragment:
        raise ValueError(
            f"bad SQLite URL {url!r}: write sqlite:///relative/path.db or sqlite:////abs/path.db"
        )
    synchronous: Literal["full", "normal"] = "full"
    for name, value in parse_qsl(parts.query, keep_blank_values=True):
        if name != "synchronous":
            raise ValueError(f"bad SQLite URL {url!r}: unknown parameter {name!r}")
        if value.lower() == "full":
            synchronous = "full"
        elif value.lower() == "normal":
            synchronous = "normal"
        else:
            raise ValueError(
                f"bad SQLite URL {url!r}: synchronous must be full or normal, got {value!r}"
            )
    try:
        return SqliteStorage(unquote(parts.path[1:]), synchronous=synchronous)
    except ValueError as exc:
        raise ValueError(f"bad SQLite URL {url!r}: {exc}") from exc


def _postgres_from_url(url: str) -> Storage:
    try:
        module = importlib.import_module("durable_effect.storage._postgres")
    except ImportError as exc:
        raise ImportError(f"cannot open {_redact(url)!r}: {exc}; {_POSTGRES_HINT}") from exc
    storage = module.PostgresStorage(url)
    if not isinstance(storage, Storage):
        raise TypeError(f"PostgresStorage({_redact(url)!r}) is not a Storage")
    return storage


def _redact(url: str) -> str:
    """``url`` without its password."""
    parts = urlsplit(url)
    if parts.password is None:
        return url
    netloc = parts.netloc.replace(f":{parts.password}@", ":***@", 1)
    return parts._replace(netloc=netloc).geturl()
