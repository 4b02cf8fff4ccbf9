"""Debounce jobs: collect events into a batch, reduce them into a state, flush the batch once.

A batch opens with its first event and flushes (runs ``execute`` once for all its events)
when the first of these happens: ``flush_after`` has passed since its **first** event;
``idle_after`` (optional) has passed since its **last** event (a trailing debounce, still
capped by ``flush_after``); an ``add`` brings it to ``max_events`` (the flush runs inside
that ``add``); a client calls ``flush``. After a successful flush the batch is gone (the
instance reads as ``not_found``) and the next ``add`` opens a new one.

``on_event`` reduces each event into the state; without it the state is the latest event.
``event_id``s are remembered per instance for ``dedupe_window`` (24 hours by default),
across batches: a repeated one fails with ``DuplicateEventError`` and changes nothing.

A flush that fails keeps the batch: with ``retry`` it is tried again after the backoff
(events added meanwhile join it) and dropped only when the attempts run out
(``job.retryExhausted``); without ``retry`` it is tried again ``flush_after`` later
(``job.failed`` each time). A failing ``max_events`` flush inside an ``add`` is handled the
same way: the ``add`` itself succeeds (its event is kept).
"""

from __future__ import annotations

from typing import Any, TypeVar, overload

from durable_effect._backoff import Retry
from durable_effect._codec import Codec
from durable_effect._duration import DurationInput
from durable_effect.jobs._checks import Checks, SchemaOf
from durable_effect.jobs._debounce_context import (
    DebounceContext,
    DebounceEventContext,
    FlushReason,
)
from durable_effect.jobs._debounce_definition import DebounceDefinition, Execute, Reducer
from durable_effect.jobs._debounce_results import (
    DebounceAddResult,
    DebounceClearResult,
    DebounceFlushResult,
    DebounceStateResult,
    DebounceStatusResult,
)

__all__ = [
    "Debounce",
    "DebounceAddResult",
    "DebounceClearResult",
    "DebounceContext",
    "DebounceDefinition",
    "DebounceEventContext",
    "DebounceFlushResult",
    "DebounceStateResult",
    "DebounceStatusResult",
    "FlushReason",
]

S = TypeVar("S")
I = TypeVar("I")  # noqa: E741


class Debounce:
    """Namespace of the Debounce job type: ``Debounce.make(...)``."""

    __slots__ = ()

    def __init__(self) -> None:
        raise TypeError("Debounce is a namespace; use Debounce.make(...)")

    # Two overloads: without a state schema (the state is the latest event) and with one.
    # Schemas are typed `SchemaOf` so that the types come from the schemas even when the
    # handlers are lambdas, and from the handlers' annotations for a union of Structs.
    @overload
    @staticmethod
    def make(
        event_schema: SchemaOf[I],
        execute: Execute[I],
        flush_after: DurationInput,
        state_schema: None = None,
        max_events: int | None = None,
        idle_after: DurationInput | None = None,
        on_event: Reducer[I, I] | None = None,
        retry: Retry | None = None,
        logging: bool | int | None = None,
        dedupe_window: DurationInput = "24 hours",
    ) -> DebounceDefinition[I, I]: ...

    @overload
    @staticmethod
    def make(
        event_schema: SchemaOf[I],
        execute: Execute[S],
        flush_after: DurationInput,
        state_schema: type[S],
        max_events: int | None = None,
        idle_after: DurationInput | None = None,
        *,
        on_event: Reducer[S, I],
        retry: Retry | None = None,
        logging: bool | int | None = None,
        dedupe_window: DurationInput = "24 hours",
    ) -> DebounceDefinition[S, I]: ...

    @overload
    @staticmethod
    def make(
        event_schema: SchemaOf[I],
        execute: Execute[S],
        flush_after: DurationInput,
        state_schema: SchemaOf[S],
        max_events: int | None = None,
        idle_after: DurationInput | None = None,
        *,
        on_event: Reducer[S, I],
        retry: Retry | None = None,
        logging: bool | int | None = None,
        dedupe_window: DurationInput = "24 hours",
    ) -> DebounceDefinition[S, I]: ...

    @staticmethod
    def make(  # noqa: PLR0917 - SPEC's signature is positional
        event_schema: object,
        execute: Execute[Any],
        flush_after: DurationInput,
        state_schema: object = None,
        max_events: int | None = None,
        idle_after: DurationInput | None = None,
        on_event: Reducer[Any, Any] | None = None,
        retry: Retry | None = None,
        logging: bool | int | None = None,
        dedupe_window: DurationInput = "24 hours",
    ) -> DebounceDefinition[Any, Any]:
        """Define a Debounce job (see the module docstring for the semantics).

        ``event_schema`` validates every event; ``state_schema`` the reduced state (without
        it the state is the latest event, unless ``on_event`` reduces events into a value of
        the event schema). ``on_event`` is required when ``state_schema`` is given.
        Durations accept anything ``Duration.parse`` does.

        >>> from durable_effect import Effect
        >>> job = Debounce.make(int, lambda ctx: Effect.succeed(None), flush_after="5 s")
        >>> job.flush_after, job.state_schema
        (datetime.timedelta(seconds=5), <class 'int'>)
        >>> Debounce.make(int, lambda ctx: Effect.succeed(None), flush_after="0 s")
        Traceback (most recent call last):
            ...
        ValueError: Debounce.make: flush_after must be positive, got '0 s'
        """
        check = Checks("Debounce.make")
        event_codec: Codec[Any] = check.schema("event_schema", event_schema)
        check.callable("execute", execute)
        check.callable("on_event", on_event, optional=True)
        if state_schema is None:
            state_codec: Codec[Any] = event_codec
            state_schema = event_schema
        else:
            if on_event is None:
                raise TypeError(
                    "Debounce.make: on_event is required when state_schema is given "
                    "(the default reducer keeps the latest event, of the event schema)"
                )
            state_codec = check.schema("state_schema", state_schema)
        if max_events is not None:
            check.int_at_least("max_events", max_events, 1)
        check.retry(retry)
        level = check.logging(logging)
        return DebounceDefinition(
            event_schema=event_schema,
            execute=execute,
            flush_after=check.positive_duration("flush_after", flush_after),
            state_schema=state_schema,
            max_events=max_events,
            idle_after=None
            if idle_after is None
            else check.positive_duration("idle_after", idle_after),
            on_event=on_event,
            retry=retry,
            logging=logging,
            dedupe_window=check.positive_duration("dedupe_window", dedupe_window),
            log_level=level,
            event_codec=event_codec,
            state_codec=state_codec,
        )
