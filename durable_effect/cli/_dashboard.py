"""``durable-effect dashboard APP``: the web API and dashboard of an app, served by uvicorn.

Loopback (``127.0.0.1``) by default. Another address is refused unless a token is given
(``--token``, or the environment variable ``DURABLE_EFFECT_TOKEN``, which keeps it out of
the process list); with a token every request needs it. Without a token the server also
refuses requests whose ``Host`` is not a loopback name (a page of another site that had its
name resolve to 127.0.0.1 cannot use the API through the browser). Mutating requests are
logged to stderr (``durable_effect.web.audit``). It serves until Ctrl-C; it runs no worker.
"""

from __future__ import annotations

import argparse
import asyncio
import logging
import os
import signal
import sys
from typing import Any

from durable_effect.cli._app import CliError, load_app, opened

__all__ = ["add_dashboard_command", "cmd_dashboard"]

TOKEN_ENV = "DURABLE_EFFECT_TOKEN"
_LOOPBACK_NAMES = ["127.0.0.1", "localhost", "::1", "[::1]"]


def add_dashboard_command(sub: Any) -> None:
    """Register the ``dashboard`` subcommand on the CLI's subparsers."""
    what = "serve the web dashboard and HTTP API of APP (no worker)"
    p = sub.add_parser("dashboard", help=what, description=what)
    p.add_argument("app", metavar="APP", help="module:attribute naming a DurableJobs")
    p.add_argument("--storage", metavar="URL", help="override the app's storage URL")
    p.add_argument("--host", default="127.0.0.1", help="address to bind (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000; 0: any free)")
    p.add_argument(
        "--token",
        default=None,
        help=f"require this bearer token (or set ${TOKEN_ENV}); needed off loopback",
    )
    p.set_defaults(handler=cmd_dashboard)


async def cmd_dashboard(args: argparse.Namespace) -> int:
    """Serve the dashboard until interrupted."""
    try:
        from starlette.middleware.trustedhost import TrustedHostMiddleware

        from durable_effect.web import create_app
        from durable_effect.web._serve import Server, is_loopback
    except ImportError as exc:
        raise CliError(
            f"the dashboard needs the web extra: pip install 'durable_effect[web]' ({exc})", 2
        ) from None
    token = args.token if args.token is not None else os.environ.get(TOKEN_ENV) or None
    if token is not None and not token.strip():
        raise CliError("--token must not be empty", 2)
    if not is_loopback(args.host) and token is None:
        raise CliError(
            f"refusing to serve on {args.host} without a token: anyone who can reach it could "
            f"act on your jobs. Pass --token (or set ${TOKEN_ENV}), or bind 127.0.0.1",
            2,
        )
    if not 0 <= args.port <= 65535:
        raise CliError(f"--port must be 0 to 65535, got {args.port}", 2)
    jobs = load_app(args.app, args.storage)
    app: Any = create_app(jobs, token=token)
    if token is None:
        app = TrustedHostMiddleware(app, allowed_hosts=_LOOPBACK_NAMES)
    _log_audit_to_stderr()
    try:
        server = Server(app, args.host, args.port, handle_signals=False)
    except OSError as exc:
        reason = exc.strerror or exc
        raise CliError(f"cannot listen on {args.host}:{args.port}: {reason}", 1) from None
    loop = asyncio.get_running_loop()
    for sig in (signal.SIGINT, signal.SIGTERM):
        loop.add_signal_handler(sig, server.stop)
    hint = " (requests need the token: ?token=… or Authorization: Bearer …)" if token else ""
    try:
        async with opened(jobs):
            sys.stdout.write(f"durable-effect: dashboard on {server.url}{hint}; Ctrl-C to stop\n")
            sys.stdout.flush()
            await server.serve()
    finally:
        for sig in (signal.SIGINT, signal.SIGTERM):
            loop.remove_signal_handler(sig)
    sys.stdout.write("durable-effect: dashboard stopped\n")
    return 0


def _log_audit_to_stderr() -> None:
    audit = logging.getLogger("durable_effect.web")
    if not audit.handlers and not logging.getLogger().handlers:
        handler = logging.StreamHandler(sys.stderr)
        handler.setFormatter(logging.Formatter("%(asctime)s %(name)s %(levelname)s %(message)s"))
        audit.addHandler(handler)
        audit.setLevel(logging.INFO)
