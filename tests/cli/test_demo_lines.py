"""The demo's event lines read as English (``flushed 1 click``, ``flushed 3 clicks``)."""

from __future__ import annotations

from datetime import UTC, datetime

import pytest

from durable_effect._events import DebounceFlushed
from durable_effect.cli._demo import _describe


@pytest.mark.parametrize(
    ("count", "words"), [(1, "flushed 1 click (max_events)"), (3, "flushed 3 clicks (max_events)")]
)
def test_a_flush_line_counts_its_clicks(count: int, words: str) -> None:
    event = DebounceFlushed(
        event_id="e",
        timestamp=datetime(2026, 1, 1, tzinfo=UTC),
        instance_id="debounce:clicks:site",
        id="site",
        job_type="debounce",
        job_name="clicks",
        event_count=count,
        reason="max_events",
    )
    line = _describe(event)
    assert line is not None
    assert line.split(None, 1)[1] == words
