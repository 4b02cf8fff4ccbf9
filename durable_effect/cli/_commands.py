"""The CLI's instance commands (start, trigger, add, send, …), ``migrate`` and ``demo``, and
the helpers every command shares: running a client call, decoding JSON arguments, finding a
job's handle.
"""

from __future__ import annotations

import argparse
from collections.abc import Awaitable, Callable
from typing import Any

from returns.pipeline import is_successful

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
from durable_effect.cli._output import emit, to_plain
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
        rows: list[dict[str, object]] = []
        for name, definition in jobs.registry:
            if args.type and definition.job_type != args.type:
                continue
            if (args.name and name != args.name) or definition.job_type == "workflow":
                continue
            prefix = f"{definition.job_type}:{name}:"
            client: Any = jobs.client
            handle = getattr(client, definition.job_type)(name)
            for instance_id in await jobs.storage.list_instances(prefix):
                result = await Effect.run_async(handle.status(instance_id[len(prefix) :]))
                if not is_successful(result):
                    continue
                status: Any = to_plain(result.unwrap())
                if status.get("status") == "not_found":
                    continue
                if args.status and status.get("status") != args.status:
                    continue
                rows.append(
                    {"type": definition.job_type, "job": name, "id": instance_id[len(prefix) :]}
                    | status
                )
        emit(rows, as_json=args.json)
        return 0

    return await with_app(args, body)


# -- migrate, demo -----------------------------------------------------------------------


async def cmd_migrate(args: argparse.Namespace) -> int:
    # Without APP: --storage, else $DURABLE_EFFECT_STORAGE, else the default file.
    storage = load_app(args.app, args.storage).storage if args.app else migrate_target(args.storage)
    await open_storage_or_fail(storage)
    await storage.close()
    emit(
        {"migrated": True, "storage": storage.scheme, "url": storage_label(storage)},
        as_json=args.json,
    )
    return 0


async def cmd_demo(args: argparse.Namespace) -> int:
    from durable_effect.cli._demo import run_demo

    return await run_demo(db=args.db, seconds=args.seconds)
