"""``GET /api/stream``: server-sent events of the storage feed, i.e. of every worker process.

Every commit of every process appends its events to the storage feed (see
``durable_effect.storage``); this route streams them as SSE frames::

    id: 1234
    event: run:progress
    data: {"type":"run:progress","runId":"…",…}

``id`` is the feed's growing sequence number: a client that reconnects with
``Last-Event-ID`` gets the retained events after it (at least the last 1,000); a connection
without one starts live.

One `FeedHub` per app polls the feed while anybody listens (every ``poll`` seconds, and at
once when a commit in this process published events) and keeps the newest entries, checked
and formatted once, in a ring. Each connection pulls from the ring (or from storage, when
it is further behind) at the pace its socket drains, a bounded batch at a time: a slow
client holds one batch and its socket buffer, never a queue, and nothing a client does
reaches a worker (workers only ever append to the feed).
"""

from __future__ import annotations

import asyncio
import bisect
import contextlib
import logging
import re
from collections import deque
from collections.abc import AsyncGenerator, AsyncIterator, Awaitable, Callable
from typing import Final

from starlette.requests import Request
from starlette.responses import Response, StreamingResponse
from starlette.types import Receive, Scope, Send

from durable_effect._codec import decode_json, encode_json
from durable_effect._jobs import DurableJobs
from durable_effect.errors import StorageError, ValidationError
from durable_effect.storage import FeedEntry

__all__ = ["FeedHub", "stream_endpoint"]

_LOG = logging.getLogger("durable_effect.web")

#: Entries one read of the feed (or one send to a client) takes at most.
BATCH: Final = 200
#: Newest entries the hub keeps formatted in memory.
RING: Final = 2000
#: Seconds between comment lines on an idle connection (keeps proxies from closing it).
KEEPALIVE: Final = 15.0
#: What an event type may contain on the ``event:`` line.
_EVENT_TYPE: Final = re.compile(r"[A-Za-z0-9_.:\-]{1,64}")


def frame(entry: FeedEntry) -> bytes | None:
    """The SSE frame of one feed entry, or ``None`` when its bytes are not an event object.

    The entry is decoded and encoded again (stored bytes are not trusted to hold no line
    breaks), and its ``type`` must be a short plain name.

    >>> frame(FeedEntry(seq=7, data=b'{"type": "run:trigger", "runId": "r"}'))
    b'id: 7\\nevent: run:trigger\\ndata: {"type":"run:trigger","runId":"r"}\\n\\n'
    >>> frame(FeedEntry(seq=8, data=b'{"type": "x\\\\ndata: evil"}')) is None
    True
    """
    try:
        value = decode_json(entry.data)
    except ValidationError:
        return None
    if not isinstance(value, dict):
        return None
    kind = value.get("type")
    if not isinstance(kind, str) or _EVENT_TYPE.fullmatch(kind) is None:
        return None
    data = encode_json(value)
    return b"id: %d\nevent: %s\ndata: %s\n\n" % (entry.seq, kind.encode(), data)


