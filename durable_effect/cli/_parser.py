"""The CLI's argument parser: every command, option and its help text.

Bad usage (an unknown option, a missing argument, ``--concurrency 0``) makes argparse print
the usage and exit with code 2.
"""

from __future__ import annotations

import argparse
from typing import Any

from durable_effect._jobs import STORAGE_ENV
from durable_effect._version import __version__
from durable_effect.cli import _commands as c
from durable_effect.cli import _runs as r
from durable_effect.cli._commands import JOB_TYPES, Handler
from durable_effect.cli._dashboard import add_dashboard_command
from durable_effect.cli._logging import LEVELS
from durable_effect.cli._worker import cmd_worker

__all__ = ["build_parser"]

_APP_HELP = "module:attribute naming a DurableJobs (or a function returning one)"
_STORAGE_HELP = (
    "storage URL to use instead of the app's (sqlite:///path.db, postgresql://…, memory://); "
    f"an app made without storage= uses ${STORAGE_ENV}, else sqlite:///durable_effect.db"
)
_JSON_HELP = "print the result as one line of JSON"
_RUN_STATUSES = ("pending", "leased", "sleeping", "completed", "failed", "cancelled")


def _at_least(minimum: int) -> Any:
    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"must be at least {minimum}, got {value}")
        return value

    parse.__name__ = f"integer >= {minimum}"
    return parse


