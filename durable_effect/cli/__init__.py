"""The ``durable-effect`` console script (also ``python -m durable_effect``).

Exit codes: 0 success; 1 the operation failed (the job's code failed, an invalid
transition, a conflict, a duplicate event); 2 bad usage or bad input (unknown APP, invalid
JSON, input that does not match the job's schema); 3 not found (unknown job, instance or
run); 4 storage failure (including storage that cannot be opened); 130 interrupted.
"""

from __future__ import annotations

import asyncio
import os
import sys
from collections.abc import Sequence

from durable_effect.cli._app import CliError
from durable_effect.cli._parser import build_parser

__all__ = ["main"]

INTERRUPTED = 130


def main(argv: Sequence[str] | None = None) -> int:
    """Run the CLI; returns the exit code (the console script exits with it)."""
    parser = build_parser()
    args = parser.parse_args(argv)
    if not hasattr(args, "handler"):
        parser.print_help()
        return 2
    try:
        code: int = asyncio.run(args.handler(args))
    except CliError as exc:
        sys.stderr.write(f"durable-effect: {exc.message}\n")
        return exc.code
    except KeyboardInterrupt:
        sys.stderr.write("durable-effect: interrupted\n")
        return INTERRUPTED
    except BrokenPipeError:  # stdout closed early (`| head`): stop quietly
        devnull = os.open(os.devnull, os.O_WRONLY)
        os.dup2(devnull, sys.stdout.fileno())
        return 1
    return code
