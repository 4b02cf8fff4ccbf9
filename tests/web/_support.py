"""What the web tests share: an HTTP client over an app, and a raw ASGI stream reader.

``client(app)`` is an ``httpx.AsyncClient`` over ``httpx.ASGITransport``: requests go through
the real Starlette app in the test's event loop. httpx's ASGI transport collects a whole
response before returning it, so the event stream (which never ends) is read with
`AsgiStream`: it calls the app itself and hands out each body chunk as it is sent.
"""

from __future__ import annotations

import asyncio
import contextlib
from collections.abc import Mapping
from typing import Any

import httpx
from starlette.types import ASGIApp, Message

__all__ = ["AsgiStream", "client", "parse_frames"]


def client(app: ASGIApp, token: str | None = None) -> httpx.AsyncClient:
    """An HTTP client calling ``app`` in process (``Authorization`` set when ``token``)."""
    headers = {} if token is None else {"Authorization": f"Bearer {token}"}
    return httpx.AsyncClient(
        transport=httpx.ASGITransport(app=app), base_url="http://testserver", headers=headers
    )


def parse_frames(text: str) -> list[dict[str, str]]:
    """The SSE frames of ``text`` (comment lines dropped): ``{"id", "event", "data"}``."""
    frames: list[dict[str, str]] = []
    for block in text.split("\n\n"):
        fields: dict[str, str] = {}
        for line in block.split("\n"):
            if not line or line.startswith(":"):
                continue
            key, _, value = line.partition(": ")
            fields[key] = value
        if "data" in fields:
            frames.append(fields)
    return frames


class AsgiStream:
    """One ``GET`` of a streaming route, driven directly over ASGI.

    ``chunks`` collects the body as sent; ``stuck=True`` makes the client never take a
    chunk after the first one (its ``send`` blocks, as a socket whose peer stopped reading).
    """

    def __init__(
        self,
        app: ASGIApp,
        path: str,
        *,
        headers: Mapping[str, str] | None = None,
        query: str = "",
        stuck: bool = False,
    ) -> None:
        self.app = app
        self.status: int | None = None
        self.headers: dict[str, str] = {}
        self.text = ""
        self.sends = 0
        self._stuck = stuck
        self._changed = asyncio.Event()
        self._disconnect = asyncio.Event()
        self._never = asyncio.Event()
        raw = [(k.lower().encode(), v.encode()) for k, v in (headers or {}).items()]
        self.scope: dict[str, Any] = {
            "type": "http",
            "asgi": {"version": "3.0", "spec_version": "2.3"},
            "http_version": "1.1",
            "method": "GET",
            "scheme": "http",
            "path": path,
            "raw_path": path.encode(),
            "root_path": "",
            "query_string": query.encode(),
            "headers": [(b"host", b"testserver"), *raw],
            "client": ("127.0.0.1", 50000),
            "server": ("testserver", 80),
        }
        self._task: asyncio.Task[None] | None = None

    async def _receive(self) -> Message:
        await self._disconnect.wait()
        return {"type": "http.disconnect"}

    async def _send(self, message: Message) -> None:
        if message["type"] == "http.response.start":
            self.status = int(message["status"])
            self.headers = {k.decode(): v.decode() for k, v in message.get("headers", [])}
        elif message["type"] == "http.response.body":
            if self._stuck and self.sends >= 1:
                await self._never.wait()
            self.sends += 1
            self.text += bytes(message.get("body", b"")).decode()
        self._changed.set()

    async def __aenter__(self) -> AsgiStream:
        self._task = asyncio.ensure_future(self.app(self.scope, self._receive, self._send))
        await self.wait_for(lambda: self.status is not None)
        return self

    async def __aexit__(self, *exc: object) -> None:
        self._disconnect.set()
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError, Exception):
                await asyncio.wait_for(self._task, 5)

    def frames(self) -> list[dict[str, str]]:
        """The event frames received so far."""
        return parse_frames(self.text)

    async def wait_for(self, condition: Any, timeout: float = 10.0) -> None:
        """Until ``condition()`` holds (re-checked after every chunk), or ``TimeoutError``."""
        async with asyncio.timeout(timeout):
            while not condition():
                self._changed.clear()
                await self._changed.wait()

    async def frames_until(self, event: str, timeout: float = 10.0) -> list[dict[str, str]]:
        """The frames received once one of type ``event`` arrived."""
        await self.wait_for(lambda: any(f.get("event") == event for f in self.frames()), timeout)
        return self.frames()
