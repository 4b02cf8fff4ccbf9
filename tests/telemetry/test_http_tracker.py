"""`HttpTracker` against a real local HTTP server (bounded live tests)."""

from __future__ import annotations

import asyncio
import contextlib
import inspect
import json
import logging
import math
import socket
import threading
from collections.abc import AsyncIterator, Callable, Iterator
from datetime import UTC, datetime
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer

import attrs
import pytest

from durable_effect._backoff import Backoff
from durable_effect._runtime._bus import EventBus
from durable_effect.telemetry import (
    ErrorInfo,
    Event,
    HttpTracker,
    JobExecuted,
    JobFailed,
    JobStarted,
    Tracker,
)

pytestmark = pytest.mark.live

FAST = Backoff.constant("10 ms")
AT = datetime(2026, 1, 1, tzinfo=UTC)


@attrs.frozen
class Received:
    """One request the server got."""

    method: str
    path: str
    headers: dict[str, str]
    body: bytes

    @property
    def events(self) -> list[dict[str, object]]:
        doc = json.loads(self.body)
        assert isinstance(doc, dict)
        assert list(doc) == ["events"]
        events = doc["events"]
        assert isinstance(events, list)
        return events


class Endpoint:
    """A threaded HTTP server on 127.0.0.1 that records requests and answers scripted codes."""

    def __init__(self) -> None:
        self.requests: list[Received] = []
        self.statuses: list[int] = []  # answered in order, then `default`
        self.default = 200
        self.lock = threading.Lock()
        endpoint = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                length = int(self.headers.get("Content-Length", "0"))
                body = self.rfile.read(length)
                with endpoint.lock:
                    endpoint.requests.append(
                        Received(
                            method="POST",
                            path=self.path,
                            headers={k.lower(): v for k, v in self.headers.items()},
                            body=body,
                        )
                    )
                    status = endpoint.statuses.pop(0) if endpoint.statuses else endpoint.default
                self.send_response(status)
                self.send_header("Content-Length", "2")
                self.end_headers()
                self.wfile.write(b"ok")

            def log_message(self, format: str, *args: object) -> None:
                pass

        self.server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self.port = self.server.server_address[1]
        self.url = f"http://127.0.0.1:{self.port}/ingest"
        self.thread = threading.Thread(
            target=self.server.serve_forever, kwargs={"poll_interval": 0.01}, daemon=True
        )

    def received(self) -> list[Received]:
        with self.lock:
            return list(self.requests)

    def events(self) -> list[dict[str, object]]:
        return [ev for req in self.received() for ev in req.events]

    async def wait_requests(self, count: int, deadline: float = 2.0) -> list[Received]:
        """Wait (polling, bounded) until at least ``count`` requests arrived."""
        for _ in range(int(deadline / 0.01)):
            got = self.received()
            if len(got) >= count:
                return got
            await asyncio.sleep(0.01)
        raise AssertionError(f"expected {count} requests, got {len(self.received())}")


@pytest.fixture
def endpoint() -> Iterator[Endpoint]:
    server = Endpoint()
    server.thread.start()
    try:
        yield server
    finally:
        server.server.shutdown()
        server.server.server_close()
        server.thread.join(timeout=5)


@pytest.fixture
def refused_url() -> str:
    """A URL whose port nothing listens on (connection refused)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        port = sock.getsockname()[1]
    return f"http://127.0.0.1:{port}/ingest"


@pytest.fixture
def black_hole_url() -> Iterator[str]:
    """A URL that accepts connections (kernel backlog) but never answers."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as sock:
        sock.bind(("127.0.0.1", 0))
        sock.listen(16)
        yield f"http://127.0.0.1:{sock.getsockname()[1]}/ingest"


def started(n: int) -> JobStarted:
    return JobStarted(
        event_id=f"e{n}",
        timestamp=AT,
        instance_id=f"continuous:tick:{n}",
        id=str(n),
        job_type="continuous",
        job_name="tick",
    )


def tracker_for(url: str, **options: object) -> HttpTracker:
    settings: dict[str, object] = {
        "env": "test",
        "service_key": "svc",
        "flush_interval": 0.01,
        "retry": FAST,
        "timeout": 1.0,
    }
    settings.update(options)
    return HttpTracker(url, **settings)  # type: ignore[arg-type]


