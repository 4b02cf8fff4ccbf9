"""A script the trust tests run as its own ``__main__`` (``python .../_trust_script.py``).

It records a run of the app's ``ship`` workflow up to its sleep (so another process must
replay its first step), and tries a workflow of its own whose step returns a class defined
here, in ``__main__``, without ``schema=``: that step is refused at once, in this process.
It prints what it saw as one JSON line.
"""

from __future__ import annotations

import asyncio
import json
import sys
from pathlib import Path

import msgspec

sys.path.insert(0, str(Path(__file__).resolve().parents[2]))

from durable_effect import Effect, Gen
from durable_effect.testing import TestRuntime
from durable_effect.workflow import Step, Workflow
from tests.workflow._trust_app import SHIP, jobs


class Local(msgspec.Struct):
    """A class of this script (``__main__:Local`` to this process only)."""

    x: int


@Effect.gen
def local(step: Step, n: int) -> Gen[object, Exception]:
    return (yield from step.run("make", Effect.succeed(Local(x=n))))


@Effect.gen
def local_with_schema(step: Step, n: int) -> Gen[int, Exception]:
    made = yield from step.run("make", Effect.succeed(Local(x=n)), schema=Local)
    return made.x


async def main() -> None:
    out: dict[str, object] = {}
    async with jobs:
        h = jobs.client.workflow(SHIP)
        rid = (await h.trigger(7)).run_id
        await jobs.worker().run_until_idle()
        run = await h.get_run(rid)
        out["ship"] = {"run_id": rid, "status": run.status, "steps": len(await h.steps(rid))}
    refused = Workflow.make(int, local)
    kept = Workflow.make(int, local_with_schema)
    async with TestRuntime({"local": refused, "kept": kept}) as rt:
        bad = (await rt.client.workflow(refused).trigger(1)).run_id
        good = (await rt.client.workflow(kept).trigger(2)).run_id
        await rt.run_until_idle()
        failed = await rt.client.workflow(refused).get_run(bad)
        out["local"] = {"status": failed.status, "error": failed.error}
        out["kept"] = await rt.client.workflow(kept).wait_output(good)
    print(json.dumps(out))


if __name__ == "__main__":
    asyncio.run(main())
