"""`HttpTracker`: POSTs job events as JSON batches to an HTTP(S) endpoint.

The original's tracker config (``endpoint``, ``env``, ``serviceKey``) becomes
``HttpTracker(endpoint, env=..., service_key=...)``. The body of every POST is
``{"events": [...]}``: each event's wire form (:meth:`Event.to_wire`, camelCase keys) with
``env`` and ``serviceKey`` added.

Delivery never blocks or fails a job:

* ``handle()`` only appends to a bounded buffer (when it is full the *oldest* event is
  dropped and counted in ``dropped``) and, inside a running event loop, starts the background
  sender lazily the first time.
* The sender posts a batch when ``batch_size`` events are waiting, or every
  ``flush_interval`` seconds otherwise, one batch at a time (so order is kept).
* A failed POST (connection error, timeout, HTTP 5xx, 408 or 429) is retried with
  ``retry`` backoff up to ``max_attempts`` attempts in all; then the batch is given up and
  counted in ``failed_batches``. Other non-2xx answers (4xx, 3xx: redirects are not followed)
  give the batch up at once.
* ``aclose()`` sends what is buffered. Each attempt is bounded by ``timeout``; if a batch
  fails for good while closing, the rest of the buffer is dropped (counted in ``dropped``)
  rather than tried against an endpoint that is evidently down, so closing stays bounded.

HTTP is a small stdlib ``asyncio`` HTTP/1.1 client (one connection per batch,
``Connection: close``; TLS for ``https://`` with the system's default verification).
Failures are logged at WARNING on the ``durable_effect`` logger; nothing is raised into a
caller.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import math
import ssl
import urllib.parse
from collections import deque

from durable_effect._backoff import Backoff
from durable_effect._codec import encode_json
from durable_effect._events import Event

__all__ = ["HttpTracker"]

_LOG = logging.getLogger("durable_effect")
_RETRYABLE_STATUS = frozenset({408, 429})
_USER_AGENT = "durable_effect-telemetry/1"


class _RequestError(Exception):
    """The endpoint answered something that is not an HTTP response."""


def _positive_int(name: str, value: int) -> int:
    given: object = value
    if isinstance(given, bool) or not isinstance(given, int) or given < 1:
        raise ValueError(f"HttpTracker: {name} must be an int >= 1, got {value!r}")
    return value


def _positive_float(name: str, value: float) -> float:
    given: object = value
    if (
        isinstance(given, bool)
        or not isinstance(given, int | float)
        or not math.isfinite(given)
        or given <= 0
    ):
        raise ValueError(f"HttpTracker: {name} must be a finite number > 0, got {value!r}")
    return float(value)


class _Target:
    """The parts of an ``http(s)://`` endpoint a request needs."""

    def __init__(self, endpoint: str) -> None:
        given: object = endpoint
        if not isinstance(given, str) or not given:
            raise ValueError(f"HttpTracker: endpoint must be a non-empty URL, got {endpoint!r}")
        if any(ord(ch) <= 0x20 or ord(ch) >= 0x7F for ch in endpoint):
            raise ValueError(
                "HttpTracker: endpoint must be printable ASCII without spaces "
                f"(percent-encode it), got {endpoint!r}"
            )
        parts = urllib.parse.urlsplit(endpoint)
        scheme = parts.scheme.lower()
        if scheme not in ("http", "https"):
            raise ValueError(f"HttpTracker: endpoint must be http:// or https://, got {endpoint!r}")
        if parts.username is not None or parts.password is not None:
            raise ValueError("HttpTracker: credentials in the endpoint URL are not supported")
        host = parts.hostname
        if not host:
            raise ValueError(f"HttpTracker: endpoint has no host: {endpoint!r}")
        try:
            port = parts.port
        except ValueError as exc:
            raise ValueError(f"HttpTracker: endpoint has an invalid port: {exc}") from None
        default_port = 443 if scheme == "https" else 80
        self.tls = scheme == "https"
        self.host = host
        self.port = default_port if port is None else port
        shown = f"[{host}]" if ":" in host else host
        self.host_header = shown if self.port == default_port else f"{shown}:{self.port}"
        path = parts.path or "/"
        self.target = f"{path}?{parts.query}" if parts.query else path


