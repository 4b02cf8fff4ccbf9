"""The human forms of workflow runs: the ``runs list`` table, ``runs show`` (with what the run
waits for and its pending events), ``runs watch``.

They fit the terminal (see ``_output``); ``--json`` bypasses them and prints the values whole.
"""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import Any

from durable_effect._codec import encode_json
from durable_effect.cli._output import cell, human_duration, key_values, table, to_plain
from durable_effect.workflow import PendingEvents, Run, StepRecord

__all__ = ["pending_block", "progress_line", "run_block", "runs_table", "steps_table"]

_BAR = 30


def _iso(value: object) -> str:
    return cell(to_plain(value))


def _at(value: datetime | None) -> str:
    """An instant in a table: UTC to the second (``--json`` and ``runs show`` keep it whole).

    >>> _at(datetime(2026, 12, 7, 15, 53, 5, 790610, tzinfo=UTC))
    '2026-12-07T15:53:05Z'
    """
    return "-" if value is None else value.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _json(value: object) -> str:
    return encode_json(to_plain(value)).decode()


def _labels(labels: dict[str, str]) -> str:
    return " ".join(f"{k}={v}" for k, v in labels.items()) or "-"


def _progress(run: Run[Any, Any]) -> str:
    """``3/5 message`` from ``step.progress``, else the current step."""
    progress = run.progress
    if progress is None:
        return run.current_step or "-"
    done = f"{progress.current}/{progress.total}" if progress.total else str(progress.current)
    return f"{done} {progress.message}" if progress.message else done


def _took(run: Run[Any, Any]) -> str:
    if run.started_at is None or run.completed_at is None:
        return "-"
    return human_duration(run.completed_at - run.started_at)


def runs_table(runs: Sequence[Run[Any, Any]]) -> str:
    """``runs list``: one line per run; the error of a failed run in place of its labels."""
    columns = ["id", "status", "progress", "created_at", "took", "labels/error"]
    rows = [
        [
            run.id,
            run.status,
            _progress(run),
            _at(run.created_at),
            _took(run),
            run.error if run.error else _labels(run.labels),
        ]
        for run in runs
    ]
    return table(columns, rows, fixed=("id", "status", "created_at", "took"))


def run_block(run: Run[Any, Any]) -> str:
    """``runs show``: the run as a key/value block, input and output as JSON."""
    pairs = [
        ("id", run.id),
        ("workflow", run.workflow),
        ("status", run.status),
        ("attempt", str(run.attempt)),
        ("created_at", _iso(run.created_at)),
        ("started_at", _iso(run.started_at)),
        ("completed_at", _iso(run.completed_at)),
        ("took", _took(run)),
        ("current_step", run.current_step or "-"),
        ("progress", _progress(run)),
        ("labels", _labels(run.labels)),
        ("idempotency_key", run.idempotency_key or "-"),
        ("concurrency_key", run.concurrency_key or "-"),
        ("input", _json(run.input)),
        ("output", "-" if run.output is None else _json(run.output)),
        ("error", run.error or "-"),
    ]
    return key_values(pairs)


def _step_took(step: StepRecord) -> str:
    if step.completed_at is None:
        return "-"
    return human_duration(step.completed_at - step.started_at)


def steps_table(steps: Sequence[StepRecord]) -> str:
    """``runs show``: the run's recorded steps; a failed step shows its error as its result."""
    if not steps:
        return "(no steps recorded)\n"
    columns = ["#", "step", "status", "attempts", "started_at", "took", "result"]
    rows = [
        [
            str(step.index),
            step.name,
            step.status,
            str(step.attempts),
            _at(step.started_at),
            _step_took(step),
            step.error if step.error is not None else _json(step.output),
        ]
        for step in steps
    ]
    return table(columns, rows, fixed=("#", "status", "attempts", "started_at", "took"))


def pending_block(pending: PendingEvents[Any]) -> str:
    """``runs show``: what the run waits for (``-`` unless an event) and the events queued for
    it and not yet taken by a wait, oldest first."""
    wait = pending.waiting
    if wait is None:
        waiting = "-"
    else:
        until = "no timeout" if wait.until is None else f"until {_iso(wait.until)}"
        waiting = f"step {wait.step}: event {wait.event or 'any'}, {until}"
    head = key_values([("waiting_for", waiting)])
    if not pending.events:
        return head + "(no pending events)\n"
    columns = ["seq", "event_id", "sent_at", "event"]
    rows = [
        [str(e.seq), e.event_id or "-", _iso(e.sent_at), _json(e.event)] for e in pending.events
    ]
    return head + "\n" + table(columns, rows, fixed=("seq", "sent_at"))


def progress_line(run: Run[Any, Any], width: int) -> str:
    """``runs watch``: status, a progress bar (or the current step), cut to ``width``."""
    progress = run.progress
    if progress is None or not progress.total:
        line = f"{run.status:<10} {run.current_step or ''}"
    else:
        done = int(_BAR * min(progress.current / progress.total, 1.0))
        bar = "#" * done + "-" * (_BAR - done)
        message = progress.message or ""
        line = f"{run.status:<10} [{bar}] {progress.current}/{progress.total} {message}"
    return line.rstrip()[: width - 1]
