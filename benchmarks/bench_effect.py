"""Per-step cost of the Effect interpreter, against baselines measured in the same run.

Usage::

    .venv/bin/python benchmarks/bench_effect.py [--quick] [--steps N] [--repeats K]

Prints a table and writes ``benchmarks/results/bench_effect.json``.

Scenarios (N steps each), all doing the same arithmetic (``n + 1`` per step):

* ``flat_map``: ``Effect.succeed(0).flat_map(inc)`` N times, then ``run_sync``.
* ``gen``: one ``Effect.gen`` program doing ``n = yield from inc(n)`` N times.
* ``catch_tag``: N times ``.flat_map(fail).catch_tag(Boom)(recover)``: every step fails
  with a typed error and recovers by class.

Baselines:

* ``returns``: returns' eager ``Result``: ``Success(0).bind(f)`` N times (for ``catch_tag``:
  ``.bind(fail).lash(recover)``, the handler checking the class as ``catch_tag`` does).
* ``plain``: a Python ``for`` loop calling a function per step (for ``catch_tag``: a function
  that raises, caught by ``try``/``except``).

What is timed: for ours, **building the chain plus running it** (an Effect is lazy, so both
are its cost); for returns, the chain of eager binds (building *is* running). Each figure is
the best of K repeats (``time.perf_counter``, garbage collector paused while timing), divided
by N: nanoseconds per step. Ratios are ours / baseline, from the same run.
"""

from __future__ import annotations

import argparse
import gc
import json
import platform
import sys
import time
from collections.abc import Callable
from pathlib import Path
from typing import ClassVar, Literal, Never

import attrs
from returns.pipeline import is_successful
from returns.result import Failure, Result, Success

from durable_effect import Effect, Gen, TaggedError

RESULTS = Path(__file__).resolve().parent / "results" / "bench_effect.json"


@attrs.frozen(kw_only=True, eq=False)
class Boom(TaggedError):
    tag: ClassVar[Literal["Boom"]] = "Boom"
    code: int


# -- ours --------------------------------------------------------------------------------------


def inc(n: int) -> Effect[int, Never]:
    return Effect.succeed(n + 1)


def fail(n: int) -> Effect[int, Boom]:
    return Effect.fail(Boom(code=n))


def recover(e: Boom) -> Effect[int, Never]:
    return Effect.succeed(e.code + 1)


def ours_flat_map(n: int) -> int:
    eff: Effect[int, Never] = Effect.succeed(0)
    for _ in range(n):
        eff = eff.flat_map(inc)
    return int(Effect.run_sync(eff).unwrap())


@Effect.gen
def counting(n: int) -> Gen[int, Never]:
    total = 0
    for _ in range(n):
        total = yield from inc(total)
    return total


def ours_gen(n: int) -> int:
    return int(Effect.run_sync(counting(n)).unwrap())


def ours_catch_tag(n: int) -> int:
    eff: Effect[int, Boom] = Effect.succeed(0)
    for _ in range(n):
        eff = eff.flat_map(fail).catch_tag(Boom)(recover)
    return int(Effect.run_sync(eff).unwrap())


# -- returns -----------------------------------------------------------------------------------


def r_inc(n: int) -> Result[int, Never]:
    return Success(n + 1)


def r_fail(n: int) -> Result[int, TaggedError]:
    return Failure(Boom(code=n))


def r_recover(e: TaggedError) -> Result[int, TaggedError]:
    if isinstance(e, Boom):  # selects by class, as catch_tag does
        return Success(e.code + 1)
    return Failure(e)


def returns_bind(n: int) -> int:
    result: Result[int, Never] = Success(0)
    for _ in range(n):
        result = result.bind(r_inc)
    return int(result.unwrap())


def returns_lash(n: int) -> int:
    result: Result[int, TaggedError] = Success(0)
    for _ in range(n):
        result = result.bind(r_fail).lash(r_recover)
    assert is_successful(result)
    return int(result.unwrap())


# -- plain Python ------------------------------------------------------------------------------


def p_inc(n: int) -> int:
    return n + 1


def p_fail(n: int) -> int:
    raise Boom(code=n)


