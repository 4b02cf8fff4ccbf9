"""``durable-effect worker``: run a worker until SIGINT/SIGTERM, logging what it does.

The first signal stops claiming and lets in-flight handlers finish (their commits release
the leases), then the command exits 0; a second signal stops at once (exit 130), leaving
the leases of unfinished handlers to expire.
"""

from __future__ import annotations

import argparse
import logging
import signal

from durable_effect.cli._app import load_app, opened, storage_label
from durable_effect.cli._logging import configure_logging

__all__ = ["cmd_worker"]

_LOG = logging.getLogger("durable_effect.worker")
_SIGNALS = (signal.SIGINT, signal.SIGTERM)
INTERRUPTED = 130


async def cmd_worker(args: argparse.Namespace) -> int:
    configure_logging(args.log_level, args.log_format)
    jobs = load_app(args.app, args.storage)
    async with opened(jobs):
        worker = jobs.worker(concurrency=args.concurrency)
        names = ", ".join(name for name, _ in jobs.registry) or "none"
        _LOG.info("worker %s on %s; jobs: %s", worker.owner, storage_label(jobs.storage), names)
        await worker.run(stop_on=_SIGNALS)
        if worker.aborted:
            _LOG.warning(
                "worker %s aborted after firing %s; the leases of the handlers it "
                "cancelled expire by themselves",
                worker.owner,
                _alarms(worker.fired),
            )
            return INTERRUPTED
        _LOG.info("worker %s stopped after firing %s", worker.owner, _alarms(worker.fired))
    return 0


def _alarms(count: int) -> str:
    return f"{count} alarm" if count == 1 else f"{count} alarms"
