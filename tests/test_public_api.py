"""The curated public surface: SPEC §1's names are exported, and every export resolves."""

from __future__ import annotations

import importlib

import pytest

PUBLIC = {
    "durable_effect": [
        "Effect",
        "Gen",
        "Duration",
        "Backoff",
        "Retry",
        "Continuous",
        "Debounce",
        "Task",
        "Workflow",
        "create_durable_jobs",
        "DurableJobs",
        "JobsClient",
        "Ok",
        "Err",
        "ContinuousContext",
        "DebounceContext",
        "DebounceEventContext",
        "TaskContext",
        "Step",
        "TaggedError",
        "JobNotFoundError",
        "InstanceNotFoundError",
        "InvalidStateError",
        "ConflictError",
        "ValidationError",
        "ExecutionError",
        "DuplicateEventError",
        "StorageError",
        "SchedulerError",
        "RetryExhaustedError",
        "StepTimeoutError",
        "RunCancelledError",
        "LeaseLostError",
        "RunPage",
        "InstancePage",
        "InstanceInfo",
    ],
    "durable_effect.errors": ["TaggedError", "ValidationError", "ExecutionError"],
    "durable_effect.storage": [
        "open_storage",
        "MemoryStorage",
        "SqliteStorage",
        "PostgresStorage",
        "Storage",
    ],
    "durable_effect.testing": ["TestClock", "TestRuntime", "RecordingTracker"],
    "durable_effect.testing.contract": [
        "StorageContract",
        "ServerClockStorageContract",
        "CALLER_CLOCK_TESTS",
    ],
    "durable_effect.telemetry": ["Tracker", "HttpTracker"],
    "durable_effect.cli": ["main"],
    "durable_effect.web": ["create_app"],
}


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_spec_names_are_exported(module_name: str) -> None:
    module = importlib.import_module(module_name)
    missing = [name for name in PUBLIC[module_name] if name not in module.__all__]
    assert not missing, f"{module_name} does not export {missing}"


@pytest.mark.parametrize("module_name", sorted(PUBLIC))
def test_every_export_resolves(module_name: str) -> None:
    module = importlib.import_module(module_name)
    for name in module.__all__:
        assert getattr(module, name, None) is not None, f"{module_name}.{name}"


def test_every_error_is_exported_at_the_top() -> None:
    errors = importlib.import_module("durable_effect.errors")
    top = importlib.import_module("durable_effect")
    assert set(errors.__all__) <= set(top.__all__)
