"""The CLI's commands: argument parsing and running each command against an app."""

from __future__ import annotations

import argparse
import asyncio
import signal
import sys
from collections.abc import Awaitable, Callable
from typing import Any

from returns.pipeline import is_successful

from durable_effect._codec import decode_json
from durable_effect._effect import Effect
from durable_effect._jobs import DurableJobs
from durable_effect.cli._app import CliError, load_app
from durable_effect.cli._output import emit, to_plain
from durable_effect.errors import (
    InstanceNotFoundError,
    JobNotFoundError,
    StorageError,
    TaggedError,
    ValidationError,
)
from durable_effect.storage import open_storage

__all__ = ["build_parser", "run_command"]

Handler = Callable[[argparse.Namespace], Awaitable[int]]

_JOB_TYPES = ("continuous", "debounce", "task", "workflow")
_EVENT_HELP = {"add": "add an event to a debounce batch", "send": "send an event to a task"}


def _exit_code(error: BaseException) -> int:
    if isinstance(error, ValidationError):
        return 2
    if isinstance(error, JobNotFoundError | InstanceNotFoundError):
        return 3
    if isinstance(error, StorageError):
        return 4
    return 1


async def _run(effect: Effect[Any, Any], as_json: bool) -> int:
    result = await Effect.run_async(effect)
    if is_successful(result):
        emit(result.unwrap(), as_json=as_json)
        return 0
    error = result.failure()
    text = str(error) if isinstance(error, TaggedError) else repr(error)
    sys.stderr.write(f"durable-effect: {text}\n")
    return _exit_code(error)


def _json_arg(text: str, what: str) -> object:
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


def _handle(jobs: DurableJobs, name: str, *allowed: str) -> tuple[str, Any]:
    job_type = _job_type(jobs, name)
    if job_type not in allowed:
        raise CliError(
            f"{name!r} is a {job_type} job; this command works on {' or '.join(allowed)} jobs",
            2,
        )
    client: Any = jobs.client
    return job_type, getattr(client, job_type)(name)


async def _with_app(args: argparse.Namespace, body: Callable[[DurableJobs], Awaitable[int]]) -> int:
    jobs = load_app(args.app, getattr(args, "storage", None))
    async with jobs:
        return await body(jobs)


# -- instance commands -------------------------------------------------------------------


async def cmd_start(args: argparse.Namespace) -> int:
    async def body(jobs: DurableJobs) -> int:
        _, handle = _handle(jobs, args.job, "continuous")
        state = _json_arg(args.input, "--input")
        return await _run(handle.start(id=args.id, input=state), args.json)

    return await _with_app(args, body)


async def cmd_trigger(args: argparse.Namespace) -> int:
    async def body(jobs: DurableJobs) -> int:
        _, handle = _handle(jobs, args.job, "continuous", "task")
        return await _run(handle.trigger(args.id), args.json)

    return await _with_app(args, body)


async def cmd_add(args: argparse.Namespace) -> int:
    async def body(jobs: DurableJobs) -> int:
        _, handle = _handle(jobs, args.job, "debounce")
        event = _json_arg(args.event, "--event")
        return await _run(handle.add(id=args.id, event=event, event_id=args.event_id), args.json)

    return await _with_app(args, body)


async def cmd_send(args: argparse.Namespace) -> int:
    async def body(jobs: DurableJobs) -> int:
        _, handle = _handle(jobs, args.job, "task")
        event = _json_arg(args.event, "--event")
        return await _run(handle.send(id=args.id, event=event, event_id=args.event_id), args.json)

    return await _with_app(args, body)


def _simple(method: str, *allowed: str) -> Handler:
    async def command(args: argparse.Namespace) -> int:
        async def body(jobs: DurableJobs) -> int:
            _, handle = _handle(jobs, args.job, *allowed)
            if method == "terminate" and getattr(args, "reason", None) is not None:
                return await _run(handle.terminate(args.id, reason=args.reason), args.json)
            return await _run(getattr(handle, method)(args.id), args.json)

        return await _with_app(args, body)

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

    return await _with_app(args, body)


# -- workflow commands -------------------------------------------------------------------


def _labels(pairs: list[str] | None) -> dict[str, str] | None:
    if not pairs:
        return None
    out: dict[str, str] = {}
    for pair in pairs:
        key, sep, value = pair.partition("=")
        if not sep or not key:
            raise CliError(f"--label must be key=value, got {pair!r}", 2)
        out[key] = value
    return out


