"""The CLI's ``runs`` commands: list, trigger, show, cancel, retrigger, delete, watch."""

from __future__ import annotations

import argparse
import sys

from durable_effect._jobs import DurableJobs
from durable_effect.cli._app import CliError
from durable_effect.cli._commands import (
    Handler,
    call,
    emit_page,
    handle_of,
    json_arg,
    run_call,
    with_app,
)
from durable_effect.cli._output import emit, emit_json, key_values, terminal_width, to_plain
from durable_effect.cli._runs_view import progress_line, run_block, runs_table, steps_table

__all__ = [
    "cmd_runs_cancel",
    "cmd_runs_delete",
    "cmd_runs_list",
    "cmd_runs_show",
    "cmd_runs_trigger",
    "cmd_runs_watch",
    "run_op",
]

_FINISHED = ("completed", "failed", "cancelled")


def labels_arg(pairs: list[str] | None) -> dict[str, str] | None:
    """``--label key=value`` options as a mapping (a pair without ``=`` is a usage error)."""
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
        handle = handle_of(jobs, args.workflow, "workflow")
        labels = labels_arg(args.label)
        status = args.status or None
        page = await call(
            handle.list_runs(status=status, labels=labels, limit=args.limit, after=args.after)
        )
        counts = await call(handle.count_runs(status=status, labels=labels))
        table = None if args.json else runs_table(page)
        emit_page("runs", list(page), page.next_cursor, counts, as_json=args.json, table=table)
        return 0

    return await with_app(args, body)


async def cmd_runs_trigger(args: argparse.Namespace) -> int:
    async def body(jobs: DurableJobs) -> int:
        handle = handle_of(jobs, args.workflow, "workflow")
        eff = handle.trigger(
            json_arg(args.input, "--input"),
            idempotency_key=args.idempotency_key,
            concurrency_key=args.concurrency_key,
            labels=labels_arg(args.label),
        )
        return await run_call(eff, args.json)

    return await with_app(args, body)


async def cmd_runs_show(args: argparse.Namespace) -> int:
    async def body(jobs: DurableJobs) -> int:
        handle = handle_of(jobs, args.workflow, "workflow")
        run = await call(handle.get_run(args.run_id))
        steps = await call(handle.steps(args.run_id))
        if args.json:
            emit_json({"run": run, "steps": steps})
        else:
            sys.stdout.write(run_block(run) + "\n" + steps_table(steps))
        return 0

    return await with_app(args, body)


def run_op(method: str) -> Handler:
    """A command calling ``handle.<method>(RUN_ID)`` and printing its result."""

    async def command(args: argparse.Namespace) -> int:
        async def body(jobs: DurableJobs) -> int:
            handle = handle_of(jobs, args.workflow, "workflow")
            return await run_call(getattr(handle, method)(args.run_id), args.json)

        return await with_app(args, body)

    return command


async def cmd_runs_cancel(args: argparse.Namespace) -> int:
    async def body(jobs: DurableJobs) -> int:
        handle = handle_of(jobs, args.workflow, "workflow")
        await call(handle.cancel(args.run_id))
        status = (await call(handle.get_run(args.run_id))).status
        # A run a worker is executing stops at its next step boundary: say so.
        result = {"cancelled": status == "cancelled", "run_id": args.run_id, "status": status}
        if not args.json and status != "cancelled":
            result["note"] = "a worker is running it: it stops at its next step boundary"
        emit(result, as_json=args.json)
        return 0

    return await with_app(args, body)


async def cmd_runs_delete(args: argparse.Namespace) -> int:
    async def body(jobs: DurableJobs) -> int:
        handle = handle_of(jobs, args.workflow, "workflow")
        run = await call(handle.get_run(args.run_id))
        steps = await call(handle.steps(args.run_id))
        await call(handle.delete_run(args.run_id))
        deleted = {
            "deleted": True,
            "run_id": run.id,
            "workflow": run.workflow,
            "status": run.status,
            "steps": len(steps),
        }
        emit(deleted, as_json=args.json)
        return 0

    return await with_app(args, body)


async def cmd_runs_watch(args: argparse.Namespace) -> int:
    """Follow a run until it ends: one rewritten line on a terminal, one line per change
    otherwise, or (``--json``) the run as one JSON line per change."""

    async def body(jobs: DurableJobs) -> int:
        handle = handle_of(jobs, args.workflow, "workflow")
        on_terminal = sys.stdout.isatty() and not args.json
        last: object = None
        while True:
            try:
                run = await call(handle.get_run(args.run_id))
            except CliError:
                if on_terminal and last is not None:
                    sys.stdout.write("\n")
                raise
            shown: object = to_plain(run) if args.json else progress_line(run, terminal_width())
            if shown != last:
                if args.json:
                    emit_json(run)
                elif on_terminal:
                    sys.stdout.write("\r\x1b[K" + str(shown))
                else:
                    sys.stdout.write(f"{shown}\n")
                sys.stdout.flush()
                last = shown
            if run.status in _FINISHED:
                if on_terminal:
                    sys.stdout.write("\n")
                    if run.error:
                        sys.stdout.write(key_values([("error", run.error)]))
                return 0 if run.status == "completed" else 1
            await jobs.storage.wait_for_change(0.2)

    return await with_app(args, body)