class FeedHub:
    """Polls one storage's feed while clients listen; see the module docstring."""

    def __init__(self, jobs: DurableJobs, *, poll: float = 0.1) -> None:
        self.jobs = jobs
        self.poll = poll
        self._ring: deque[tuple[int, bytes | None]] = deque(maxlen=RING)
        self._ring_from: int | None = None  # every entry past this seq is in the ring
        self._head = 0  # the newest seq read
        self._listeners = 0
        self._task: asyncio.Task[None] | None = None
        self._new = asyncio.Event()  # replaced after each read that found something
        self._poke = asyncio.Event()
        self._off: Callable[[], None] | None = None
        self._starting = asyncio.Lock()

    @property
    def listeners(self) -> int:
        """How many connections are streaming."""
        return self._listeners

    async def join(self) -> int:
        """Start listening (the poller starts with the first listener); the current head."""
        self._listeners += 1
        try:
            async with self._starting:
                if self._task is None or self._task.done():
                    await self.jobs.open()
                    self._head = await self.jobs.engine.feed_head()
                    self._ring.clear()
                    self._ring_from = self._head
                    if self._off is None:
                        self._off = self.jobs.engine.subscribe("*", lambda _event: self._poke.set())
                    loop = asyncio.get_running_loop()
                    self._task = loop.create_task(self._run(), name="durable_effect-feed-hub")
        except BaseException:
            self.leave()
            raise
        return self._head

    def leave(self) -> None:
        """Stop listening (the poller stops with the last listener)."""
        self._listeners -= 1
        if self._listeners <= 0 and self._task is not None:
            self._task.cancel()
            self._task = None
            if self._off is not None:
                self._off()
                self._off = None

    async def _run(self) -> None:
        engine = self.jobs.engine
        while True:
            try:
                entries = await engine.read_feed(after=self._head, limit=BATCH)
            except StorageError as exc:
                _LOG.warning("reading the event feed failed: %s", exc)
                entries = []
            if entries:
                for entry in entries:
                    if len(self._ring) == RING:
                        self._ring_from = self._ring[0][0]
                    self._ring.append((entry.seq, frame(entry)))
                self._head = entries[-1].seq
                new, self._new = self._new, asyncio.Event()
                new.set()
                if len(entries) == BATCH:
                    await asyncio.sleep(0)
                    continue
            self._poke.clear()
            with contextlib.suppress(TimeoutError):
                await asyncio.wait_for(self._poke.wait(), self.poll)

    async def frames_after(self, seq: int) -> tuple[int, bytes]:
        """Frames of up to `BATCH` entries past ``seq`` (from the ring when it holds them,
        else from storage) and the seq of the last one (``seq`` when there are none)."""
        ring_from = self._ring_from
        if ring_from is not None and seq >= ring_from:
            ring = self._ring
            start = bisect.bisect_right(ring, seq, key=lambda item: item[0])
            items = [ring[i] for i in range(start, min(start + BATCH, len(ring)))]
        else:
            entries = await self.jobs.engine.read_feed(after=seq, limit=BATCH)
            items = [(entry.seq, frame(entry)) for entry in entries]
        if not items:
            return seq, b""
        return items[-1][0], b"".join(data for _, data in items if data is not None)

    async def wait_past(self, seq: int, timeout: float) -> None:
        """Until the hub has read past ``seq``, or ``timeout`` seconds."""
        if self._head > seq:
            return
        with contextlib.suppress(TimeoutError):
            await asyncio.wait_for(self._new.wait(), timeout)


class _EventStream(StreamingResponse):
    """A streaming response that closes its generator when the connection ends.

    Starlette stops iterating when the client goes away but leaves the generator to the
    garbage collector; closing it here runs its ``finally`` (leaving the hub) at once.
    """

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        try:
            await super().__call__(scope, receive, send)
        finally:
            body = self.body_iterator
            if isinstance(body, AsyncGenerator):
                with contextlib.suppress(RuntimeError):  # still running: it ends by itself
                    await body.aclose()


def _last_event_id(request: Request) -> int | None:
    raw = request.headers.get("last-event-id") or request.query_params.get("last_event_id")
    if raw is None or raw == "":
        return None
    raw = raw.strip()
    if not raw.isdigit() or len(raw) > 19:
        return None  # not an id this stream gave: start live
    return int(raw)


def stream_endpoint(hub: FeedHub) -> Callable[[Request], Awaitable[Response]]:
    """The ``GET /api/stream`` endpoint over ``hub``."""

    async def stream(request: Request) -> Response:
        resume = _last_event_id(request)

        async def frames() -> AsyncIterator[bytes]:
            head = await hub.join()
            cursor = head if resume is None else min(resume, head)
            try:
                yield b"retry: 2000\n: connected\n\n"
                while True:
                    last, data = await hub.frames_after(cursor)
                    if last != cursor:
                        cursor = last
                        if data:
                            yield data
                        continue
                    before = asyncio.get_running_loop().time()
                    await hub.wait_past(cursor, KEEPALIVE)
                    if asyncio.get_running_loop().time() - before >= KEEPALIVE:
                        yield b": keepalive\n\n"
            finally:
                hub.leave()

        headers = {"Cache-Control": "no-cache", "X-Accel-Buffering": "no"}
        return _EventStream(frames(), media_type="text/event-stream", headers=headers)

    return stream
