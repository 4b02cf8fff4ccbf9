"""What every client handle shares: name resolution, id checks, lazy calls into the engine.

Every handle method returns a lazy ``Effect``: nothing is read or sent until it runs.
"""

from __future__ import annotations

from collections.abc import Awaitable, Callable, Sequence
from typing import Generic, TypeVar

from durable_effect._effect import Effect, async_effect
from durable_effect._runtime._engine import Engine
from durable_effect.errors import JobNotFoundError, StorageError, ValidationError
from durable_effect.jobs._base import JobDefinition
from durable_effect.jobs._instance import InstanceRef, InstanceTx, validate_id

__all__ = ["EngineSource", "JobHandle"]

D = TypeVar("D", bound=JobDefinition)
R = TypeVar("R")
Err = TypeVar("Err", bound=BaseException)

#: Gives the opened engine (opening storage on first use).
EngineSource = Callable[[], Awaitable[Engine]]


class JobHandle(Generic[D]):
    """A handle on one registered job; subclasses add the job type's operations."""

    job_type: str = ""

    def __init__(self, engine: EngineSource, name: str, definition: D | None) -> None:
        self._engine = engine
        self._name = name
        self._definition = definition

    @property
    def name(self) -> str:
        """The registered job name."""
        return self._name

    def _resolve(self) -> D:
        if self._definition is None:
            raise JobNotFoundError(job_type=self.job_type, job_name=self._name)
        return self._definition

    def _ref(self, id: str) -> InstanceRef:
        return InstanceRef(job_type=self.job_type, job_name=self._name, id=validate_id(id))

    def _call(
        self, id: str, op: Callable[[D, InstanceTx], Effect[R, Err]]
    ) -> Effect[R, Err | JobNotFoundError | ValidationError | StorageError]:
        """Run ``op`` as one handler of instance ``id`` (leased, committed on success)."""
        return self._on_instance(id, op, leased=True)

    def _read(
        self, id: str, op: Callable[[D, InstanceTx], Effect[R, Err]]
    ) -> Effect[R, Err | JobNotFoundError | ValidationError | StorageError]:
        """Run ``op`` over the committed snapshot of ``id``, without a lease; never commits."""
        return self._on_instance(id, op, leased=False)

    def _on_instance(
        self, id: str, op: Callable[[D, InstanceTx], Effect[R, Err]], *, leased: bool
    ) -> Effect[R, Err | JobNotFoundError | ValidationError | StorageError]:
        async def run() -> Effect[R, Err | JobNotFoundError | ValidationError | StorageError]:
            try:
                definition = self._resolve()
                ref = self._ref(id)
            except (JobNotFoundError, ValidationError) as exc:
                return Effect.fail(exc)
            engine = await self._engine()
            if leased:

                def handler(txs: Sequence[InstanceTx]) -> Effect[R, Err]:
                    return op(definition, txs[0])

                return await engine.call([ref], handler, log_level=definition.log_level)
            try:
                tx = await engine.read_tx(ref)
            except StorageError as exc:
                return Effect.fail(exc)
            return op(definition, tx)

        return async_effect(run)
