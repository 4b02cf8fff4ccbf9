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
from collections.abc import Callable
from itertools import chain
from typing import Any, Never, TypeAlias, overload

from typing_extensions import TypeVar

from durable_effect._codec import codec_for
from durable_effect._duration import DurationInput
from durable_effect._effect import Effect
from durable_effect.errors import TaggedError
from durable_effect.jobs._checks import Checks
from durable_effect.workflow._definition import WorkflowDefinition
from durable_effect.workflow._failures import ErrorClasses, check_error_class
from durable_effect.workflow._step import Step
from durable_effect.workflow._values import KnownTypes, classes_in

__all__ = ["Workflow"]

I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741
J = TypeVar("J")
E = TypeVar("E", bound=BaseException, default=Never)
Er = TypeVar("Er", bound=BaseException)
V = TypeVar("V", default=object)

#: ``run``, typed with the errors it declares (taken as ``E`` for a union ``error_schema``).
RunOf: TypeAlias = Callable[[Step, I], Effect[O, Er]]
#: What mypy makes of ``A | B`` written as a value (a union schema).
Union: TypeAlias = types.UnionType | type[Any]
ErrorUnion: TypeAlias = types.UnionType | type[TaggedError]


def _error_classes(error_schema: object) -> list[type[TaggedError]]:
    classes = list(classes_in(error_schema)) if error_schema is not None else []
    if error_schema is not None and not classes:
        classes = [error_schema]  # type: ignore[list-item]  # refused just below
    return [check_error_class("Workflow.make: error_schema", cls) for cls in classes]


class Workflow:
    """Namespace of ``Workflow.make``."""

    # Typing: a schema written ``A | B`` types as a union *value*, from which mypy infers no
    # type. So a union input is typed by ``run``'s annotation (as before), a union
    # ``error_schema`` by the errors ``run`` declares (a superset of what reads back as
    # itself: sound), and a union ``event_schema`` accepts any ``object`` (checked when sent).

    @overload
    @staticmethod
    def make(
        input_schema: type[I],
        run: RunOf[I, O, Any],
        output_schema: type[O] | None = None,
        concurrency_limit: int = 1,
        retain: DurationInput | None = None,
        *,
        logging: bool | int | None = None,
        event_schema: type[V] | None = None,
        error_schema: type[E] | None = None,
        run_timeout: DurationInput | None = None,
    ) -> WorkflowDefinition[I, O, E, V]: ...

    @overload
    @staticmethod
    def make(
        input_schema: type[I],
        run: RunOf[I, O, Er],
        output_schema: type[O] | None = None,
        concurrency_limit: int = 1,
        retain: DurationInput | None = None,
        *,
        logging: bool | int | None = None,
        event_schema: type[V] | None = None,
        error_schema: ErrorUnion,
        run_timeout: DurationInput | None = None,
    ) -> WorkflowDefinition[I, O, Er, V]: ...

    @overload
    @staticmethod
    def make(
        input_schema: Union,
        run: RunOf[I, O, Any],
        output_schema: object = None,
        concurrency_limit: int = 1,
        retain: DurationInput | None = None,
        *,
        logging: bool | int | None = None,
        event_schema: type[V] | None = None,
        error_schema: type[E] | None = None,
        run_timeout: DurationInput | None = None,
    ) -> WorkflowDefinition[I, O, E, V]: ...

    @overload
    @staticmethod
    def make(
        input_schema: Union,
        run: RunOf[I, O, Er],
        output_schema: object = None,
        concurrency_limit: int = 1,
        retain: DurationInput | None = None,
        *,
        logging: bool | int | None = None,
        event_schema: type[V] | None = None,
        error_schema: ErrorUnion,
        run_timeout: DurationInput | None = None,
    ) -> WorkflowDefinition[I, O, Er, V]: ...

    @overload
    @staticmethod
    def make(
        input_schema: Union,
        run: RunOf[I, O, Er],
        output_schema: object = None,
        concurrency_limit: int = 1,
        retain: DurationInput | None = None,
        *,
        logging: bool | int | None = None,
        event_schema: Union,
        error_schema: ErrorUnion | None = None,
        run_timeout: DurationInput | None = None,
    ) -> WorkflowDefinition[I, O, Er, object]: ...

    @staticmethod
    def make(
        input_schema: Any,
        run: Any,
        output_schema: Any = None,
        concurrency_limit: int = 1,
        retain: DurationInput | None = None,
        *,
        logging: bool | int | None = None,
        event_schema: Any = None,
        error_schema: Any = None,
        run_timeout: DurationInput | None = None,
    ) -> WorkflowDefinition[Any, Any, Any, Any]:
        """Define a workflow: ``run(step, input) -> Effect[O, E]`` over inputs of
        ``input_schema``, outputs validated with ``output_schema`` (default: stored as the
        output's own type), at most ``concurrency_limit`` leased runs per concurrency key,
        finished runs purged ``retain`` after they finish (default: kept).

        ``event_schema``: the events ``send`` accepts and ``step.wait_for_event`` gives (one
        type, or a union of tagged msgspec Structs; default: any JSON value).
        ``error_schema``: the ``TaggedError`` classes (one, or a union) a failed run reads
        back as, after persistence. ``run_timeout``: a deadline, from each run's trigger.

        Invalid arguments raise ``TypeError``/``ValueError`` naming the field.
        """
        check = Checks("Workflow.make")
        input_codec = check.schema("input_schema", input_schema)
        if output_schema is not None:
            check.schema("output_schema", output_schema)
        event_codec = codec_for(object)
        if event_schema is not None:
            event_codec = check.schema("event_schema", event_schema)
        errors = _error_classes(error_schema)
        check.callable("run", run)
        check.int_at_least("concurrency_limit", concurrency_limit, 1)
        kept = None if retain is None else check.duration("retain", retain)
        deadline = None
        if run_timeout is not None:
            deadline = check.positive_duration("run_timeout", run_timeout)
        level = check.logging(logging)
        declared = chain(
            classes_in(input_schema), classes_in(output_schema), classes_in(event_schema), errors
        )
        return WorkflowDefinition(
            input_schema=input_schema,
            run=run,
            output_schema=output_schema,
            concurrency_limit=concurrency_limit,
            retain=kept,
            input_codec=input_codec,
            level=level,
            event_schema=event_schema,
            error_schema=error_schema,
            run_timeout=deadline,
            event_codec=event_codec,
            known=KnownTypes(declared),
            errors=ErrorClasses(errors),
        )
