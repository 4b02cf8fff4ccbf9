"""`JobsClient`: typed handles on registered jobs, by name or by definition object."""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any, TypeVar, overload

from durable_effect._client import _instances
from durable_effect._client._base import EngineSource
from durable_effect._client._continuous import ContinuousHandle
from durable_effect._client._debounce import DebounceHandle
from durable_effect._client._task import TaskHandle
from durable_effect._client._workflow import WorkflowHandle
from durable_effect._effect import Effect, async_effect
from durable_effect._runtime._registry import Registry
from durable_effect.errors import JobNotFoundError, StorageError, TaggedError, ValidationError
from durable_effect.jobs._base import JobDefinition
from durable_effect.jobs._continuous import ContinuousDefinition
from durable_effect.jobs._debounce import DebounceDefinition
from durable_effect.jobs._instances import InstancePage
from durable_effect.jobs._task import TaskDefinition
from durable_effect.workflow._definition import WorkflowDefinition

__all__ = ["JobsClient"]

S = TypeVar("S")
I = TypeVar("I")  # noqa: E741
O = TypeVar("O")  # noqa: E741
E = TypeVar("E", bound=BaseException)
V = TypeVar("V")


class JobsClient:
    """Handles on the registered jobs. Every handle method returns a lazy ``Effect``.

    Passed the definition object, a handle is typed by its state and event types; passed a
    name, it is looked up when the effect runs (``JobNotFoundError`` if absent).
    """

    def __init__(self, engine: EngineSource, registry: Registry) -> None:
        self._engine = engine
        self._registry = registry

    def _lookup(self, job_type: str, job: str | JobDefinition) -> tuple[str, Any]:
        if isinstance(job, str):
            for name, definition in self._registry:
                if name == job and definition.job_type == job_type:
                    return name, definition
            return job, None
        if not isinstance(job, JobDefinition):
            raise TypeError(
                f"expected a job name or a {job_type} definition, got {type(job).__name__}"
            )
        names = [n for n, d in self._registry if d is job]
        if len(names) == 1 and job.job_type == job_type:
            return names[0], job
        if len(names) > 1:
            raise ValueError(
                f"this definition is registered as {sorted(names)}; pass the name instead"
            )
        return f"<unregistered {job.job_type} definition>", None

    @overload
    def continuous(self, job: ContinuousDefinition[S]) -> ContinuousHandle[S]: ...
    @overload
    def continuous(self, job: str) -> ContinuousHandle[object]: ...
    def continuous(self, job: ContinuousDefinition[Any] | str) -> ContinuousHandle[Any]:
        """The handle of a Continuous job."""
        name, definition = self._lookup("continuous", job)
        return ContinuousHandle(self._engine, name, definition)

    @overload
    def debounce(self, job: DebounceDefinition[S, I]) -> DebounceHandle[S, I]: ...
    @overload
    def debounce(self, job: str) -> DebounceHandle[object, object]: ...
    def debounce(self, job: DebounceDefinition[Any, Any] | str) -> DebounceHandle[Any, Any]:
        """The handle of a Debounce job."""
        name, definition = self._lookup("debounce", job)
        return DebounceHandle(self._engine, name, definition)

    @overload
    def task(self, job: TaskDefinition[S, I]) -> TaskHandle[S, I]: ...
    @overload
    def task(self, job: str) -> TaskHandle[object, object]: ...
    def task(self, job: TaskDefinition[Any, Any] | str) -> TaskHandle[Any, Any]:
        """The handle of a Task job."""
        name, definition = self._lookup("task", job)
        return TaskHandle(self._engine, name, definition)

    def instances(
        self,
        job: str | JobDefinition | None = None,
        status: str | Sequence[str] | None = None,
        limit: int = 50,
        after: str | None = None,
    ) -> Effect[InstancePage, JobNotFoundError | ValidationError | StorageError]:
        """Job instances (Continuous, Debounce, Task) newest first: of ``job`` (a name or a
        definition; every such job when ``None``), with ``status`` (one or several:
        ``running``/``paused``, ``debouncing``, ``active``/``idle``), at most ``limit`` (up
        to 1,000), past the cursor ``after`` (a page's ``next_cursor``).

        An `InstancePage`: a list of `InstanceInfo` with ``next_cursor``, ``None`` exactly
        on the last page. A page costs time in proportion to the page.
        """

        async def run() -> Effect[InstancePage, JobNotFoundError | ValidationError | StorageError]:
            try:
                engine = await self._engine()
                page = await _instances.list_instances(
                    engine, job=job, status=status, limit=limit, after=after
                )
            except (JobNotFoundError, ValidationError, StorageError) as exc:
                return Effect.fail(exc)
            return Effect.succeed(page)

        return async_effect(run)

    @overload
    def workflow(self, job: WorkflowDefinition[I, O, E, V]) -> WorkflowHandle[I, O, E, V]: ...
    @overload
    def workflow(self, job: str) -> WorkflowHandle[object, object, TaggedError, object]: ...
    def workflow(
        self, job: WorkflowDefinition[Any, Any, Any, Any] | str
    ) -> WorkflowHandle[Any, Any, Any, Any]:
        """The handle of a workflow: typed by its input, output, declared errors and events
        when given the definition (by name: any error, any event)."""
        name, definition = self._lookup("workflow", job)
        return WorkflowHandle(self._engine, name, definition)
