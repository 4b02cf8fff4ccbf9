"""``GET /``: the dashboard page, one HTML document with its stylesheet and script inlined.

The files ship in the package (``durable_effect/web/static``: no CDN, no build step). They
are read once and put together into one document, so the page is one request, which the
token guard covers like any other. The page is served with a Content-Security-Policy that
allows only that exact script and stylesheet (by hash) and requests to this origin: data
shown on the page is only ever set as text, and even an injected tag could not run.

The page finds the API relative to where the app is mounted (``root_path``), given to it in
a ``<meta>`` tag, so it works under any prefix of a user's application.
"""

from __future__ import annotations

import base64
import hashlib
import html
from functools import cache
from importlib import resources
from typing import Final

from starlette.requests import Request
from starlette.responses import Response

__all__ = ["page_endpoint"]

_STATIC: Final = "durable_effect.web"


@cache
def _assets() -> tuple[str, str, str, str, str]:
    """The page template, the stylesheet, the script and their CSP hashes (read once)."""
    folder = resources.files(_STATIC).joinpath("static")
    template = folder.joinpath("index.html").read_text(encoding="utf-8")
    style = folder.joinpath("app.css").read_text(encoding="utf-8")
    script = folder.joinpath("app.js").read_text(encoding="utf-8")
    return template, style, script, _digest(style), _digest(script)


def _digest(text: str) -> str:
    return base64.b64encode(hashlib.sha256(text.encode("utf-8")).digest()).decode("ascii")


def render(base: str) -> tuple[str, str]:
    """The page for an app mounted at ``base``, and its Content-Security-Policy."""
    template, style, script, style_hash, script_hash = _assets()
    page = (
        template.replace("{{base}}", html.escape(base, quote=True))
        .replace("{{style}}", style)
        .replace("{{script}}", script)
    )
    policy = (
        "default-src 'none'; "
        f"script-src 'sha256-{script_hash}'; "
        f"style-src 'sha256-{style_hash}'; "
        "connect-src 'self'; img-src 'self' data:; "
        "base-uri 'none'; form-action 'self'; frame-ancestors 'none'"
    )
    return page, policy


async def page_endpoint(request: Request) -> Response:
    """The dashboard page (see the module docstring)."""
    page, policy = render(str(request.scope.get("root_path", "")))
    headers = {"Content-Security-Policy": policy, "Cache-Control": "no-store"}
    return Response(page, media_type="text/html; charset=utf-8", headers=headers)
