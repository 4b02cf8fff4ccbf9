"""Before → after: the same benchmark scripts run from two checkouts, alternately, in one run.

``--before`` and ``--after`` are two checkouts of this repository (``git worktree add``). For
each round, each script (``bench_effect``, ``bench_jobs``, ``bench_workflows``) runs once from
each checkout — before first in even rounds, after first in odd ones — as
``python <tree>/benchmarks/bench_<name>.py [--quick]`` with ``PYTHONPATH=<tree>``, so each
side imports its own ``durable_effect``. Every script measures its own baseline in the same
process (returns, raw sqlite3), so what is compared is *our figure as a ratio of that
baseline*, before against after; a load average is recorded before each script run.

``speed`` is higher-is-better for every row: ``returns / ours`` ns per step for the Effect
core, ``ours / raw`` calls per second for jobs and workflows. ``after / before`` > 1 means
the after tree is faster relative to its baseline. Prints a table and writes
``benchmarks/results/compare_trees.json``.

    python benchmarks/compare_trees.py --before ../base --after . --rounds 2 [--quick]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import Any

RESULTS = Path(__file__).resolve().parent / "results" / "compare_trees.json"
SCRIPTS = ("effect", "jobs", "workflows")

#: A row's name and its higher-is-better figure, from one script's JSON report.
Speeds = dict[str, float]


def effect_speeds(report: dict[str, Any]) -> Speeds:
    return {
        f"effect {row['scenario']}": row["returns_ns_per_step"] / row["ours_ns_per_step"]
        for row in report["rows"]
    }


def jobs_speeds(report: dict[str, Any]) -> Speeds:
    return {f"jobs {row['benchmark']} [{row['sync']}]": row["ratio"] for row in report["rows"]}


def workflows_speeds(report: dict[str, Any]) -> Speeds:
    rows = report["rows"]
    raw = {row["sync"]: row["rate"] for row in rows if row["benchmark"].startswith("raw")}
    return {
        f"workflows {row['benchmark'].removeprefix('durable_effect ')} [{row['sync']}]": row["rate"]
        / raw[row["sync"]]
        for row in rows
        if row["benchmark"].startswith("durable_effect")
    }


READERS: dict[str, Callable[[dict[str, Any]], Speeds]] = {
    "effect": effect_speeds,
    "jobs": jobs_speeds,
    "workflows": workflows_speeds,
}


def run_script(tree: Path, name: str, quick: bool, scratch: Path) -> tuple[Speeds, float, float]:
    """Run one script from ``tree``: its speeds, the 1-minute load before it, its seconds."""
    script = tree / "benchmarks" / f"bench_{name}.py"
    args = [sys.executable, str(script)] + (["--quick"] if quick else [])
    output = tree / "benchmarks" / "results" / f"bench_{name}.json"
    if name == "effect":  # the one script that takes --output
        output = scratch / f"{tree.name}-effect.json"
        args += ["--output", str(output)]
    env = {**os.environ, "PYTHONPATH": str(tree)}
    load = os.getloadavg()[0]
    started = time.perf_counter()
    subprocess.run(args, cwd=tree, env=env, check=True, stdout=subprocess.DEVNULL)
    seconds = time.perf_counter() - started
    return READERS[name](json.loads(output.read_text())), load, seconds


def alternating(rounds: int, before: Path, after: Path) -> Iterator[tuple[int, str, Path]]:
    for r in range(rounds):
        sides = [("before", before), ("after", after)]
        for side, tree in sides if r % 2 == 0 else sides[::-1]:
            yield r, side, tree


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--before", type=Path, required=True, help="the old checkout")
    parser.add_argument("--after", type=Path, required=True, help="the new checkout")
    parser.add_argument("--rounds", type=int, default=2, help="runs of each script per side")
    parser.add_argument("--quick", action="store_true", help="the scripts' --quick sizes")
    parser.add_argument("--scripts", default=",".join(SCRIPTS), help="which, comma-separated")
    args = parser.parse_args()
    names = [n for n in args.scripts.split(",") if n]
    for name in names:
        if name not in READERS:
            parser.error(f"unknown script {name!r} (one of {', '.join(SCRIPTS)})")
    before, after = args.before.resolve(), args.after.resolve()
    speeds: dict[str, dict[str, list[float]]] = {"before": {}, "after": {}}
    runs: list[dict[str, object]] = []
    with tempfile.TemporaryDirectory(prefix="compare_trees-") as tmp:
        for name in names:
            for r, side, tree in alternating(args.rounds, before, after):
                got, load, seconds = run_script(tree, name, args.quick, Path(tmp))
                for row, speed in got.items():
                    speeds[side].setdefault(row, []).append(speed)
                runs.append(
                    {"script": name, "round": r, "side": side, "load1": load, "seconds": seconds}
                )
                print(f"  {name:9} round {r} {side:6} load {load:5.2f}  {seconds:6.1f} s")
    table: list[tuple[str, float, float]] = []
    for row, olds in speeds["before"].items():
        news = speeds["after"].get(row, [])
        if news:
            table.append((row, statistics.median(olds), statistics.median(news)))
    width = max((len(row) for row, _, _ in table), default=10)
    print(f"\n{'row':{width}}  {'before':>8}  {'after':>8}  {'after/before':>12}")
    for row, old, new in table:
        print(f"{row:{width}}  {old:8.3f}  {new:8.3f}  {new / old:12.3f}")
    loads = [float(str(run["load1"])) for run in runs]
    print(f"\nload average (1 min) before each script run: {min(loads):.2f} to {max(loads):.2f}")
    RESULTS.parent.mkdir(parents=True, exist_ok=True)
    report = {
        "before": str(before),
        "after": str(after),
        "rounds": args.rounds,
        "quick": args.quick,
        "cpus": os.cpu_count(),
        "runs": runs,
        "rows": [
            {"row": row, "before": old, "after": new, "after_over_before": new / old}
            for row, old, new in table
        ],
        "samples": speeds,
    }
    RESULTS.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {RESULTS}")


if __name__ == "__main__":
    main()