def build_parser() -> argparse.ArgumentParser:
    """The argument parser of every command."""
    parser = argparse.ArgumentParser(
        prog="durable-effect",
        description="Durable jobs and workflows: run a worker, operate instances and runs.",
        epilog=f"Storage: --storage URL, else ${STORAGE_ENV} (for apps made without "
        "storage=), else sqlite:///durable_effect.db. Exit codes: 0 ok, 1 the operation "
        "failed, 2 bad usage or input, 3 not found, 4 storage failure, 130 interrupted.",
    )
    parser.add_argument("--version", action="version", version=f"durable-effect {__version__}")
    sub = parser.add_subparsers(metavar="COMMAND")

    def command(
        container: Any, name: str, handler: Handler, help_text: str, *, app: bool = True
    ) -> Any:
        p = container.add_parser(name, help=help_text, description=help_text)
        if app:
            p.add_argument("app", metavar="APP", help=_APP_HELP)
        p.set_defaults(handler=handler)
        return p

    def common(p: Any) -> Any:
        p.add_argument("--storage", metavar="URL", help=_STORAGE_HELP)
        p.add_argument("--json", action="store_true", help=_JSON_HELP)
        return p

    def instance(name: str, handler: Handler, help_text: str) -> Any:
        p = command(sub, name, handler, help_text)
        p.add_argument("job", metavar="JOB", help="the registered job name")
        p.add_argument("id", metavar="ID", help="the instance id (the part after JOB:)")
        return common(p)

    worker = common(command(sub, "worker", cmd_worker, "run a worker that fires the app's alarms"))
    worker.add_argument(
        "--concurrency",
        type=_at_least(1),
        default=10,
        metavar="N",
        help="most handlers running at once (default 10)",
    )
    worker.add_argument(
        "--log-level",
        choices=tuple(LEVELS),
        default="info",
        help="least severe log records shown (default info)",
    )
    worker.add_argument(
        "--log-format",
        choices=("text", "json"),
        default="text",
        help="log lines on stderr as text (default) or one JSON object each",
    )

    instance("start", c.cmd_start, "start a continuous instance").add_argument(
        "--input", required=True, metavar="JSON", help="the initial state as JSON"
    )
    instance("trigger", c.cmd_trigger, "run a continuous or task instance now")
    for name, handler, what in (
        ("add", c.cmd_add, "add an event to a debounce batch"),
        ("send", c.cmd_send, "send an event to a task"),
    ):
        p = instance(name, handler, what)
        p.add_argument("--event", required=True, metavar="JSON", help="the event as JSON")
        p.add_argument(
            "--event-id",
            default=None,
            metavar="ID",
            help="idempotency id: an id already applied is refused (DuplicateEventError)",
        )
    instance("flush", c.simple("flush", "debounce"), "flush a debounce batch now")
    instance("clear", c.simple("clear", "debounce"), "drop a debounce batch without running it")
    instance("status", c.simple("status", *JOB_TYPES[:3]), "show an instance's status")
    instance("state", c.simple("get_state", *JOB_TYPES[:3]), "show an instance's state")
    instance("pause", c.simple("pause", "continuous"), "pause a continuous instance")
    instance("resume", c.simple("resume", "continuous"), "resume a continuous instance")
    instance(
        "terminate", c.simple("terminate", "continuous", "task"), "terminate an instance"
    ).add_argument(
        "--reason", default=None, metavar="TEXT", help="recorded in the job.terminated event"
    )

    after_help = "the next page: the cursor a page printed (next page: --after CURSOR)"
    instances = sub.add_parser(
        "instances", help="job instances (list)", description="Job instances."
    ).add_subparsers(metavar="COMMAND")
    listing = common(
        command(instances, "list", c.cmd_instances_list, "list the app's job instances")
    )
    listing.add_argument("--type", choices=JOB_TYPES[:3], help="only jobs of this type")
    listing.add_argument("--name", metavar="JOB", help="only the job of this name")
    listing.add_argument(
        "--status",
        action="append",
        metavar="STATUS",
        help="only instances with this status (running, paused, debouncing, active, idle;"
        " repeatable, OR-ed)",
    )
    listing.add_argument(
        "--limit", type=_at_least(0), default=50, metavar="N", help="most instances listed (50)"
    )
    listing.add_argument("--after", metavar="CURSOR", help=after_help)

    runs = sub.add_parser(
        "runs",
        help="workflow runs (list, show, send, watch, trigger, cancel, retrigger, fork, resume, "
        "delete)",
        description="Workflow runs.",
    ).add_subparsers(metavar="COMMAND")

    def run_cmd(name: str, handler: Handler, help_text: str, *, with_id: bool = True) -> Any:
        p = command(runs, name, handler, help_text)
        p.add_argument("workflow", metavar="WORKFLOW", help="the registered workflow name")
        if with_id:
            p.add_argument("run_id", metavar="RUN_ID", help="the run's id")
        return common(p)

    label_help = "a label, key=value (repeatable; AND-ed)"
    rl = run_cmd("list", r.cmd_runs_list, "list runs, newest first", with_id=False)
    rl.add_argument(
        "--status",
        action="append",
        choices=_RUN_STATUSES,
        help="only runs with this status (repeatable, OR-ed)",
    )
    rl.add_argument("--label", action="append", metavar="KEY=VALUE", help=label_help)
    rl.add_argument(
        "--limit", type=_at_least(0), default=50, metavar="N", help="most runs listed (50)"
    )
    rl.add_argument("--after", metavar="CURSOR", help=after_help)
    rt = run_cmd("trigger", r.cmd_runs_trigger, "trigger a new run", with_id=False)
    rt.add_argument("--input", required=True, metavar="JSON", help="the run's input as JSON")
    rt.add_argument(
        "--idempotency-key", default=None, metavar="KEY", help="a repeated key finds the run"
    )
    rt.add_argument(
        "--concurrency-key",
        default=None,
        metavar="KEY",
        help="runs sharing a key run one at a time",
    )
    rt.add_argument("--label", action="append", metavar="KEY=VALUE", help="a label (repeatable)")
    run_cmd("show", r.cmd_runs_show, "show a run: its steps, pending events, what it waits for")
    rs = run_cmd("send", r.cmd_runs_send, "send an event to a run (step.wait_for_event)")
    rs.add_argument("--event", required=True, metavar="JSON", help="the event as JSON")
    rs.add_argument(
        "--event-id", default=None, metavar="ID", help="a repeated id is not delivered again"
    )
    run_cmd("cancel", r.cmd_runs_cancel, "cancel an active run")
    run_cmd("retrigger", r.run_op("retrigger"), "start a new run with a finished run's input")
    fork = run_cmd(
        "fork", r.cmd_runs_fork, "start a new run of a finished run, its steps before a step copied"
    )
    fork.add_argument(
        "--from-step",
        default=None,
        metavar="STEP",
        help="run again from this completed step (default: after the last completed one)",
    )
    resume = common(
        command(
            runs,
            "resume",
            r.cmd_runs_resume,
            "continue a failed or cancelled run after its last completed step "
            "(or every run with --status)",
        )
    )
    resume.add_argument(
        "workflow", metavar="WORKFLOW", nargs="?", help="the registered workflow name"
    )
    resume.add_argument("run_id", metavar="RUN_ID", nargs="?", help="the run's id")
    resume.add_argument(
        "--workflow", dest="workflow_option", metavar="W", help="the workflow (as WORKFLOW)"
    )
    resume.add_argument(
        "--status",
        choices=("failed", "cancelled"),
        help="resume every run of the workflow with this status",
    )
    resume.add_argument(
        "--dry-run", action="store_true", help="with --status: list the runs, resume none"
    )
    run_cmd("delete", r.cmd_runs_delete, "delete a finished run with its steps and logs")
    run_cmd(
        "watch",
        r.cmd_runs_watch,
        "follow a run until it ends (--json: one JSON line per change)",
    )

    migrate = command(
        sub, "migrate", c.cmd_migrate, "create or migrate the storage schema", app=False
    )
    migrate.add_argument(
        "app", metavar="APP", nargs="?", help=f"{_APP_HELP}; its storage is migrated"
    )
    common(migrate)

    add_dashboard_command(sub)

    demo = command(sub, "demo", c.cmd_demo, "run the demo app on a local SQLite file", app=False)
    demo.add_argument(
        "--db", default=".demo/demo.db", metavar="PATH", help="SQLite file (default .demo/demo.db)"
    )
    demo.add_argument(
        "--seconds",
        type=float,
        default=60.0,
        metavar="N",
        help="how long to run (default 60)",
    )
    demo.add_argument(
        "--port",
        type=int,
        default=8000,
        metavar="N",
        help="dashboard port (default 8000; 0: any free one, -1: no dashboard)",
    )
    return parser
