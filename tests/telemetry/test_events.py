"""Event values: wire form (camelCase, ISO ``Z`` timestamps), immutability, recording."""

from __future__ import annotations

import inspect
import re
import types
import typing
from collections.abc import Callable
from datetime import UTC, datetime, timedelta, timezone

import attrs
import pytest

from durable_effect import _events, telemetry
from durable_effect._codec import decode_json, encode_json
from durable_effect._events import ErrorInfo, Event, JobStarted, to_camel
from durable_effect._runtime._bus import EventBus
from durable_effect._worker import WorkerError
from durable_effect.testing._runtime import RecordingTracker

CAMEL = re.compile(r"^[a-z][a-zA-Z0-9]*$")
ISO_Z = re.compile(r"^\d{4}-\d\d-\d\dT\d\d:\d\d:\d\d\.\d{3}Z$")
AT = datetime(2026, 3, 4, 5, 6, 7, 891_234, tzinfo=UTC)

#: The job event types of SPEC §7 (workflow events live with the workflow module).
JOB_EVENT_TYPES = {
    "job.started",
    "job.executed",
    "job.failed",
    "job.retryExhausted",
    "job.terminated",
    "debounce.started",
    "debounce.flushed",
    "task.scheduled",
}


def concrete_event_classes() -> list[type[Event]]:
    """Every event class defined in ``_events`` with its own ``type``, plus ``WorkerError``."""
    found: list[type[Event]] = [WorkerError]
    for _, cls in inspect.getmembers(_events, inspect.isclass):
        own_type = vars(cls).get("type", "event") != "event"
        if issubclass(cls, Event) and cls.__module__ == _events.__name__ and own_type:
            found.append(cls)
    return sorted(found, key=lambda c: c.__name__)


def sample(tp: object, name: str) -> object:
    """A plausible value of the annotated type ``tp`` (for field ``name``)."""
    if tp is str:
        return f"{name}-value"
    if tp is bool:
        return True
    if tp is int:
        return 7
    if tp is float:
        return 1.5
    if tp is datetime:
        return AT
    if tp is ErrorInfo:
        return ErrorInfo(message="boom", stack="Traceback ...")
    if tp is object:
        return {"count": 1, "tags": ["a"]}
    origin = typing.get_origin(tp)
    if origin is typing.Literal:
        return typing.get_args(tp)[0]
    if origin is typing.Union or origin is types.UnionType:
        return sample(next(a for a in typing.get_args(tp) if a is not type(None)), name)
    if origin in (list, tuple):
        return [sample(typing.get_args(tp)[0], name)]
    if origin is dict:
        return {"k": sample(typing.get_args(tp)[1], name)}
    raise AssertionError(f"no sample value for field {name!r} of type {tp!r}: extend sample()")


def build(cls: type[Event]) -> Event:
    hints = typing.get_type_hints(cls)
    values = {f.name: sample(hints[f.name], f.name) for f in attrs.fields(cls)}
    values["timestamp"] = AT
    make: Callable[..., Event] = cls
    return make(**values)


EVENT_CLASSES = concrete_event_classes()


def test_every_job_event_type_of_the_spec_has_a_class() -> None:
    types_ = [cls.type for cls in EVENT_CLASSES]
    assert len(types_) == len(set(types_)), "event types must be unique"
    assert set(types_) >= JOB_EVENT_TYPES