async def cmd_runs_list(args: argparse.Namespace) -> int:
    async def body(jobs: DurableJobs) -> int:
        _, handle = _handle(jobs, args.workflow, "workflow")
        eff = handle.list_runs(status=args.status, labels=_labels(args.label), limit=args.limit)
        return await _run(eff, args.json)

    return await _with_app(args, body)


async def cmd_runs_trigger(args: argparse.Namespace) -> int:
    async def body(jobs: DurableJobs) -> int:
        _, handle = _handle(jobs, args.workflow, "workflow")
        eff = handle.trigger(
            _json_arg(args.input, "--input"),
            idempotency_key=args.idempotency_key,
            concurrency_key=args.concurrency_key,
            labels=_labels(args.label),
        )
        return await _run(eff, args.json)

    return await _with_app(args, body)


async def cmd_runs_show(args: argparse.Namespace) -> int:
    async def body(jobs: DurableJobs) -> int:
        _, handle = _handle(jobs, args.workflow, "workflow")
        both = handle.get_run(args.run_id).flat_map(
            lambda run: handle.steps(args.run_id).map(lambda steps: {"run": run, "steps": steps})
        )
        return await _run(both, args.json)

    return await _with_app(args, body)


def _run_op(method: str) -> Handler:
    async def command(args: argparse.Namespace) -> int:
        async def body(jobs: DurableJobs) -> int:
            _, handle = _handle(jobs, args.workflow, "workflow")
            return await _run(getattr(handle, method)(args.run_id), args.json)

        return await _with_app(args, body)

    return command


async def cmd_runs_watch(args: argparse.Namespace) -> int:
    async def body(jobs: DurableJobs) -> int:
        _, handle = _handle(jobs, args.workflow, "workflow")
        last = None
        while True:
            result = await Effect.run_async(handle.get_run(args.run_id))
            if not is_successful(result):
                sys.stderr.write(f"durable-effect: {result.failure()}\n")
                return _exit_code(result.failure())
            run: Any = result.unwrap()
            line = _progress_line(run)
            if line != last:
                sys.stdout.write("\r" + line)
                sys.stdout.flush()
                last = line
            if run.status in ("completed", "failed", "cancelled"):
                sys.stdout.write("\n")
                return 0 if run.status == "completed" else 1
            await jobs.storage.wait_for_change(0.2)

    return await _with_app(args, body)


def _progress_line(run: Any) -> str:
    progress = run.progress
    if progress is None or not progress.total:
        return f"{run.status:<10} {run.current_step or ''}"
    done = int(30 * min(progress.current / progress.total, 1.0))
    bar = "#" * done + "-" * (30 - done)
    message = progress.message or ""
    return f"{run.status:<10} [{bar}] {progress.current}/{progress.total} {message}"[:120]


# -- worker, migrate, demo ---------------------------------------------------------------


async def cmd_worker(args: argparse.Namespace) -> int:
    jobs = load_app(args.app, args.storage)
    async with jobs:
        worker = jobs.worker(concurrency=args.concurrency)
        loop = asyncio.get_running_loop()
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.add_signal_handler(sig, lambda: asyncio.ensure_future(worker.stop()))
        sys.stderr.write(f"durable-effect: worker {worker.owner} running (Ctrl-C to stop)\n")
        await worker.run()
        sys.stderr.write(f"durable-effect: worker stopped after firing {worker.fired} alarms\n")
    return 0


async def cmd_migrate(args: argparse.Namespace) -> int:
    if args.app:
        jobs = load_app(args.app, args.storage)
        storage = jobs.storage
    elif args.storage:
        try:
            storage = open_storage(args.storage)
        except ValueError as exc:
            raise CliError(str(exc), 2) from None
    else:
        raise CliError("migrate needs APP or --storage URL", 2)
    try:
        await storage.open()
    except StorageError as exc:
        sys.stderr.write(f"durable-effect: {exc}\n")
        return 4
    await storage.close()
    emit({"migrated": True, "storage": storage.scheme}, as_json=args.json)
    return 0


async def cmd_demo(args: argparse.Namespace) -> int:
    from durable_effect.cli._demo import run_demo

    return await run_demo(db=args.db, seconds=args.seconds)


