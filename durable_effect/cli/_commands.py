"""The CLI's instance commands (start, trigger, add, send, …), ``migrate`` and ``demo``, and
the helpers every command shares: running a client call, decoding JSON arguments, finding a
job's handle.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Awaitable, Callable, Mapping, Sequence
from typing import Any

from returns.pipeline import is_successful

from durable_effect._client import _instances
from durable_effect._codec import decode_json
from durable_effect._effect import Effect
from durable_effect._jobs import DurableJobs
from durable_effect.cli._app import (
    STORAGE_FAILED,
    CliError,
    load_app,
    migrate_target,
    one_line,
    open_storage_or_fail,
    opened,
    storage_label,
)
from durable_effect.cli._output import emit
from durable_effect.errors import (
    InstanceNotFoundError,
    JobNotFoundError,
    StorageError,
    TaggedError,
    ValidationError,
)

__all__ = [
    "JOB_TYPES",
    "Handler",
    "call",
    "cmd_add",
    "cmd_demo",
    "cmd_instances_list",
    "cmd_migrate",
    "cmd_send",
    "cmd_start",
    "cmd_trigger",
    "emit_page",
    "exit_code",
    "failed",
    "handle_of",
    "json_arg",
    "run_call",
    "simple",
    "with_app",
]

Handler = Callable[[argparse.Namespace], Awaitable[int]]

JOB_TYPES = ("continuous", "debounce", "task", "workflow")


def exit_code(error: BaseException) -> int:
    """The exit code of a failed client call (see the CLI module's docstring)."""
    if isinstance(error, ValidationError):
        return 2
    if isinstance(error, JobNotFoundError | InstanceNotFoundError):
        return 3
    if isinstance(error, StorageError):
        return 4
    return 1


def failed(error: BaseException) -> CliError:
    """A failed client call as a `CliError`: its error on one line, its exit code."""
    text = str(error) if isinstance(error, TaggedError) else repr(error)
    return CliError(one_line(text), exit_code(error))


async def call(effect: Effect[Any, Any]) -> Any:
    """Run a client call; its value (a failure raises `CliError`)."""
    result = await Effect.run_async(effect)
    if not is_successful(result):
        raise failed(result.failure())
    return result.unwrap()


async def run_call(effect: Effect[Any, Any], as_json: bool) -> int:
    """Run a client call and print its result; 0 (a failure raises `CliError`)."""
    emit(await call(effect), as_json=as_json)
    return 0


def json_arg(text: str, what: str) -> object:
    """A JSON command-line argument decoded (bad JSON, or too deep, is a usage error)."""
    try:
        return decode_json(text.encode())
    except ValidationError as exc:
        raise CliError(f"{what} is not valid JSON: {exc.message}", 2) from None


def _job_type(jobs: DurableJobs, name: str) -> str:
    for registered, definition in jobs.registry:
        if registered == name:
            return definition.job_type
    known = ", ".join(sorted(n for n, _ in jobs.registry)) or "none"
    raise CliError(f"no job named {name!r} is registered (registered: {known})", 3)


def handle_of(jobs: DurableJobs, name: str, *allowed: str) -> Any:
    """The client handle of job ``name``, which must be of one of the ``allowed`` types."""
    job_type = _job_type(jobs, name)
    if job_type not in allowed:
        raise CliError(
            f"{name!r} is a {job_type} job; this command works on {' or '.join(allowed)} jobs",
            2,
        )
    client: Any = jobs.client
    return getattr(client, job_type)(name)


async def with_app(args: argparse.Namespace, body: Callable[[DurableJobs], Awaitable[int]]) -> int:
    """Load ``args.app`` (on ``args.storage`` if given), open it, run ``body``, close it."""
    jobs = load_app(args.app, getattr(args, "storage", None))
    async with opened(jobs):
        try:
            return await body(jobs)
        except CliError as exc:
            if exc.code != STORAGE_FAILED:
                raise
            # Opened, then failed (a read-only file, a server gone): say which storage.
            label = storage_label(jobs.storage)
            raise CliError(f"storage {label}: {exc.message}", exc.code) from None


# -- instance commands -------------------------------------------------------------------


async def cmd_start(args: argparse.Namespace) -> int:
    async def body(jobs: DurableJobs) -> int:
        handle = handle_of(jobs, args.job, "continuous")
        state = json_arg(args.input, "--input")
        return await run_call(handle.start(id=args.id, input=state), args.json)

    return await with_app(args, body)


async def cmd_trigger(args: argparse.Namespace) -> int:
    async def body(jobs: DurableJobs) -> int:
        handle = handle_of(jobs, args.job, "continuous", "task")
        return await run_call(handle.trigger(args.id), args.json)

    return await with_app(args, body)


async def cmd_add(args: argparse.Namespace) -> int:
    async def body(jobs: DurableJobs) -> int:
        handle = handle_of(jobs, args.job, "debounce")
        event = json_arg(args.event, "--event")
        return await run_call(
            handle.add(id=args.id, event=event, event_id=args.event_id), args.json
        )

    return await with_app(args, body)


async def cmd_send(args: argparse.Namespace) -> int:
    async def body(jobs: DurableJobs) -> int:
        handle = handle_of(jobs, args.job, "task")
        event = json_arg(args.event, "--event")
        return await run_call(
            handle.send(id=args.id, event=event, event_id=args.event_id), args.json
        )

    return await with_app(args, body)


def simple(method: str, *allowed: str) -> Handler:
    """A command calling ``handle.<method>(ID)`` on a job of one of the ``allowed`` types."""

    async def command(args: argparse.Namespace) -> int:
        async def body(jobs: DurableJobs) -> int:
            handle = handle_of(jobs, args.job, *allowed)
            if method == "terminate" and getattr(args, "reason", None) is not None:
                return await run_call(handle.terminate(args.id, reason=args.reason), args.json)
            return await run_call(getattr(handle, method)(args.id), args.json)

        return await with_app(args, body)

    return command


async def cmd_instances_list(args: argparse.Namespace) -> int:
    async def body(jobs: DurableJobs) -> int:
        names = [
            name
            for name, definition in jobs.registry
            if definition.job_type != "workflow"
            and (not args.type or definition.job_type == args.type)
            and (not args.name or name == args.name)
        ]
        if args.name and not names:
            _job_type(jobs, args.name)  # unknown: exit 3; else a workflow or another type
            raise CliError(f"{args.name!r} is not a {args.type or 'job with instances'}", 2)
        engine = jobs.engine
        try:
            page = await _instances.list_instances(
                engine,
                job=None,
                status=args.status,
                limit=args.limit,
                after=args.after,
                names=names,
            )
            counts = await _instances.count_instances(engine, names)
        except (ValidationError, StorageError) as exc:
            raise failed(exc) from None
        rows = [
            {
                "type": i.job_type,
                "job": i.job_name,
                "id": i.id,
                "status": i.status,
                "next_alarm_at": i.next_alarm_at,
                "created_at": i.created_at,
            }
            for i in page
        ]
        emit_page("instances", rows, page.next_cursor, counts, as_json=args.json)
        return 0

    return await with_app(args, body)


def emit_page(
    what: str,
    rows: Sequence[object],
    next_cursor: str | None,
    counts: Mapping[str, int],
    *,
    as_json: bool,
    table: str | None = None,
) -> None:
    """A page of a listing: JSON ``{what: [...], "next_cursor", "counts"}``, or the table
    (``table``, else ``rows`` as one) with a line of counts and how to get the next page."""
    if as_json:
        emit({what: list(rows), "next_cursor": next_cursor, "counts": dict(counts)}, as_json=True)
        return
    if table is None:
        emit(list(rows), as_json=False)
    else:
        sys.stdout.write(table)
    total = sum(counts.values())
    detail = ", ".join(f"{k} {v}" for k, v in counts.items() if v)
    sys.stdout.write(f"{len(rows)} shown of {total}" + (f" ({detail})" if detail else "") + "\n")
    if next_cursor is not None:
        sys.stdout.write(f"next page: --after {next_cursor}\n")


# -- migrate, demo -----------------------------------------------------------------------


async def cmd_migrate(args: argparse.Namespace) -> int:
    # Without APP: --storage, else $DURABLE_EFFECT_STORAGE, else the default file.
    if args.app:
        jobs = load_app(args.app, args.storage)
        storage = jobs.storage
        async with opened(jobs):
            try:
                # The index entries a store from before indexes lacks (see _runtime._indexes).
                await jobs.engine.indexes.ensure_all()
            except StorageError as exc:
                label = storage_label(storage)
                raise CliError(f"storage {label}: {one_line(str(exc))}", STORAGE_FAILED) from None
    else:
        storage = migrate_target(args.storage)
        await open_storage_or_fail(storage)
        await storage.close()
    emit(
        {"migrated": True, "storage": storage.scheme, "url": storage_label(storage)},
        as_json=args.json,
    )
    return 0


async def cmd_demo(args: argparse.Namespace) -> int:
    from durable_effect.cli._demo import run_demo

    return await run_demo(db=args.db, seconds=args.seconds, port=args.port)
