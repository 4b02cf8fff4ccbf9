"""Test helpers for users of durable_effect.

``TestClock`` and ``TestRuntime`` run jobs with time under the test's control,
``RecordingTracker`` keeps every event, ``use_clock`` runs plain effects on a clock, and
``StorageContract`` is the storage contract suite for third-party backends.
"""

from __future__ import annotations

from durable_effect._clock import use_clock
from durable_effect.testing._clock import TestClock
from durable_effect.testing._runtime import RecordingTracker, TestRuntime
from durable_effect.testing._storage_contract import StorageContract

__all__ = ["RecordingTracker", "StorageContract", "TestClock", "TestRuntime", "use_clock"]