@contextlib.asynccontextmanager
async def closing(tracker: HttpTracker) -> AsyncIterator[HttpTracker]:
    try:
        yield tracker
    finally:
        await asyncio.wait_for(tracker.aclose(), 3.0)


def ids(events: list[dict[str, object]]) -> list[object]:
    return [ev["eventId"] for ev in events]


# ---- delivery shape --------------------------------------------------------------------------


async def test_batches_keep_order_and_count(endpoint: Endpoint) -> None:
    tracker = tracker_for(endpoint.url, batch_size=3)
    for n in range(7):
        tracker.handle(started(n))
    await asyncio.wait_for(tracker.aclose(), 3.0)

    requests = endpoint.received()
    assert len(requests) == math.ceil(7 / 3)
    assert [len(r.events) for r in requests] == [3, 3, 1]
    assert ids(endpoint.events()) == [f"e{n}" for n in range(7)]
    assert (tracker.sent, tracker.dropped, tracker.failed_batches, tracker.pending) == (7, 0, 0, 0)


async def test_request_is_json_post_to_the_endpoint_path(endpoint: Endpoint) -> None:
    tracker = tracker_for(endpoint.url + "?source=jobs")
    tracker.handle(started(1))
    await asyncio.wait_for(tracker.aclose(), 3.0)

    [request] = endpoint.received()
    assert request.method == "POST"
    assert request.path == "/ingest?source=jobs"
    assert request.headers["content-type"] == "application/json"
    assert int(request.headers["content-length"]) == len(request.body)
    assert request.headers["host"] == f"127.0.0.1:{endpoint.port}"


async def test_each_event_has_env_service_key_and_camel_case_keys(endpoint: Endpoint) -> None:
    tracker = tracker_for(endpoint.url)
    tracker.handle(started(1))
    tracker.handle(
        JobExecuted(
            event_id="x",
            timestamp=AT,
            instance_id="continuous:tick:a",
            id="a",
            job_type="continuous",
            job_name="tick",
            run_count=2,
            attempt=1,
            duration_ms=5,
            pre_execution_state={"count": 1},
        )
    )
    tracker.handle(
        JobFailed(
            event_id="f",
            timestamp=AT,
            instance_id="task:t:a",
            id="a",
            job_type="task",
            job_name="t",
            error=ErrorInfo(message="boom", stack="trace"),
            will_retry=True,
        )
    )
    await asyncio.wait_for(tracker.aclose(), 3.0)

    events = endpoint.events()
    assert len(events) == 3
    for ev in events:
        assert ev["env"] == "test"
        assert ev["serviceKey"] == "svc"
        assert all("_" not in key for key in ev), sorted(ev)
    executed = events[1]
    assert executed["type"] == "job.executed"
    assert executed["instanceId"] == "continuous:tick:a"
    assert executed["runCount"] == 2
    assert executed["durationMs"] == 5
    assert executed["preExecutionState"] == {"count": 1}
    assert executed["timestamp"] == "2026-01-01T00:00:00.000Z"
    failed = events[2]
    assert failed["error"] == {"message": "boom", "stack": "trace"}
    assert failed["willRetry"] is True
    assert failed["jobType"] == "task"


async def test_flushes_on_the_interval_without_close(endpoint: Endpoint) -> None:
    async with closing(tracker_for(endpoint.url, batch_size=100)) as tracker:
        for n in range(3):
            tracker.handle(started(n))
        [request] = await endpoint.wait_requests(1)
        assert ids(request.events) == ["e0", "e1", "e2"]
        for _ in range(100):  # the counter is updated once the response is read
            if tracker.sent == 3:
                break
            await asyncio.sleep(0.01)
        assert tracker.sent == 3
    assert len(endpoint.received()) == 1  # closing with an empty buffer posts nothing


async def test_a_full_batch_is_sent_before_the_interval(endpoint: Endpoint) -> None:
    # flush_interval is long: only reaching batch_size can trigger the first POST.
    async with closing(tracker_for(endpoint.url, batch_size=2, flush_interval=60.0)) as tracker:
        tracker.handle(started(0))
        await asyncio.sleep(0.05)
        assert endpoint.received() == []
        tracker.handle(started(1))
        [request] = await endpoint.wait_requests(1)
        assert ids(request.events) == ["e0", "e1"]


