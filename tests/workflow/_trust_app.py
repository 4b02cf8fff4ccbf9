"""The app of the trust tests' CLI runs: one workflow on the SQLite file named by $DE_TRUST_DB.

``ship`` packs a ``Parcel`` (a class of this module, given as the step's ``schema=``), sleeps
a moment and labels it; ``note`` returns a plain string. A script records runs of it as its
own ``__main__``; a worker started by the CLI (``durable-effect worker
tests.workflow._trust_app:jobs``) replays them.
"""

from __future__ import annotations

import os

import msgspec

from durable_effect import Effect, Gen, create_durable_jobs
from durable_effect.workflow import Step, Workflow


class Parcel(msgspec.Struct):
    """A step result of a class of the app's own."""

    weight: int


@Effect.gen
def ship(step: Step, weight: int) -> Gen[str, Exception]:
    parcel = yield from step.run("pack", Effect.succeed(Parcel(weight=weight)), schema=Parcel)
    yield from step.sleep("settle", "200 ms")
    label = yield from step.run("label", Effect.succeed(f"{parcel.weight} kg"))
    return label


@Effect.gen
def note(step: Step, text: str) -> Gen[str, Exception]:
    return (yield from step.run("a", Effect.succeed(text)))


SHIP = Workflow.make(int, ship, output_schema=str)
NOTE = Workflow.make(str, note)

jobs = create_durable_jobs(
    {"ship": SHIP, "note": NOTE}, storage=f"sqlite:///{os.environ.get('DE_TRUST_DB', 'trust.db')}"
)
