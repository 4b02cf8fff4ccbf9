"""Serving the app with uvicorn on a socket bound first: the real address is known at once.

Used by ``durable-effect dashboard``, ``durable-effect demo``, the browser tests and the web
benchmark. Binding the socket before uvicorn starts makes port ``0`` (any free port) usable
and lets the caller print the address before the first request.
"""

from __future__ import annotations

import contextlib
import ipaddress
import socket
from collections.abc import Generator
from typing import Final

import uvicorn
from starlette.types import ASGIApp

__all__ = ["Server", "is_loopback"]

#: Seconds open connections (event streams) get to finish when the server stops.
GRACE: Final = 2


def is_loopback(host: str) -> bool:
    """Whether ``host`` names this machine only (``127.0.0.0/8``, ``::1``, ``localhost``).

    >>> is_loopback("127.0.0.1"), is_loopback("localhost"), is_loopback("0.0.0.0")
    (True, True, False)
    """
    if host.lower() == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False


class _Uvicorn(uvicorn.Server):
    """A uvicorn server that leaves signal handling to its caller (when told to)."""

    def __init__(self, config: uvicorn.Config, *, handle_signals: bool) -> None:
        super().__init__(config)
        self._handle_signals = handle_signals

    @contextlib.contextmanager
    def capture_signals(self) -> Generator[None, None, None]:
        if self._handle_signals:
            with super().capture_signals():
                yield
        else:
            yield


class Server:
    """``app`` served on ``host:port`` (``port=0``: any free one); see the module docstring.

    With ``handle_signals``, Ctrl-C and SIGTERM stop it (uvicorn's own handling); otherwise
    the caller calls `stop`.
    """

    def __init__(
        self, app: ASGIApp, host: str = "127.0.0.1", port: int = 8000, *, handle_signals: bool
    ) -> None:
        family = socket.AF_INET6 if ":" in host.strip("[]") else socket.AF_INET
        self.socket = socket.create_server(
            (host.strip("[]"), port), family=family, reuse_port=False
        )
        self.host = host
        self.port = int(self.socket.getsockname()[1])
        config = uvicorn.Config(
            app,
            lifespan="off",
            log_level="warning",
            access_log=False,
            timeout_graceful_shutdown=GRACE,
        )
        self._server = _Uvicorn(config, handle_signals=handle_signals)

    @property
    def url(self) -> str:
        """``http://host:port/``."""
        host = f"[{self.host.strip('[]')}]" if ":" in self.host.strip("[]") else self.host
        return f"http://{host}:{self.port}/"

    async def serve(self) -> None:
        """Serve until stopped (closes the socket at the end)."""
        try:
            await self._server.serve(sockets=[self.socket])
        finally:
            self.socket.close()

    def stop(self) -> None:
        """Ask the server to stop (open streams get `GRACE` seconds)."""
        self._server.should_exit = True