async def test_an_unencodable_event_is_dropped_alone(
    endpoint: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    bad = JobExecuted(
        event_id="bad",
        timestamp=AT,
        instance_id="continuous:tick:a",
        id="a",
        job_type="continuous",
        job_name="tick",
        pre_execution_state=object(),
    )
    tracker = tracker_for(endpoint.url)
    with caplog.at_level(logging.WARNING, logger="durable_effect"):
        tracker.handle(started(0))
        tracker.handle(bad)
        tracker.handle(started(2))
        await asyncio.wait_for(tracker.aclose(), 3.0)
    assert ids(endpoint.events()) == ["e0", "e2"]
    assert (tracker.sent, tracker.dropped) == (2, 1)
    assert any("cannot encode" in r.getMessage() for r in caplog.records)


# ---- failures ----------------------------------------------------------------------------------


async def test_retries_after_server_errors_and_delivers_once(endpoint: Endpoint) -> None:
    endpoint.statuses = [500, 500]
    tracker = tracker_for(endpoint.url, max_attempts=5)
    for n in range(3):
        tracker.handle(started(n))
    await asyncio.wait_for(tracker.aclose(), 3.0)

    requests = endpoint.received()
    assert len(requests) == 3
    assert len({r.body for r in requests}) == 1  # the same batch, re-sent as is
    assert (tracker.sent, tracker.failed_batches, tracker.dropped) == (3, 0, 0)


async def test_gives_up_after_max_attempts(
    endpoint: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    endpoint.default = 503
    tracker = tracker_for(endpoint.url, max_attempts=3)
    with caplog.at_level(logging.WARNING, logger="durable_effect"):
        tracker.handle(started(0))
        tracker.handle(started(1))
        await asyncio.wait_for(tracker.aclose(), 3.0)

    assert len(endpoint.received()) == 3
    assert (tracker.sent, tracker.failed_batches) == (0, 1)
    warnings = [r for r in caplog.records if r.name == "durable_effect"]
    assert any("after 3 attempts" in r.getMessage() for r in warnings)
    assert all(r.levelno == logging.WARNING for r in warnings)


async def test_a_failed_batch_does_not_stop_later_ones(endpoint: Endpoint) -> None:
    endpoint.statuses = [500, 500]
    async with closing(tracker_for(endpoint.url, batch_size=2, max_attempts=2)) as tracker:
        for n in range(4):
            tracker.handle(started(n))
        requests = await endpoint.wait_requests(3)
        assert [ids(r.events) for r in requests] == [["e0", "e1"], ["e0", "e1"], ["e2", "e3"]]
    assert (tracker.sent, tracker.failed_batches) == (2, 1)


async def test_a_client_error_is_not_retried(endpoint: Endpoint) -> None:
    endpoint.statuses = [400]
    tracker = tracker_for(endpoint.url, max_attempts=5)
    tracker.handle(started(0))
    await asyncio.wait_for(tracker.aclose(), 3.0)
    assert len(endpoint.received()) == 1
    assert (tracker.sent, tracker.failed_batches) == (0, 1)


async def test_buffer_is_bounded_and_drops_the_oldest(
    endpoint: Endpoint, caplog: pytest.LogCaptureFixture
) -> None:
    tracker = tracker_for(endpoint.url, max_buffer=3)
    with caplog.at_level(logging.WARNING, logger="durable_effect"):
        for n in range(5):
            tracker.handle(started(n))
        assert (tracker.pending, tracker.dropped) == (3, 2)
        await asyncio.wait_for(tracker.aclose(), 3.0)
    assert ids(endpoint.events()) == ["e2", "e3", "e4"]
    assert (tracker.sent, tracker.dropped) == (3, 2)
    assert any("buffer full" in r.getMessage() for r in caplog.records)


async def test_unreachable_server_never_blocks_or_raises(refused_url: str) -> None:
    assert not inspect.iscoroutinefunction(HttpTracker.handle)
    tracker = tracker_for(refused_url, batch_size=5, max_buffer=50, max_attempts=3)
    handle: Callable[[Event], object] = tracker.handle
    results = [handle(started(n)) for n in range(60)]
    assert results == [None] * 60
    assert (tracker.pending, tracker.dropped) == (50, 10)
    await asyncio.sleep(0.05)  # the sender runs and fails meanwhile; handle still returns
    assert [handle(started(n)) for n in range(60, 65)] == [None] * 5

    await asyncio.wait_for(tracker.aclose(), timeout=2.0)
    assert tracker.sent == 0
    assert tracker.failed_batches >= 1
    assert tracker.pending == 0
    assert tracker.dropped + 5 * tracker.failed_batches == 65  # every event accounted for


async def test_close_with_an_unreachable_server_gives_up_the_rest(refused_url: str) -> None:
    tracker = tracker_for(refused_url, batch_size=5, max_attempts=2)
    for n in range(12):
        tracker.handle(started(n))
    await asyncio.wait_for(tracker.aclose(), timeout=2.0)
    # the first batch exhausts its attempts; the other 7 events are not tried while closing
    assert (tracker.sent, tracker.failed_batches, tracker.dropped, tracker.pending) == (0, 1, 7, 0)


async def test_each_attempt_is_bounded_by_timeout(black_hole_url: str) -> None:
    tracker = tracker_for(black_hole_url, timeout=0.1, max_attempts=2)
    tracker.handle(started(0))
    await asyncio.wait_for(tracker.aclose(), timeout=2.0)
    assert (tracker.sent, tracker.failed_batches) == (0, 1)


# ---- lifecycle ---------------------------------------------------------------------------------


async def test_events_buffered_outside_a_loop_are_sent_on_close(endpoint: Endpoint) -> None:
    tracker = tracker_for(endpoint.url)

    # a thread has no running loop: handle() only buffers
    def from_a_thread() -> None:
        for n in range(3):
            tracker.handle(started(n))

    await asyncio.to_thread(from_a_thread)
    assert tracker.pending == 3
    await asyncio.wait_for(tracker.aclose(), 3.0)
    assert ids(endpoint.events()) == ["e0", "e1", "e2"]


async def test_after_close_events_are_dropped_and_close_is_idempotent(endpoint: Endpoint) -> None:
    tracker = tracker_for(endpoint.url)
    tracker.handle(started(0))
    await asyncio.wait_for(tracker.aclose(), 3.0)
    assert tracker.closed
    tracker.handle(started(1))
    await asyncio.wait_for(tracker.aclose(), 3.0)
    assert ids(endpoint.events()) == ["e0"]
    assert (tracker.sent, tracker.dropped) == (1, 1)


async def test_works_as_a_tracker_of_the_event_bus(endpoint: Endpoint) -> None:
    tracker = tracker_for(endpoint.url)
    as_protocol: Tracker = tracker
    bus = EventBus([as_protocol])
    events: list[Event] = [started(n) for n in range(4)]
    bus.publish(events)
    await asyncio.wait_for(tracker.aclose(), 3.0)
    assert ids(endpoint.events()) == ["e0", "e1", "e2", "e3"]


# ---- configuration -----------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("endpoint_url", "options"),
    [
        ("ftp://example.com/x", {}),
        ("http:///no-host", {}),
        ("https://user:pw@example.com/", {}),
        ("http://example.com/a b", {}),
        ("http://example.com:99999/", {}),
        ("http://example.com/", {"batch_size": 0}),
        ("http://example.com/", {"max_buffer": 0}),
        ("http://example.com/", {"max_attempts": 0}),
        ("http://example.com/", {"flush_interval": 0}),
        ("http://example.com/", {"timeout": -1.0}),
        ("http://example.com/", {"timeout": float("inf")}),
    ],
)
def test_rejects_bad_configuration(endpoint_url: str, options: dict[str, object]) -> None:
    with pytest.raises(ValueError, match="HttpTracker"):
        tracker_for(endpoint_url, **options)


def test_repr_and_settings() -> None:
    tracker = HttpTracker("https://events.example.com/ingest", env="prod", service_key="svc")
    assert repr(tracker) == (
        "HttpTracker('https://events.example.com/ingest', env='prod', "
        "pending=0, sent=0, dropped=0, failed_batches=0)"
    )
    assert (tracker.endpoint, tracker.env, tracker.service_key) == (
        "https://events.example.com/ingest",
        "prod",
        "svc",
    )
    assert not tracker.closed
