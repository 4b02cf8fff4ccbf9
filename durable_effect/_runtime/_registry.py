"""The registry: job names to definitions, and instance ids back to their definition."""

from __future__ import annotations

from collections.abc import Iterator, Mapping

from durable_effect.errors import JobNotFoundError
from durable_effect.jobs._base import JobDefinition
from durable_effect.jobs._index_keys import JOB_META_TYPE
from durable_effect.jobs._instance import Indexer, InstanceRef

__all__ = ["Registry"]

_MAX_NAME = 128


class Registry:
    """Validated, immutable mapping of job names to definitions."""

    def __init__(self, definitions: Mapping[str, JobDefinition]) -> None:
        if not isinstance(definitions, Mapping):
            raise TypeError(
                f"definitions must be a mapping of names to job definitions, "
                f"got {type(definitions).__name__}"
            )
        checked: dict[str, JobDefinition] = {}
        for name, definition in definitions.items():
            key: object = name
            if not isinstance(key, str) or not name:
                raise ValueError(f"job names must be non-empty strings, got {name!r}")
            if ":" in name or "\x00" in name or len(name) > _MAX_NAME:
                raise ValueError(
                    f"job name {name!r} must not contain ':' or NUL "
                    f"and must be at most {_MAX_NAME} characters"
                )
            if not isinstance(definition, JobDefinition):
                raise TypeError(
                    f"job {name!r} is not a job definition (made by Continuous.make, "
                    f"Debounce.make, Task.make or Workflow.make): {type(definition).__name__}"
                )
            checked[name] = definition
        self._by_name = checked
        #: The indexer of each job's own instances, by (job type, job name).
        self._indexers: dict[tuple[str, str], Indexer] = {}
        for name, definition in checked.items():
            indexer = definition.indexer(name)
            if indexer is not None:
                self._indexers[(definition.job_type, name)] = indexer

    def __iter__(self) -> Iterator[tuple[str, JobDefinition]]:
        return iter(self._by_name.items())

    def get(self, job_type: str, name: str) -> JobDefinition:
        """The definition named ``name`` of type ``job_type``; ``JobNotFoundError`` if none."""
        definition = self._by_name.get(name)
        if definition is None or definition.job_type != job_type:
            raise JobNotFoundError(job_type=job_type, job_name=name)
        return definition

    def indexer_for(self, ref: InstanceRef) -> Indexer | None:
        """The indexer of a registered job's instance (``None`` for anything else)."""
        return self._indexers.get((ref.job_type, ref.job_name))

    def for_instance(self, instance_id: str) -> tuple[InstanceRef, JobDefinition] | None:
        """The definition an instance id belongs to, or ``None`` if it is not registered.

        A job's bookkeeping instance (``jobmeta:{name}:{job_type}``) belongs to the job.
        """
        try:
            ref = InstanceRef.parse(instance_id)
        except ValueError:
            return None
        definition = self._by_name.get(ref.job_name)
        if definition is None:
            return None
        job_type = ref.id if ref.job_type == JOB_META_TYPE else ref.job_type
        if definition.job_type != job_type:
            return None
        return ref, definition

    def named(self, name: str) -> JobDefinition | None:
        """The definition registered as ``name``, whatever its type."""
        return self._by_name.get(name)
