"""`Workflow.make`: define a workflow (step-checkpointed runs — Durably's model).

``Workflow.make(input_schema, run, output_schema=None, concurrency_limit=1, retain=None)``
builds a ``WorkflowDefinition``; ``run(step, input) -> Effect[O, E]`` (usually
``@Effect.gen``) is the workflow. Runs go ``pending → leased → completed | failed |
cancelled``, plus ``sleeping`` while they wait for a ``step.sleep`` or a step retry.

* **cancel**: a run no worker holds (pending, sleeping, or abandoned by a crashed worker)
  is cancelled at once; for a run a worker is executing, a cancel request is written and the
  worker stops at its next step boundary (the step's result is not recorded).
* **delete** and **retrigger** need a finished run; **cancel** an active one
  (``InvalidStateError`` otherwise). Unknown runs: ``InstanceNotFoundError``.
* **retention**: with ``retain``, a finished run (and its idempotency mark) is purged that
  long after it finished; until the purge runs, reads already treat it as gone.
"""

from __future__ import annotations

import types
from datetime import timedelta
from typing import Any, TypeVar, overload

from durable_effect import _log
from durable_effect._codec import Codec, codec_for
from durable_effect._duration import Duration, DurationInput
from durable_effect.workflow._definition import RunFn, WorkflowDefinition

__all__ = ["Workflow"]

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741
J = TypeVar("J")


def _check_callable(field: str, value: object) -> None:
    if not callable(value):
        raise TypeError(f"Workflow.make: {field} must be callable, got {type(value).__name__}")


def _schema_codec(field: str, schema: object) -> Codec[Any]:
    try:
        return codec_for(schema)
    except TypeError as exc:
        raise TypeError(f"Workflow.make: {field}: {exc}") from None


class Workflow:
    """Namespace of ``Workflow.make``."""

    @overload
    @staticmethod
    def make(
        input_schema: type[I],
        run: RunFn[I, O],
        output_schema: type[O] | None = None,
        concurrency_limit: int = 1,
        retain: DurationInput | None = None,
        *,
        logging: bool | int = False,
    ) -> WorkflowDefinition[I, O]: ...

    @overload
    @staticmethod
    def make(
        input_schema: types.UnionType | type[J],
        run: RunFn[I, O],
        output_schema: object = None,
        concurrency_limit: int = 1,
        retain: DurationInput | None = None,
        *,
        logging: bool | int = False,
    ) -> WorkflowDefinition[I, O]: ...

    @staticmethod
    def make(
        input_schema: Any,
        run: Any,
        output_schema: Any = None,
        concurrency_limit: int = 1,
        retain: DurationInput | None = None,
        *,
        logging: bool | int = False,
    ) -> WorkflowDefinition[Any, Any]:
        """Define a workflow: ``run(step, input) -> Effect[O, E]`` over inputs of
        ``input_schema``, outputs validated with ``output_schema`` (default: stored as the
        output's own type), at most ``concurrency_limit`` leased runs per concurrency key,
        finished runs purged ``retain`` after they finish (default: kept).

        Invalid arguments raise ``TypeError``/``ValueError`` naming the field.
        """
        input_codec = _schema_codec("input_schema", input_schema)
        if output_schema is not None:
            _schema_codec("output_schema", output_schema)
        _check_callable("run", run)
        limit: object = concurrency_limit
        if isinstance(limit, bool) or not isinstance(limit, int) or concurrency_limit < 1:
            raise ValueError(
                f"Workflow.make: concurrency_limit must be an int >= 1, got {concurrency_limit!r}"
            )
        kept: timedelta | None = None
        if retain is not None:
            try:
                kept = Duration.parse(retain)
            except (ValueError, TypeError) as exc:
                raise ValueError(f"Workflow.make: retain: {exc}") from None
        try:
            level = _log.level_for(logging)
        except TypeError as exc:
            raise TypeError(f"Workflow.make: logging: {exc}") from None
        return WorkflowDefinition(
            input_schema=input_schema,
            run=run,
            output_schema=output_schema,
            concurrency_limit=concurrency_limit,
            retain=kept,
            input_codec=input_codec,
            level=level,
        )
