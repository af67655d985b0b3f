"""Benchmark the suite on a fixed slice (or, with --full, the whole default matrix).

    python benchmarks/run.py            # the fixed slice, with -n 0 and -n 2
    python benchmarks/run.py --full     # the whole matrix, -n 2 only
    python benchmarks/run.py --zoo      # the zoo tier (-m kind_zoo), -n 2 only
    python benchmarks/run.py --from-run reports/latest --wall 3600 --workers 2   # a run already made
    python benchmarks/run.py --from-run COLD_RUN --wall 2026 --warm-wall 1900   # and its cold / warm ratio
    python benchmarks/run.py --repeatability RUN_A RUN_B   # do two runs' speedups agree within their spread?

Prints, from the records' stage timings and the measured wall time: cells, wall
time, the sum of stage time, parallel efficiency, the suite's own overhead,
cost per backend and per stage, the share of worker time spent timing cells against
float (the ``measure`` stage), import cost of a worker, peak memory per worker,
the float deployments built and reused, the speedup of -n 2 over -n 0, the cold / warm
ratio (the -n 2 run again with the Inductor cache it filled: a cold start's cost; with
--full that is the whole matrix twice) and the time of a one-cell rerun, each beside its
goal. Nothing here is a test: it measures and prints.
"""

from __future__ import annotations

import argparse
import os
import shutil
import subprocess
import sys
import tempfile
import time
from collections import defaultdict
from pathlib import Path

SUITE = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(SUITE))

from matrix.records import read_records  # noqa: E402

SLICE = ["--models", "mlp,conv_bn_relu,op_relu"]
ONE_CELL = "cases/test_matrix.py::test_cell[mlp-fx-ptq_static-fbgemm]"
ZOO = ["-m", "kind_zoo"]
GOALS = {"wall_full_s": 600, "wall_zoo_s": 900, "efficiency": 0.85, "overhead": 0.10, "rerun_s": 5.0, "peak_mb": 3072,
         "measure_share": 0.10, "repeatable": 0.90}


def timed_run(args: list[str], reports: Path, cold: bool = True) -> float:
    """The wall time of one pytest run, cold: Inductor compiles into a cache folder of its own,
    empty at the start (no code compiled by an earlier run is reused); warm (``cold=False``): the
    cache an earlier run into the same ``reports`` filled."""
    cache = reports / "inductor-cache"
    if cold and cache.exists():
        shutil.rmtree(cache)
    env = {**os.environ, "TORCHINDUCTOR_CACHE_DIR": str(cache)}
    start = time.perf_counter()
    subprocess.run([sys.executable, "-m", "pytest", f"--rootdir={SUITE}", f"--reports-dir={reports}", "-q",
                    "-p", "no:randomly", *args], cwd=SUITE, check=False, capture_output=True, env=env)
    return time.perf_counter() - start


def import_cost() -> float:
    code = ("import time; t = time.perf_counter(); import matrix.plugin, matrix.runner; "
            "print(time.perf_counter() - t)")
    out = subprocess.run([sys.executable, "-c", code], cwd=SUITE, capture_output=True, text=True, check=True)
    return float(out.stdout.strip().splitlines()[-1])


def summarize(records: list[dict], wall: float, workers: int) -> dict:
    stage_time = sum(sum(r["timings"].values()) for r in records)
    per_backend: dict[str, float] = defaultdict(float)
    per_stage: dict[str, float] = defaultdict(float)
    for r in records:
        per_backend[r["backend"]] += sum(r["timings"].values())
        for stage, seconds in r["timings"].items():
            per_stage[stage] += seconds
    capacity = wall * max(workers, 1)
    return {
        "cells": len(records), "wall": wall, "stage_time": stage_time,
        "efficiency": stage_time / capacity, "overhead": (capacity - stage_time) / capacity,
        "per_backend": dict(per_backend), "per_stage": dict(per_stage),
        "peak_mb": max((r.get("peak_rss_mb") or 0.0) for r in records) if records else 0.0,
        "workers": workers, "timed": sum(1 for r in records if (r.get("latency") or {}).get("speedup")),
        **float_builds(records),
    }


