"""The CLI's app and storage: loading ``module:attribute``, opening storage, reporting why not.

A failure to open storage is one line naming the URL (password hidden) and exit code 4,
whatever the cause (a missing directory, a file that is not SQLite, a refused PostgreSQL
connection); a URL the library cannot use at all is a usage error (exit 2).
"""

from __future__ import annotations

import contextlib
import importlib
import os
import re
import sys
from collections.abc import AsyncIterator
from urllib.parse import urlsplit

from durable_effect._jobs import DurableJobs, default_storage_url
from durable_effect.errors import StorageError
from durable_effect.storage import PostgresStorage, SqliteStorage, Storage, open_storage
from durable_effect.storage._postgres_values import redact

__all__ = ["CliError", "load_app", "opened", "storage_from_url", "storage_label"]

#: Exit code of a storage that cannot be opened or used.
STORAGE_FAILED = 4
USAGE = 2


class CliError(Exception):
    """A user-facing CLI failure: a message for stderr and the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def one_line(text: str) -> str:
    """``text`` with its line breaks and runs of blanks collapsed to single spaces."""
    return " ".join(text.split())


def hide_password(url: str) -> str:
    """``url`` with any password (in the authority or a ``password=`` parameter) as ``***``.

    >>> hide_password("postgresql://app:s3cret@db/jobs?sslmode=require&password=x")
    'postgresql://app:***@db/jobs?sslmode=require&password=***'
    """
    return re.sub(r"(?i)(password=)[^&\s]*", r"\1***", redact(url))


def _password(url: str) -> str | None:
    try:
        return urlsplit(url).password
    except ValueError:
        return None


def storage_label(storage: Storage) -> str:
    """The URL naming ``storage`` in messages (no password)."""
    if isinstance(storage, SqliteStorage):
        return f"sqlite:///{storage.path}"
    if isinstance(storage, PostgresStorage):
        return hide_password(storage.url)
    return repr(storage)


def _without_password(url: str, text: str) -> str:
    """``text`` (a message about ``url``) on one line, with the URL's password as ``***``."""
    password = _password(url)
    return one_line(hide_password(text if not password else text.replace(password, "***")))


def storage_from_url(url: str) -> Storage:
    """``open_storage(url)``; an unusable URL is a usage error, a missing driver exit 4 (the
    message names the URL, its password hidden)."""
    try:
        return open_storage(url)
    except ValueError as exc:
        raise CliError(_without_password(url, str(exc)), USAGE) from None
    except ImportError as exc:
        reason = _without_password(url, str(exc))
        raise CliError(
            f"cannot open storage {hide_password(url)}: {reason}", STORAGE_FAILED
        ) from None


def load_app(spec: str, storage: str | None = None) -> DurableJobs:
    """Import ``module:attribute`` and check it is a ``DurableJobs`` (or a factory of one).

    With ``storage``, the same definitions are registered on that storage URL instead.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise CliError(f"APP must look like 'package.module:attribute', got {spec!r}", USAGE)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"cannot import {module_name!r}: {exc}", USAGE) from None
    target: object = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise CliError(f"{module_name!r} has no attribute {attribute!r}", USAGE)
        target = getattr(target, part)
    if callable(target) and not isinstance(target, DurableJobs):
        target = target()
    if not isinstance(target, DurableJobs):
        raise CliError(
            f"{spec} is a {type(target).__name__}, not a DurableJobs (made by create_durable_jobs)",
            USAGE,
        )
    if storage is None:
        return target
    return DurableJobs(
        dict(target.registry),
        storage=storage_from_url(storage),
        clock=target.clock,
        tracker=target.bus.trackers,
        event_feed=target.engine.feed,
    )


def migrate_target(url: str | None) -> Storage:
    """The storage ``migrate`` without APP works on: ``--storage``, the environment, the
    default."""
    return storage_from_url(url if url is not None else default_storage_url())


async def open_storage_or_fail(storage: Storage) -> None:
    """Open ``storage``; any failure is a `CliError` with exit code 4 naming its URL."""
    try:
        await storage.open()
    except (StorageError, OSError) as exc:
        raise _cannot_open(storage, exc) from None


@contextlib.asynccontextmanager
async def opened(jobs: DurableJobs) -> AsyncIterator[DurableJobs]:
    """``async with jobs``, with a failure to open storage as a `CliError` (exit 4)."""
    try:
        await jobs.open()
    except (StorageError, OSError) as exc:
        raise _cannot_open(jobs.storage, exc) from None
    try:
        yield jobs
    finally:
        with contextlib.suppress(StorageError):
            await jobs.aclose()


def _cannot_open(storage: Storage, exc: BaseException) -> CliError:
    reason = exc.cause if isinstance(exc, StorageError) else exc
    text = reason if isinstance(reason, str) else f"{type(reason).__name__}: {reason}"
    if isinstance(storage, PostgresStorage):
        text = _without_password(storage.url, text)
    return CliError(
        f"cannot open storage {storage_label(storage)}: {one_line(text)}", STORAGE_FAILED
    )
