"""The files of a `SqliteStorage` on disk: created private, and watched while open.

* `create_private` makes a new database file readable and writable by its owner only
  (``0600``) before SQLite opens it; SQLite then creates the ``-wal`` and ``-shm`` files with
  the database file's permissions, so they are ``0600`` too. An existing file is left as it
  is.
* `FileWatch` remembers which files the storage opened: the database (its device and
  inode) and its ``-wal`` (a descriptor of its own). SQLite keeps writing through its open
  descriptors whatever happens to the names: with the directory removed, the file moved
  away, or another file put in its place, commits "succeed" into a file nobody will ever
  open again. `FileWatch.problem` compares the path's device and inode with the opened
  file's (a ``stat`` of the path) and checks that the ``-wal`` it opened still has a name
  (an ``fstat``: removing or replacing it unlinks it), so the storage can check after
  every write transaction — before it reports anything committed — and refuse every call
  once the files are not the ones it opened. The check costs ~4 µs here (a path ``stat``
  is ~3 µs on this VM; see ``docs/storage.md``).

  The descriptor on the ``-wal`` is safe to hold and to close: SQLite takes no POSIX locks
  on that file (WAL locks live in the ``-shm``), so closing it releases none of SQLite's.
"""

from __future__ import annotations

import os
from typing import Final

from durable_effect.errors import StorageError

__all__ = ["FileWatch", "create_private"]

#: Permissions of a new database file (and so of its ``-wal`` and ``-shm``).
PRIVATE: Final = 0o600


def create_private(path: str) -> None:
    """Create ``path`` as an empty file with mode ``0600`` unless something is there.

    An empty file is a valid empty database. ``StorageError`` naming the path when it cannot
    be created (a missing directory, no permission); losing a race with another process
    creating it is fine.
    """
    try:
        fd = os.open(path, os.O_RDWR | os.O_CREAT | os.O_EXCL | os.O_NOFOLLOW, PRIVATE)
    except FileExistsError:
        return
    except OSError as exc:
        if os.path.exists(path):  # e.g. a symlink to an existing file: SQLite opens it
            return
        raise StorageError(
            operation="open", cause=f"cannot create the database file {path!r}: {exc.strerror}"
        ) from exc
    os.close(fd)


def _identity(path: str) -> tuple[int, int] | None:
    try:
        stat = os.stat(path)
    except OSError:
        return None
    return stat.st_dev, stat.st_ino


class FileWatch:
    """The database file and ``-wal`` a storage opened, to tell when the paths change.

    Built right after the connections are open (the files exist then: a connection in WAL
    mode keeps its ``-wal`` for as long as it is open); `close` when they are closed.
    """

    __slots__ = ("_db", "_wal", "path", "wal_path")

    def __init__(self, path: str) -> None:
        self.path: Final = path
        self.wal_path: Final = os.path.realpath(path) + "-wal"  # SQLite follows symlinks
        db = _identity(path)
        if db is None:
            raise StorageError(
                operation="open", cause=f"the database file {path!r} vanished while opening"
            )
        self._db = db
        try:
            self._wal: int | None = os.open(self.wal_path, os.O_RDONLY | os.O_CLOEXEC)
        except OSError:
            self._wal = None  # no -wal to watch (never expected in WAL mode)

    def close(self) -> None:
        """Close the descriptor held on the ``-wal`` (idempotent)."""
        wal, self._wal = self._wal, None
        if wal is not None:
            os.close(wal)

    def problem(self) -> str | None:
        """What is wrong with the paths now (``None``: they hold the files that were opened)."""
        now = _identity(self.path)
        if now != self._db:
            what = (
                "no file is at that path any more (its directory or the file was removed or moved)"
                if now is None
                else "another file is at that path now"
            )
            return (
                f"the database file {self.path!r} is not the file this storage opened: {what};"
                " every call fails from now on"
            )
        if self._wal is not None and os.fstat(self._wal).st_nlink == 0:
            return (
                f"the write-ahead log {self.wal_path!r} of the database {self.path!r} was"
                " removed or replaced while open; every call fails from now on"
            )
        return None