class HttpTracker:
    """A :class:`~durable_effect.telemetry.Tracker` that POSTs events in batches.

    Pass it as ``tracker=`` to ``create_durable_jobs``; ``jobs.aclose()`` flushes it. The
    counters say what happened: ``sent`` (events delivered), ``dropped`` (events discarded
    unsent: buffer overflow, unencodable, after close, or abandoned while closing),
    ``failed_batches`` (batches given up after their attempts), ``pending`` (buffered).

    >>> from datetime import datetime, timezone
    >>> from durable_effect.telemetry import JobStarted
    >>> tracker = HttpTracker("https://events.example.com/ingest", env="production",
    ...     service_key="my-jobs-service", max_buffer=2)
    >>> tracker  # doctest: +NORMALIZE_WHITESPACE
    HttpTracker('https://events.example.com/ingest', env='production',
                pending=0, sent=0, dropped=0, failed_batches=0)
    >>> at = datetime(2026, 1, 1, tzinfo=timezone.utc)
    >>> for n in range(3):  # no event loop running: only buffered, nothing is sent
    ...     tracker.handle(JobStarted(event_id=f"e{n}", timestamp=at, instance_id="task:t:a",
    ...         id="a", job_type="task", job_name="t"))
    >>> tracker.pending, tracker.dropped, tracker.sent, tracker.failed_batches
    (2, 1, 0, 0)
    >>> HttpTracker("ftp://example.com", env="dev", service_key="svc")
    Traceback (most recent call last):
        ...
    ValueError: HttpTracker: endpoint must be http:// or https://, got 'ftp://example.com'
    """

    def __init__(
        self,
        endpoint: str,
        *,
        env: str,
        service_key: str,
        batch_size: int = 100,
        flush_interval: float = 1.0,
        max_buffer: int = 10_000,
        timeout: float = 5.0,
        retry: Backoff | None = None,
        max_attempts: int = 5,
    ) -> None:
        self._target = _Target(endpoint)
        self._endpoint = endpoint
        self._env = env
        self._service_key = service_key
        self._batch_size = _positive_int("batch_size", batch_size)
        self._flush_interval = _positive_float("flush_interval", flush_interval)
        self._max_buffer = _positive_int("max_buffer", max_buffer)
        self._timeout = _positive_float("timeout", timeout)
        self._max_attempts = _positive_int("max_attempts", max_attempts)
        # Backoff.aggressive: exponential from 100 ms, x2, at most 5 s.
        self._retry = Backoff.aggressive if retry is None else retry
        self._buffer: deque[Event] = deque(maxlen=self._max_buffer)
        self._task: asyncio.Task[None] | None = None
        self._wake: asyncio.Event | None = None
        self._closing = False
        self._ssl: ssl.SSLContext | None = None
        self._sent = 0
        self._dropped = 0
        self._failed_batches = 0
        self._overflow_unreported = 0

    # ---- introspection -------------------------------------------------------------------

    @property
    def endpoint(self) -> str:
        """The URL events are posted to."""
        return self._endpoint

    @property
    def env(self) -> str:
        """The ``env`` added to every event."""
        return self._env

    @property
    def service_key(self) -> str:
        """The ``serviceKey`` added to every event."""
        return self._service_key

    @property
    def sent(self) -> int:
        """Events delivered (answered with a 2xx)."""
        return self._sent

    @property
    def dropped(self) -> int:
        """Events discarded without being delivered, outside failed batches."""
        return self._dropped

    @property
    def failed_batches(self) -> int:
        """Batches given up after their attempts (or rejected by the endpoint)."""
        return self._failed_batches

    @property
    def pending(self) -> int:
        """Events buffered, not yet taken into a batch."""
        return len(self._buffer)

    @property
    def closed(self) -> bool:
        """Whether ``aclose()`` was called."""
        return self._closing

    def __repr__(self) -> str:
        return (
            f"HttpTracker({self._endpoint!r}, env={self._env!r}, pending={self.pending}, "
            f"sent={self._sent}, dropped={self._dropped}, failed_batches={self._failed_batches})"
        )

    # ---- the Tracker protocol ------------------------------------------------------------

    def handle(self, event: Event) -> None:
        """Buffer ``event`` for sending; returns at once and never raises.

        Outside a running event loop the event is only buffered: it is sent by the next
        ``handle()`` inside a loop or by ``aclose()``.
        """
        try:
            if self._closing:
                self._dropped += 1
                return
            buffer = self._buffer
            if len(buffer) >= self._max_buffer:
                self._dropped += 1  # the deque's maxlen drops the oldest
                self._overflow_unreported += 1
            buffer.append(event)
            try:
                loop = asyncio.get_running_loop()
            except RuntimeError:
                return
            task = self._task
            if task is None or task.done():
                self._start(loop)
            elif len(buffer) >= self._batch_size and task.get_loop() is loop:
                wake = self._wake
                if wake is not None:
                    wake.set()
        except Exception:  # pragma: no cover - defensive: never fail a job
            return

    async def aclose(self) -> None:
        """Send everything buffered, then stop; later events are dropped. Never raises.

        Each POST attempt is bounded by ``timeout``; retries follow ``retry`` up to
        ``max_attempts``. Wrap it in ``asyncio.wait_for`` for a hard overall bound.
        """
        self._closing = True
        try:
            loop = asyncio.get_running_loop()
            task = self._task
            if task is not None and not task.done() and task.get_loop() is loop:
                if self._wake is not None:
                    self._wake.set()
                await task
            else:
                await self._drain()
        except asyncio.CancelledError:
            raise
        except Exception:
            _LOG.warning("HttpTracker: error while closing", exc_info=True)
        self._report_overflow()

    # ---- the background sender -----------------------------------------------------------

    def _start(self, loop: asyncio.AbstractEventLoop) -> None:
        wake = asyncio.Event()
        self._wake = wake
        self._task = loop.create_task(self._run(wake), name="durable_effect.HttpTracker")

    async def _run(self, wake: asyncio.Event) -> None:
        while True:
            if not self._closing and len(self._buffer) < self._batch_size:
                with contextlib.suppress(TimeoutError):
                    async with asyncio.timeout(self._flush_interval):
                        await wake.wait()
            wake.clear()
            try:
                await self._drain()
            except asyncio.CancelledError:
                raise
            except Exception:  # pragma: no cover - a bug here must not kill the sender
                _LOG.warning("HttpTracker: unexpected error while sending", exc_info=True)
            self._report_overflow()
            if self._closing:
                return

    async def _drain(self) -> None:
        """Send buffered events, one batch at a time, until the buffer is empty."""
        buffer = self._buffer
        while buffer:
            batch = [buffer.popleft() for _ in range(min(self._batch_size, len(buffer)))]
            body, count = self._encode(batch)
            if count == 0:
                continue
            if await self._deliver(body, count):
                self._sent += count
                continue
            self._failed_batches += 1
            if self._closing and buffer:
                abandoned = len(buffer)
                buffer.clear()
                self._dropped += abandoned
                _LOG.warning(
                    "HttpTracker: endpoint %s unavailable while closing; dropped %d buffered "
                    "events",
                    self._endpoint,
                    abandoned,
                )
                return

    def _encode(self, batch: list[Event]) -> tuple[bytes, int]:
        """The request body for ``batch``; an event that cannot be encoded is dropped."""
        parts: list[bytes] = []
        for event in batch:
            try:
                wire = event.to_wire()
                wire["env"] = self._env
                wire["serviceKey"] = self._service_key
                parts.append(encode_json(wire))
            except Exception as exc:
                self._dropped += 1
                _LOG.warning(
                    "HttpTracker: dropped event %s (%s): cannot encode it: %s",
                    getattr(event, "event_id", "?"),
                    getattr(event, "type", "?"),
                    exc,
                )
        return b'{"events":[' + b",".join(parts) + b"]}", len(parts)

    async def _deliver(self, body: bytes, count: int) -> bool:
        """POST ``body`` with retries; whether it was delivered."""
        for attempt in range(1, self._max_attempts + 1):
            try:
                status = await self._post(body)
            except asyncio.CancelledError:
                raise
            except Exception as exc:
                problem = f"{type(exc).__name__}: {exc}" if str(exc) else type(exc).__name__
                retryable = True
            else:
                if 200 <= status < 300:
                    return True
                problem = f"HTTP {status}"
                retryable = status >= 500 or status in _RETRYABLE_STATUS
            if not retryable:
                _LOG.warning(
                    "HttpTracker: %s rejected a batch of %d events (%s); dropped it",
                    self._endpoint,
                    count,
                    problem,
                )
                return False
            if attempt >= self._max_attempts:
                _LOG.warning(
                    "HttpTracker: could not send a batch of %d events to %s after %d "
                    "attempts (last: %s); dropped it",
                    count,
                    self._endpoint,
                    attempt,
                    problem,
                )
                return False
            _LOG.debug(
                "HttpTracker: attempt %d to send to %s failed (%s); retrying",
                attempt,
                self._endpoint,
                problem,
            )
            await asyncio.sleep(self._retry.delay(attempt).total_seconds())
        return False  # pragma: no cover - the loop always returns

    def _report_overflow(self) -> None:
        if self._overflow_unreported:
            _LOG.warning(
                "HttpTracker: buffer full (max_buffer=%d); dropped the %d oldest events",
                self._max_buffer,
                self._overflow_unreported,
            )
            self._overflow_unreported = 0

    # ---- HTTP ------------------------------------------------------------------------------

    async def _post(self, body: bytes) -> int:
        """One POST of ``body``, bounded by ``timeout``; the response's status code."""
        target = self._target
        head = (
            f"POST {target.target} HTTP/1.1\r\n"
            f"Host: {target.host_header}\r\n"
            f"User-Agent: {_USER_AGENT}\r\n"
            "Accept: */*\r\n"
            "Content-Type: application/json\r\n"
            f"Content-Length: {len(body)}\r\n"
            "Connection: close\r\n"
            "\r\n"
        ).encode("ascii")
        context: ssl.SSLContext | None = None
        if target.tls:
            if self._ssl is None:
                self._ssl = ssl.create_default_context()
            context = self._ssl
        deadline = asyncio.get_running_loop().time() + self._timeout
        async with asyncio.timeout_at(deadline):
            reader, writer = await asyncio.open_connection(
                target.host,
                target.port,
                ssl=context,
                server_hostname=target.host if context is not None else None,
            )
        try:
            async with asyncio.timeout_at(deadline):
                writer.write(head + body)
                await writer.drain()
                status = await _read_status(reader)
        except BaseException:
            writer.transport.abort()
            raise
        writer.close()
        with contextlib.suppress(Exception):
            async with asyncio.timeout_at(deadline):
                await writer.wait_closed()
        return status


async def _read_status(reader: asyncio.StreamReader) -> int:
    """The status code of the final (non-1xx) response on ``reader``."""
    while True:
        line = await reader.readline()
        if not line:
            raise _RequestError("connection closed before a response")
        parts = line.split(None, 2)
        if len(parts) < 2 or not parts[0].startswith(b"HTTP/") or not parts[1].isdigit():
            raise _RequestError(f"not an HTTP response: {line[:80]!r}")
        status = int(parts[1])
        if status >= 200 or status < 100:
            return status
        while True:  # an interim 1xx response: skip its headers
            header = await reader.readline()
            if header in (b"\r\n", b"\n", b""):
                break