def float_builds(records: list[dict]) -> dict:
    """How often the float model was deployed on a backend to time cells against: by a float cell,
    by a timed cell that found none deployed in its process, and reused (records that say so)."""
    latencies = [r["latency"] for r in records if "float_reused" in (r.get("latency") or {})]
    return {"float_cells": sum(1 for r in records if r.get("scheme") == "float" and r.get("mode") == "export"),
            "float_built": sum(1 for latency in latencies if not latency["float_reused"]),
            "float_reused": sum(1 for latency in latencies if latency["float_reused"]),
            "float_pairs": len({(r["model"], r["backend"]) for r in records if r.get("latency")})}


def per_model(records: list[dict]) -> str:
    """Stage time and cells per model, costliest first."""
    seconds: dict[str, float] = defaultdict(float)
    cells: dict[str, int] = defaultdict(int)
    for r in records:
        seconds[r["model"]] += sum(r["timings"].values())
        cells[r["model"]] += 1
    return ", ".join(f"{m} {s:.0f} s/{cells[m]}" for m, s in sorted(seconds.items(), key=lambda kv: -kv[1]))


def wall_goal(what: str, wall: float, goal: str, cells: int) -> str:
    """A run's wall time against its goal in GOALS, as a ratio (the full matrix's goal is for
    at least 1000 cells)."""
    floor = " (goal >= 1000)" if goal == "wall_full_s" else ""
    return (f"{what} wall {wall:.0f} s (goal <= {GOALS[goal]} s, ratio {wall / GOALS[goal]:.2f}); "
            f"cells {cells}{floor}")


def show(title: str, found: dict) -> None:
    print(f"\n== {title}: {found['cells']} cells")
    print(f"wall {found['wall']:.1f} s; stage time {found['stage_time']:.1f} s")
    print(f"parallel efficiency {found['efficiency']:.0%} (goal >= {GOALS['efficiency']:.0%}); "
          f"suite overhead {found['overhead']:.0%} of worker time (goal <= {GOALS['overhead']:.0%})")
    print(f"peak memory of a worker {found['peak_mb']:.0f} MiB (goal <= {GOALS['peak_mb']} MiB, "
          f"ratio {found['peak_mb'] / GOALS['peak_mb']:.2f})")
    total = found["stage_time"] or 1.0
    print("per backend: " + ", ".join(f"{b} {s:.0f} s ({s / total:.0%})"
                                      for b, s in sorted(found["per_backend"].items(), key=lambda kv: -kv[1])))
    print("per stage: " + ", ".join(f"{st} {s:.0f} s ({s / total:.0%})"
                                    for st, s in sorted(found["per_stage"].items(), key=lambda kv: -kv[1])))
    measured = found["per_stage"].get("measure", 0.0)
    capacity = found["wall"] * max(found["workers"], 1)
    print(f"timing against float (measure stage) {measured:.0f} s over {found['timed']} timed cells: "
          f"{measured / capacity:.1%} of worker time (goal <= {GOALS['measure_share']:.0%})")
    if found["float_built"] + found["float_reused"]:
        print(f"float deployments to time against: {found['float_built']} built by timed cells and "
              f"{found['float_reused']} reused, {found['float_cells']} float cells (each deploys once), over "
              f"{found['float_pairs']} model x backend pairs (goal: one build per pair and worker process)")


def spread(latency: dict) -> list[float]:
    """A timed cell's recorded spread (records older than it kept the interquartile range)."""
    return latency.get("speedup_spread") or latency["speedup_iqr"]


