"""The CLI's ``runs`` commands: list, trigger, show, send, cancel, retrigger, fork, resume
(one run, or every run of a workflow with a status), delete, watch."""

from __future__ import annotations

import argparse
import sys
from typing import Any

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
from durable_effect.cli._runs_view import (
    pending_block,
    progress_line,
    run_block,
    runs_table,
    steps_table,
)
from durable_effect.workflow import Run

__all__ = [
    "cmd_runs_cancel",
    "cmd_runs_delete",
    "cmd_runs_fork",
    "cmd_runs_list",
    "cmd_runs_resume",
    "cmd_runs_send",
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
        pending = await call(handle.pending_events(args.run_id))
        if args.json:
            emit_json(
                {
                    "run": run,
                    "steps": steps,
                    "waiting_for": pending.waiting,
                    "pending_events": pending.events,
                }
            )
        else:
            sys.stdout.write(
                run_block(run) + "\n" + steps_table(steps) + "\n" + pending_block(pending)
            )
        return 0

    return await with_app(args, body)


async def cmd_runs_send(args: argparse.Namespace) -> int:
    async def body(jobs: DurableJobs) -> int:
        handle = handle_of(jobs, args.workflow, "workflow")
        event = json_arg(args.event, "--event")
        return await run_call(handle.send(args.run_id, event, event_id=args.event_id), args.json)

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


async def cmd_runs_fork(args: argparse.Namespace) -> int:
    async def body(jobs: DurableJobs) -> int:
        handle = handle_of(jobs, args.workflow, "workflow")
        result = await call(handle.fork(args.run_id, from_step=args.from_step))
        forked = {"run_id": result.run_id, "disposition": result.disposition}
        emit({**forked, "forked_from": args.run_id}, as_json=args.json)
        return 0

    return await with_app(args, body)


#: Runs read per page while collecting the runs ``runs resume --status`` resumes.
_RESUME_PAGE = 200


def _resume_target(args: argparse.Namespace) -> tuple[str, str | None]:
    """The workflow and run (``None``: every run with ``--status``) to resume; a usage
    error (exit 2) for a contradictory or incomplete command line."""
    workflow = args.workflow or args.workflow_option
    if args.workflow and args.workflow_option and args.workflow != args.workflow_option:
        raise CliError("give the workflow once (WORKFLOW or --workflow)", 2)
    if workflow is None:
        raise CliError("runs resume needs a WORKFLOW (or --workflow W)", 2)
    if (args.run_id is None) == (args.status is None):
        raise CliError("runs resume needs a RUN_ID or --status STATUS (not both)", 2)
    if args.dry_run and args.status is None:
        raise CliError("--dry-run lists the runs --status selects: give --status", 2)
    return workflow, args.run_id


async def cmd_runs_resume(args: argparse.Namespace) -> int:
    """Resume one run, or every run of the workflow with ``--status`` (``--dry-run`` lists
    them and resumes nothing). Exit 1 if a run could not be resumed (the others are)."""
    workflow, run_id = _resume_target(args)

    async def body(jobs: DurableJobs) -> int:
        handle = handle_of(jobs, workflow, "workflow")
        if run_id is not None:
            run = await call(handle.resume(run_id))
            emit({"run_id": run.id, "status": run.status, "resumed": True}, as_json=args.json)
            return 0
        selected: list[Run[Any, Any]] = []
        while True:
            page = await call(
                handle.list_runs(status=args.status, limit=_RESUME_PAGE, offset=len(selected))
            )
            selected.extend(page)
            if len(page) < _RESUME_PAGE:
                break
        rows: list[dict[str, object]] = []
        failures = 0
        for run in selected:
            row: dict[str, object] = {"run_id": run.id, "status": run.status}
            if args.dry_run:
                row["error"] = run.error
            else:
                try:
                    resumed = await call(handle.resume(run.id))
                except CliError as exc:  # it moved meanwhile: say so, resume the others
                    failures += 1
                    row["resumed"], row["error"] = False, exc.message
                else:
                    row["status"], row["resumed"] = resumed.status, True
            rows.append(row)
        if args.json:
            emit_json({"dry_run": args.dry_run, "runs": rows})
        elif rows:
            emit(rows, as_json=False)
        verb = "would resume" if args.dry_run else "resumed"
        if not args.json:
            sys.stdout.write(f"{verb} {len(rows) - failures} {args.status} run(s) of {workflow}\n")
        return 1 if failures else 0

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
