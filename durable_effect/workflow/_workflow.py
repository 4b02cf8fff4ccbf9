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
from typing import Any, TypeVar, overload

from durable_effect._duration import DurationInput
from durable_effect.jobs._checks import Checks
from durable_effect.workflow._definition import RunFn, WorkflowDefinition

__all__ = ["Workflow"]

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741
J = TypeVar("J")


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
        check = Checks("Workflow.make")
        input_codec = check.schema("input_schema", input_schema)
        if output_schema is not None:
            check.schema("output_schema", output_schema)
        check.callable("run", run)
        check.int_at_least("concurrency_limit", concurrency_limit, 1)
        kept = None if retain is None else check.duration("retain", retain)
        level = check.logging(logging)
        return WorkflowDefinition(
            input_schema=input_schema,
            run=run,
            output_schema=output_schema,
            concurrency_limit=concurrency_limit,
            retain=kept,
            input_codec=input_codec,
            level=level,
        )
