"""Tests of ``durable_effect.telemetry``: events, trackers and logging."""
