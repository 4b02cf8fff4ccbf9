"""Loading the user's app (``module:attribute`` naming a ``DurableJobs``) for the CLI."""

from __future__ import annotations

import importlib
import os
import sys

from durable_effect._jobs import DurableJobs

__all__ = ["CliError", "load_app"]


class CliError(Exception):
    """A user-facing CLI failure: a message for stderr and the exit code."""

    def __init__(self, message: str, code: int) -> None:
        super().__init__(message)
        self.message = message
        self.code = code


def load_app(spec: str, storage: str | None = None) -> DurableJobs:
    """Import ``module:attribute`` and check it is a ``DurableJobs`` (or a factory of one).

    With ``storage``, the same definitions are registered on that storage URL instead.
    """
    module_name, sep, attribute = spec.partition(":")
    if not sep or not module_name or not attribute:
        raise CliError(f"APP must look like 'package.module:attribute', got {spec!r}", 2)
    if os.getcwd() not in sys.path:
        sys.path.insert(0, os.getcwd())
    try:
        module = importlib.import_module(module_name)
    except ImportError as exc:
        raise CliError(f"cannot import {module_name!r}: {exc}", 2) from None
    target: object = module
    for part in attribute.split("."):
        if not hasattr(target, part):
            raise CliError(f"{module_name!r} has no attribute {attribute!r}", 2)
        target = getattr(target, part)
    if callable(target) and not isinstance(target, DurableJobs):
        target = target()
    if not isinstance(target, DurableJobs):
        raise CliError(
            f"{spec} is a {type(target).__name__}, not a DurableJobs (made by create_durable_jobs)",
            2,
        )
    if storage is None:
        return target
    try:
        return DurableJobs(
            dict(target.registry),
            storage=storage,
            clock=target.clock,
            tracker=target.bus.trackers,
            event_feed=target.engine.feed,
        )
    except ValueError as exc:
        raise CliError(str(exc), 2) from None