def plain_loop(n: int) -> int:
    total = 0
    for _ in range(n):
        total = p_inc(total)
    return total


def plain_try(n: int) -> int:
    total = 0
    for _ in range(n):
        try:
            total = p_fail(total)
        except Boom as e:
            total = e.code + 1
    return total


# -- measuring ---------------------------------------------------------------------------------


def best_ns_per_step(fn: Callable[[int], int], steps: int, repeats: int) -> float:
    """The best of ``repeats`` timings of ``fn(steps)``, in nanoseconds per step."""
    best = float("inf")
    for _ in range(repeats):
        gc.collect()
        gc.disable()
        try:
            started = time.perf_counter()
            value = fn(steps)
            elapsed = time.perf_counter() - started
        finally:
            gc.enable()
        if value != steps:
            raise AssertionError(f"{fn.__name__}({steps}) gave {value}")
        best = min(best, elapsed)
    return best / steps * 1e9


@attrs.frozen
class Row:
    scenario: str
    ours_ns: float
    returns_ns: float
    plain_ns: float

    @property
    def vs_returns(self) -> float:
        return self.ours_ns / self.returns_ns

    @property
    def vs_plain(self) -> float:
        return self.ours_ns / self.plain_ns

    def as_json(self) -> dict[str, object]:
        return {
            "scenario": self.scenario,
            "ours_ns_per_step": round(self.ours_ns, 1),
            "returns_ns_per_step": round(self.returns_ns, 1),
            "plain_ns_per_step": round(self.plain_ns, 1),
            "ratio_vs_returns": round(self.vs_returns, 3),
            "ratio_vs_plain": round(self.vs_plain, 2),
        }


Bench = Callable[[int], int]
SCENARIOS: tuple[tuple[str, Bench, Bench, Bench], ...] = (
    ("flat_map chain", ours_flat_map, returns_bind, plain_loop),
    ("gen yield from", ours_gen, returns_bind, plain_loop),
    ("fail + catch_tag", ours_catch_tag, returns_lash, plain_try),
)


def measure(steps: int, repeats: int) -> list[Row]:
    rows: list[Row] = []
    for name, ours, baseline, plain in SCENARIOS:
        rows.append(
            Row(
                scenario=name,
                ours_ns=best_ns_per_step(ours, steps, repeats),
                returns_ns=best_ns_per_step(baseline, steps, repeats),
                plain_ns=best_ns_per_step(plain, steps, repeats),
            )
        )
    return rows


def table(rows: list[Row]) -> str:
    header = (
        "| scenario | ours ns/step | returns ns/step | plain ns/step "
        "| ours / returns | ours / plain |"
    )
    lines = [header, "| --- | ---: | ---: | ---: | ---: | ---: |"]
    for row in rows:
        lines.append(
            f"| {row.scenario} | {row.ours_ns:.0f} | {row.returns_ns:.0f} | {row.plain_ns:.0f} "
            f"| {row.vs_returns:.2f} | {row.vs_plain:.1f} |"
        )
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--quick", action="store_true", help="10,000 steps, 3 repeats")
    parser.add_argument("--steps", type=int, default=None, help="steps per chain (N)")
    parser.add_argument("--repeats", type=int, default=None, help="best of K repeats")
    parser.add_argument("--output", type=Path, default=RESULTS, help="where to write JSON")
    args = parser.parse_args(argv)
    steps: int = args.steps or (10_000 if args.quick else 200_000)
    repeats: int = args.repeats or (3 if args.quick else 7)

    rows = measure(steps, repeats)
    print(f"Effect core, {steps:,} steps, best of {repeats} (build + run; ns per step)")
    print(table(rows))
    output: Path = args.output
    output.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "benchmark": "bench_effect",
        "steps": steps,
        "repeats": repeats,
        "measured": "build + run for ours; the eager bind chain for returns; best of repeats",
        "python": sys.version.split()[0],
        "platform": platform.platform(),
        "rows": [row.as_json() for row in rows],
    }
    output.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {output}")
    return 0


if __name__ == "__main__":
    raise SystemExit(main())
