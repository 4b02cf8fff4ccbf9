"""``durable_effect.web``: an HTTP API and a live dashboard for a ``DurableJobs`` (extra ``web``).

``create_app(jobs, token=None)`` returns a Starlette ASGI application: JSON routes over the
client (workflows and their runs, job instances, actions on both), ``GET /api/stream`` with
server-sent events of what every worker process commits, and the dashboard page at ``/``.
Mount it anywhere in a Starlette or FastAPI application, or serve it alone::

    from starlette.applications import Starlette
    from starlette.routing import Mount
    from durable_effect.web import create_app

    app = Starlette(routes=[Mount("/jobs", app=create_app(jobs, token=secret))])

or ``durable-effect dashboard APP`` from the command line. See ``docs/dashboard.md``.

>>> from durable_effect import create_durable_jobs
>>> app = create_app(create_durable_jobs({}, storage="memory://"))
>>> sorted(r.path for r in app.routes if r.path.startswith("/api/jobs"))
['/api/jobs', '/api/jobs/{job}/instances', '/api/jobs/{job}/instances/{id}', \
'/api/jobs/{job}/instances/{id}/{action}']
"""

from __future__ import annotations

import logging
from collections.abc import Awaitable, Callable

from starlette.applications import Starlette
from starlette.exceptions import HTTPException
from starlette.middleware import Middleware
from starlette.requests import Request
from starlette.responses import Response
from starlette.routing import Route

from durable_effect._jobs import DurableJobs
from durable_effect.errors import TaggedError
from durable_effect.web._guard import TokenGuard
from durable_effect.web._http import ApiError, error_response
from durable_effect.web._jobs import JobRoutes
from durable_effect.web._page import page_endpoint
from durable_effect.web._stream import FeedHub, stream_endpoint
from durable_effect.web._workflows import WorkflowRoutes

__all__ = ["create_app"]

_LOG = logging.getLogger("durable_effect.web")

Endpoint = Callable[[Request], Awaitable[Response]]


def _answering_errors(endpoint: Endpoint) -> Endpoint:
    """``endpoint`` with typed failures answered by their status (defects: a logged 500)."""

    async def guarded(request: Request) -> Response:
        try:
            return await endpoint(request)
        except (ApiError, TaggedError) as exc:
            return error_response(exc)
        except Exception:
            _LOG.exception("%s %s failed", request.method, request.url.path)
            return error_response(RuntimeError("internal error"))

    return guarded


async def _http_error(request: Request, exc: Exception) -> Response:
    status = exc.status_code if isinstance(exc, HTTPException) else 500
    if status == 404:
        return error_response(ApiError(404, "NotFound", f"no route {request.url.path}"))
    if status == 405:
        return error_response(ApiError(405, "MethodNotAllowed", f"{request.method} not allowed"))
    return error_response(ApiError(status, "HttpError", str(getattr(exc, "detail", ""))))


def create_app(jobs: DurableJobs, *, token: str | None = None) -> Starlette:
    """The web API and dashboard of ``jobs`` as an ASGI application (Starlette).

    With ``token``, every request needs ``Authorization: Bearer <token>`` (``?token=`` on
    GET routes). The application needs no lifespan events: storage is opened on first use
    and the event stream's poller runs only while a client is connected. It does not run a
    worker; run one (``durable-effect worker``, ``jobs.worker().run()``) beside it.
    """
    if not isinstance(jobs, DurableJobs):
        raise TypeError(f"create_app takes a DurableJobs, got {type(jobs).__name__}")
    given: object = token
    if given is not None and (not isinstance(given, str) or not given.strip()):
        raise ValueError("token must be a non-empty string (or None for no token)")
    hub = FeedHub(jobs)
    wrap = _answering_errors
    routes = [
        Route("/", page_endpoint, methods=["GET"]),
        Route("/api/stream", stream_endpoint(hub), methods=["GET"]),
        *WorkflowRoutes(jobs).routes(wrap),
        *JobRoutes(jobs).routes(wrap),
    ]
    app = Starlette(
        routes=routes,
        middleware=[Middleware(TokenGuard, token=token)],
        exception_handlers={HTTPException: _http_error},
    )
    app.state.jobs = jobs
    app.state.hub = hub
    return app
