"""Failure logging: one ``durable_effect`` log record per failed execution, from its event.

Every job kind reports a failed execution as an event (``job.failed``,
``job.retryExhausted``, ``step:fail``, ``run:fail``). `FailureLog` listens to those and
logs each at ERROR with the message an operator needs on one line — which instance, which
attempt, whether it will retry, and the error (``Tag: message``) — and the same facts as
record attributes (``job_type``, ``job_name``, ``instance_id``, ``id``; ``run_id`` and
``step`` for workflows; ``attempt``, ``will_retry``, ``error``) for structured handlers.
A defect's traceback is the record's ``traceback`` attribute, on one record only: a failed
step's, not again on the run's ``run:fail``. The job's ``logging=`` threshold applies, as it
does to the job's own records (a job silenced with ``logging=NONE`` logs no failures).
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from durable_effect._events import Event, JobFailed, JobRetryExhausted
from durable_effect._log import LOGGER
from durable_effect.workflow._events import RunFailed, StepFailed, WorkflowEvent

__all__ = ["FAILURE_EVENTS", "FailureLog"]

#: The event types that report a failed execution.
FAILURE_EVENTS = ("job.failed", "job.retryExhausted", "step:fail", "run:fail")


def _retry_word(will_retry: bool) -> str:
    return "will retry" if will_retry else "no retry"


class FailureLog:
    """An event listener logging failed executions; ``threshold(job_name)`` gives the job's
    log level (``None`` for a job this registry does not know: logged)."""

    def __init__(self, threshold: Callable[[str], int | None], logger: logging.Logger = LOGGER):
        self._threshold = threshold
        self._logger = logger

    def __call__(self, event: Event) -> None:
        if not isinstance(event, JobFailed | JobRetryExhausted | StepFailed | RunFailed):
            return
        level = self._threshold(event.job_name)
        if level is not None and level > logging.ERROR:
            return
        if not self._logger.isEnabledFor(logging.ERROR):
            return
        if isinstance(event, JobFailed):
            self._job_failed(event)
        elif isinstance(event, JobRetryExhausted):
            self._job_exhausted(event)
        elif isinstance(event, StepFailed):
            self._step_failed(event)
        elif isinstance(event, RunFailed):
            self._run_failed(event)

    def _log(self, message: str, args: tuple[object, ...], extra: dict[str, object]) -> None:
        self._logger.error(message, *args, extra=extra)

    def _job_failed(self, event: JobFailed) -> None:
        extra = _job_fields(event) | {
            "run_count": event.run_count,
            "attempt": event.attempt,
            "will_retry": event.will_retry,
            "error": event.error.message,
            "traceback": event.error.stack,
        }
        self._log(
            "%s failed (attempt %d, %s): %s",
            (event.instance_id, event.attempt, _retry_word(event.will_retry), event.error.message),
            extra,
        )

    def _job_exhausted(self, event: JobRetryExhausted) -> None:
        # The last attempt's traceback was logged with its job.failed record.
        text = event.error.message
        extra = _job_fields(event) | {
            "attempt": event.attempts,
            "will_retry": False,
            "error": text,
            "reason": event.reason,
            "traceback": None,
        }
        self._log(
            "%s gave up after %d attempts (%s): %s",
            (event.instance_id, event.attempts, event.reason, text),
            extra,
        )

    def _step_failed(self, event: StepFailed) -> None:
        extra = _workflow_fields(event, event.step_name) | {
            "attempt": event.attempt,
            "will_retry": event.will_retry,
            "error": event.error,
            "traceback": event.stack,
        }
        self._log(
            "%s step %r failed (attempt %d, %s): %s",
            (
                event.instance_id,
                event.step_name,
                event.attempt,
                _retry_word(event.will_retry),
                event.error,
            ),
            extra,
        )

    def _run_failed(self, event: RunFailed) -> None:
        step = event.failed_step_name
        extra = _workflow_fields(event, step) | {
            "will_retry": False,
            "error": event.error,
            # A failed step's traceback was logged with its step:fail record.
            "traceback": None if step is not None else event.stack,
        }
        where = "" if step is None else f" at step {step!r}"
        self._log("%s failed%s: %s", (event.instance_id, where, event.error), extra)


def _job_fields(event: JobFailed | JobRetryExhausted) -> dict[str, object]:
    return {
        "job_type": event.job_type,
        "job_name": event.job_name,
        "instance_id": event.instance_id,
        "id": event.id,
    }


def _workflow_fields(event: WorkflowEvent, step: str | None) -> dict[str, object]:
    return {
        "job_type": "workflow",
        "job_name": event.job_name,
        "instance_id": event.instance_id,
        "id": event.run_id,
        "run_id": event.run_id,
        "step": step,
    }
