"""Test helpers for users of durable_effect.

``TestClock`` and ``TestRuntime`` run jobs with time under the test's control,
``RecordingTracker`` keeps every event, ``use_clock`` runs plain effects on a clock, and
the storage contract suite for third-party backends is ``durable_effect.testing.contract``
(``StorageContract``; it imports pytest, so it is not imported here: this package works
without pytest installed).
"""

from __future__ import annotations

from durable_effect._clock import use_clock
from durable_effect.testing._clock import TestClock
from durable_effect.testing._runtime import RecordingTracker, TestRuntime

__all__ = ["RecordingTracker", "TestClock", "TestRuntime", "use_clock"]
