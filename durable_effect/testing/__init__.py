"""Test helpers for users of durable_effect.

``TestClock`` and ``TestRuntime`` run jobs with time under the test's control,
``RecordingTracker`` keeps every event, and ``StorageContract`` is the storage contract suite
for third-party backends.
"""

from __future__ import annotations

from durable_effect.testing._clock import TestClock
from durable_effect.testing._runtime import RecordingTracker, TestRuntime
from durable_effect.testing._storage_contract import StorageContract

__all__ = ["RecordingTracker", "StorageContract", "TestClock", "TestRuntime"]