def repeatability(first: list[dict], second: list[dict]) -> None:
    """How many cells timed in both runs have a speedup in the second run inside the first run's
    spread, and the other way round."""
    def speedups(records: list[dict]) -> dict[str, dict]:
        return {r["case_id"]: r["latency"] for r in records if (r.get("latency") or {}).get("speedup")}

    a, b = speedups(first), speedups(second)
    common = sorted(set(a) & set(b))
    if not common:
        print("no cell was timed in both runs")
        return
    for name, base, other in (("second in first's spread", a, b), ("first in second's spread", b, a)):
        inside = sum(1 for c in common if spread(base[c])[0] <= other[c]["speedup"] <= spread(base[c])[1])
        print(f"{name}: {inside}/{len(common)} cells ({inside / len(common):.1%}; goal >= {GOALS['repeatable']:.0%})")
    ratios = sorted(b[c]["speedup"] / a[c]["speedup"] for c in common)
    print(f"ratio of the speedups (second / first): median {ratios[len(ratios) // 2]:.3f}, "
          f"10th percentile {ratios[len(ratios) // 10]:.3f}, 90th {ratios[9 * len(ratios) // 10]:.3f}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--full", action="store_true", help="the whole default matrix instead of the slice")
    parser.add_argument("--zoo", action="store_true", help="the zoo tier (-m kind_zoo) instead of the slice")
    parser.add_argument("--keep", type=Path, help="keep the runs' records in this folder (default: deleted)")
    parser.add_argument("--from-run", type=Path, help="summarize the records of a run already made (no cell runs)")
    parser.add_argument("--wall", type=float, help="with --from-run: the run's measured wall time in seconds")
    parser.add_argument("--workers", type=int, default=2, help="with --from-run: the run's -n")
    parser.add_argument("--warm-wall", type=float,
                        help="with --from-run of a cold run: the wall time of the same cells run warm "
                             "(Inductor's cache kept), for the cold / warm ratio")
    parser.add_argument("--repeatability", nargs=2, type=Path, metavar="RUN",
                        help="compare the speedups of two runs already made (no cell runs)")
    args = parser.parse_args()
    if args.repeatability is not None:
        repeatability(*(read_records(run.resolve()) for run in args.repeatability))
        return 0
    if args.from_run is not None:
        if args.wall is None:
            parser.error("--from-run needs --wall (the run's measured wall time)")
        records = read_records(args.from_run.resolve())
        found = summarize(records, args.wall, args.workers)
        show(f"{args.from_run} (-n {args.workers})", found)
        print("per model: " + per_model(records))
        zoo = bool(records) and all(r["kind"] == "zoo" for r in records)
        print(wall_goal("zoo tier" if zoo else "run", args.wall, "wall_zoo_s" if zoo else "wall_full_s",
                        found["cells"]))
        if args.warm_wall:
            print(f"cold / warm: {args.wall:.0f} s / {args.warm_wall:.0f} s = {args.wall / args.warm_wall:.2f}")
        return 0
    selection = [] if args.full else ZOO if args.zoo else SLICE
    with tempfile.TemporaryDirectory(prefix="qmatrix-bench-") as scratch:
        folder = args.keep.resolve() if args.keep else Path(scratch)
        results = {}
        for workers in ([2] if args.full or args.zoo else [0, 2]):
            reports = Path(folder) / f"n{workers}"
            wall = timed_run([*selection, "-n", str(workers)], reports)
            records = read_records((reports / "latest").resolve())
            results[workers] = summarize(records, wall, workers)
            show(f"-n {workers}", results[workers])
            print("per model: " + per_model(records))
        # The same cells again with the Inductor cache the first run filled: what a cold start costs.
        warm = timed_run([*selection, "-n", "2"], Path(folder) / "n2", cold=False)
        print(f"cold / warm (-n 2): {results[2]['wall']:.0f} s / {warm:.0f} s = {results[2]['wall'] / warm:.2f}")
        rerun = timed_run([ONE_CELL, "-n", "0"], Path(folder) / "rerun")
    print(f"\nimport cost of a worker (matrix.plugin with torch) {import_cost():.2f} s")
    print(f"one-cell rerun, imports included {rerun:.1f} s (goal <= {GOALS['rerun_s']} s, "
          f"ratio {rerun / GOALS['rerun_s']:.2f})")
    if 0 in results:
        print(f"speedup of -n 2 over -n 0: {results[0]['wall'] / results[2]['wall']:.2f}x")
    if args.zoo:
        print(wall_goal("zoo tier, cold,", results[2]["wall"], "wall_zoo_s", results[2]["cells"]))
    if args.full:
        print(wall_goal("full matrix", results[2]["wall"], "wall_full_s", results[2]["cells"]))
    return 0


if __name__ == "__main__":
    sys.exit(main())
