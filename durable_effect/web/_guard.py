"""The guard in front of every route: the bearer token, cross-site requests, the audit log.

* With a token, every request needs ``Authorization: Bearer <token>``; GET requests may
  give it as ``?token=`` instead (the page and ``EventSource`` cannot set headers). Tokens
  are compared in constant time (``hmac.compare_digest``). A miss is 401 with
  ``WWW-Authenticate: Bearer`` (the page gets a small form asking for the token).
* No cookie is ever set or read, so a browser never sends a credential by itself. A POST
  must also be ``Content-Type: application/json`` (so another site cannot send it without
  a CORS preflight, which this app never grants; other methods always need one), and any
  request that changes something and has an ``Origin`` header must come from this host:
  even without a token, a page on another site cannot cancel a run through the browser.
* Every request that may change something (any method but GET, HEAD, OPTIONS) is logged to
  ``durable_effect.web.audit`` with its outcome: method, path, status, client address.
* Every response says ``X-Content-Type-Options: nosniff`` and ``Referrer-Policy:
  no-referrer`` (the token may be in the page's URL), API responses ``Cache-Control:
  no-store`` unless they set their own.
"""

from __future__ import annotations

import hmac
import logging
from typing import Final
from urllib.parse import parse_qsl, urlsplit

from starlette.types import ASGIApp, Message, Receive, Scope, Send

__all__ = ["TokenGuard"]

AUDIT: Final = logging.getLogger("durable_effect.web.audit")
_SAFE: Final = frozenset({"GET", "HEAD", "OPTIONS"})
_COMMON_HEADERS: Final = (
    (b"x-content-type-options", b"nosniff"),
    (b"referrer-policy", b"no-referrer"),
)

_ASK_FOR_TOKEN: Final = b"""<!doctype html>
<html lang="en"><head><meta charset="utf-8"><title>durable_effect: token needed</title>
<meta name="viewport" content="width=device-width, initial-scale=1"></head>
<body style="font-family: system-ui, sans-serif; max-width: 32rem; margin: 4rem auto">
<h1>Token needed</h1>
<p>This dashboard was started with a token. Enter it to continue.</p>
<form method="get"><label>Token <input name="token" type="password" autofocus required></label>
<button type="submit">Open</button></form></body></html>"""


class TokenGuard:
    """ASGI middleware: see the module docstring."""

    def __init__(self, app: ASGIApp, token: str | None) -> None:
        if token is not None and not token.strip():
            raise ValueError("token must be a non-empty string (or None for no token)")
        self.app = app
        self._token = None if token is None else token.encode("utf-8")

    def _authorized(self, scope: Scope, method: str) -> bool:
        if self._token is None:
            return True
        given: bytes | None = None
        for name, value in scope.get("headers", ()):
            if name == b"authorization":
                scheme, _, credential = value.partition(b" ")
                if scheme.lower() == b"bearer":
                    given = credential.strip()
        if given is None and method in ("GET", "HEAD"):
            query = scope.get("query_string", b"").decode("latin-1")
            for key, value in parse_qsl(query, keep_blank_values=True):
                if key == "token":
                    given = value.encode("utf-8", "surrogateescape")
        return given is not None and hmac.compare_digest(given, self._token)

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        method = str(scope.get("method", "GET")).upper()
        status: list[int] = []
        api = "/api/" in str(scope.get("path", ""))

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                status.append(int(message["status"]))
                headers = list(message.get("headers", []))
                headers.extend(_COMMON_HEADERS)
                if api and not any(name.lower() == b"cache-control" for name, _ in headers):
                    headers.append((b"cache-control", b"no-store"))
                message = {**message, "headers": headers}
            await send(message)

        try:
            if not self._authorized(scope, method):
                await _unauthorized(scope, send_with_headers, page=not api and method == "GET")
            elif method not in _SAFE and (problem := _cross_site(scope)) is not None:
                await _refuse(send_with_headers, *problem)
            else:
                await self.app(scope, receive, send_with_headers)
        finally:
            if method not in _SAFE:
                client = scope.get("client") or ("-", 0)
                AUDIT.info(
                    "%s %s%s -> %s (client %s)",
                    method,
                    scope.get("root_path", ""),
                    scope.get("path", ""),
                    status[0] if status else "no response",
                    client[0],
                )


def _header(scope: Scope, name: bytes) -> str | None:
    for key, value in scope.get("headers", ()):
        if key == name:
            return str(value.decode("latin-1"))
    return None


def _cross_site(scope: Scope) -> tuple[int, str, str] | None:
    """Why a request that changes something is refused as cross-site (``None``: it is not)."""
    content_type = (_header(scope, b"content-type") or "").split(";")[0].strip().lower()
    if scope.get("method") == "POST" and content_type != "application/json":
        return 415, "UnsupportedMediaType", "POST requests send Content-Type: application/json"
    origin = _header(scope, b"origin")
    if origin is not None:
        host = _header(scope, b"host")
        parts = urlsplit(origin)
        if host is None or parts.netloc.lower() != host.lower():
            return 403, "CrossOriginRequest", "requests from another site are refused"
    return None


async def _refuse(send: Send, status: int, error: str, message: str) -> None:
    body = b'{"error":"%s","message":"%s"}' % (error.encode(), message.encode())
    await _respond(send, status, b"application/json", body)


async def _unauthorized(scope: Scope, send: Send, *, page: bool) -> None:
    if page:
        await _respond(send, 401, b"text/html; charset=utf-8", _ASK_FOR_TOKEN)
        return
    body = b'{"error":"Unauthorized","message":"a valid bearer token is required"}'
    await _respond(send, 401, b"application/json", body, [(b"www-authenticate", b"Bearer")])


async def _respond(
    send: Send,
    status: int,
    content_type: bytes,
    body: bytes,
    extra: list[tuple[bytes, bytes]] | None = None,
) -> None:
    headers = [
        (b"content-type", content_type),
        (b"content-length", str(len(body)).encode()),
        *(extra or []),
    ]
    await send({"type": "http.response.start", "status": status, "headers": headers})
    await send({"type": "http.response.body", "body": body})