def test_the_public_module_exports_every_event_class() -> None:
    for cls in [*EVENT_CLASSES, Event, ErrorInfo]:
        assert getattr(telemetry, cls.__name__) is cls, cls.__name__
        assert cls.__name__ in telemetry.__all__
    assert telemetry.Tracker is _events.Tracker


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.__name__)
def test_wire_form_has_type_and_camel_case_key_for_every_field(cls: type[Event]) -> None:
    event = build(cls)
    wire = event.to_wire()
    assert wire["type"] == cls.type == event.type
    expected = {"type"} | {to_camel(f.name) for f in attrs.fields(cls)}
    assert set(wire) == expected
    for key in wire:
        assert CAMEL.match(key), key
    for field in attrs.fields(cls):
        value = getattr(event, field.name)
        on_wire = wire[to_camel(field.name)]
        if isinstance(value, datetime):
            assert isinstance(on_wire, str)
            assert ISO_Z.match(on_wire), on_wire
        elif isinstance(value, ErrorInfo):
            assert on_wire == {"message": value.message, "stack": value.stack}
        else:
            assert on_wire == value
    assert wire["timestamp"] == "2026-03-04T05:06:07.891Z"
    assert wire["eventId"] == event.event_id


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.__name__)
def test_wire_form_is_json(cls: type[Event]) -> None:
    wire = build(cls).to_wire()
    assert decode_json(encode_json(wire)) == wire


@pytest.mark.parametrize("cls", EVENT_CLASSES, ids=lambda c: c.__name__)
def test_events_are_frozen(cls: type[Event]) -> None:
    event = build(cls)
    with pytest.raises(attrs.exceptions.FrozenInstanceError):
        event.event_id = "other"  # type: ignore[misc]
    assert build(cls) == event  # value equality


def test_snake_case_attributes() -> None:
    event = JobStarted(
        event_id="e1",
        timestamp=AT,
        instance_id="debounce:batch:a",
        id="a",
        job_type="debounce",
        job_name="batch",
    )
    assert (event.type, event.instance_id, event.job_type, event.job_name, event.source) == (
        "job.started",
        "debounce:batch:a",
        "debounce",
        "batch",
        "job",
    )
    assert event.to_wire() == {
        "type": "job.started",
        "eventId": "e1",
        "timestamp": "2026-03-04T05:06:07.891Z",
        "source": "job",
        "instanceId": "debounce:batch:a",
        "id": "a",
        "jobType": "debounce",
        "jobName": "batch",
        "input": None,
    }


def test_timestamps_are_converted_to_utc() -> None:
    plus_two = timezone(timedelta(hours=2))
    event = JobStarted(
        event_id="e",
        timestamp=datetime(2026, 1, 1, 2, 30, 0, 5_999, tzinfo=plus_two),
        instance_id="task:t:a",
        id="a",
        job_type="task",
        job_name="t",
    )
    assert event.to_wire()["timestamp"] == "2026-01-01T00:30:00.005Z"


def test_camel_case_conversion() -> None:
    assert to_camel("instance_id") == "instanceId"
    assert to_camel("pre_execution_state") == "preExecutionState"
    assert to_camel("id") == "id"


# ---- RecordingTracker --------------------------------------------------------------------


def started(n: int) -> JobStarted:
    return JobStarted(
        event_id=f"e{n}",
        timestamp=AT,
        instance_id=f"task:t:{n}",
        id=str(n),
        job_type="task",
        job_name="t",
    )


async def test_recording_tracker_records_in_order() -> None:
    tracker = RecordingTracker()
    as_protocol: telemetry.Tracker = tracker
    handle: Callable[[Event], object] = as_protocol.handle
    events = [started(n) for n in range(5)]
    other = build(WorkerError)
    for event in [*events[:3], other, *events[3:]]:
        assert handle(event) is None
    assert tracker.events == [*events[:3], other, *events[3:]]
    assert tracker.of_type("job.started") == events
    assert tracker.of_type("worker:error") == [other]
    assert not tracker.closed
    await tracker.aclose()
    assert tracker.closed


def test_the_bus_delivers_to_every_tracker_in_order_despite_a_failing_one() -> None:
    class Broken:
        def handle(self, event: Event) -> None:
            raise RuntimeError("tracker bug")

        async def aclose(self) -> None:
            return None

    first, last = RecordingTracker(), RecordingTracker()
    bus = EventBus([first, Broken(), last])
    events = [started(n) for n in range(3)]
    bus.publish(events)
    assert first.events == events
    assert last.events == events