# -- parser ------------------------------------------------------------------------------


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="durable-effect", description="Durable jobs and workflows: worker and operations."
    )
    sub = parser.add_subparsers(metavar="COMMAND")

    def command(name: str, handler: Handler, help_text: str, app: bool = True) -> Any:
        p = sub.add_parser(name, help=help_text)
        if app:
            p.add_argument("app", metavar="APP", help="module:attribute naming a DurableJobs")
            p.add_argument("--storage", metavar="URL", help="override the app's storage URL")
        p.add_argument("--json", action="store_true", help="print JSON for scripts")
        p.set_defaults(handler=handler)
        return p

    def instance(name: str, handler: Handler, help_text: str) -> Any:
        p = command(name, handler, help_text)
        p.add_argument("job", metavar="JOB", help="the registered job name")
        p.add_argument("id", metavar="ID", help="the instance id")
        return p

    worker = command("worker", cmd_worker, "run a worker that fires alarms")
    worker.add_argument("--concurrency", type=int, default=10)

    instance("start", cmd_start, "start a continuous instance").add_argument(
        "--input", required=True, help="initial state as JSON"
    )
    instance("trigger", cmd_trigger, "run a continuous or task instance now")
    for name, handler in (("add", cmd_add), ("send", cmd_send)):
        p = instance(name, handler, _EVENT_HELP[name])
        p.add_argument("--event", required=True, help="the event as JSON")
        p.add_argument("--event-id", default=None, help="idempotency id of the event")
    instance("flush", _simple("flush", "debounce"), "flush a debounce batch now")
    instance("clear", _simple("clear", "debounce"), "drop a debounce batch")
    instance("status", _simple("status", *_JOB_TYPES[:3]), "show an instance's status")
    instance("state", _simple("get_state", *_JOB_TYPES[:3]), "show an instance's state")
    instance("pause", _simple("pause", "continuous"), "pause a continuous instance")
    instance("resume", _simple("resume", "continuous"), "resume a continuous instance")
    instance(
        "terminate", _simple("terminate", "continuous", "task"), "terminate an instance"
    ).add_argument("--reason", default=None)

    instances = sub.add_parser("instances", help="list instances").add_subparsers(metavar="CMD")
    listing = instances.add_parser("list", help="list instances")
    listing.add_argument("app", metavar="APP")
    listing.add_argument("--storage", metavar="URL")
    listing.add_argument("--type", choices=_JOB_TYPES[:3])
    listing.add_argument("--name")
    listing.add_argument("--status")
    listing.add_argument("--json", action="store_true")
    listing.set_defaults(handler=cmd_instances_list)

    runs = sub.add_parser("runs", help="workflow runs").add_subparsers(metavar="CMD")

    def run_cmd(name: str, handler: Handler, help_text: str, with_id: bool = True) -> Any:
        p = runs.add_parser(name, help=help_text)
        p.add_argument("app", metavar="APP")
        p.add_argument("workflow", metavar="WORKFLOW")
        if with_id:
            p.add_argument("run_id", metavar="RUN_ID")
        p.add_argument("--storage", metavar="URL")
        p.add_argument("--json", action="store_true")
        p.set_defaults(handler=handler)
        return p

    rl = run_cmd("list", cmd_runs_list, "list runs, newest first", with_id=False)
    rl.add_argument("--status")
    rl.add_argument("--label", action="append", metavar="KEY=VALUE")
    rl.add_argument("--limit", type=int, default=50)
    rt = run_cmd("trigger", cmd_runs_trigger, "trigger a new run", with_id=False)
    rt.add_argument("--input", required=True, help="the run's input as JSON")
    rt.add_argument("--idempotency-key", default=None)
    rt.add_argument("--concurrency-key", default=None)
    rt.add_argument("--label", action="append", metavar="KEY=VALUE")
    run_cmd("show", cmd_runs_show, "show a run with its steps and progress")
    for op in ("cancel", "retrigger"):
        run_cmd(op, _run_op(op), f"{op} a run")
    run_cmd("delete", _run_op("delete_run"), "delete a finished run")
    run_cmd("watch", cmd_runs_watch, "follow a run's progress until it ends")

    migrate = sub.add_parser("migrate", help="create or migrate the storage schema")
    migrate.add_argument("app", metavar="APP", nargs="?")
    migrate.add_argument("--storage", metavar="URL")
    migrate.add_argument("--json", action="store_true")
    migrate.set_defaults(handler=cmd_migrate)

    demo = sub.add_parser("demo", help="run the demo app on a local SQLite file")
    demo.add_argument("--db", default=".demo/demo.db", help="SQLite file (default .demo/demo.db)")
    demo.add_argument("--seconds", type=float, default=60.0, help="how long to run")
    demo.set_defaults(handler=cmd_demo)
    return parser


async def run_command(args: argparse.Namespace) -> int:
    """Run the parsed command."""
    handler: Handler = args.handler
    return await handler(args)
