"""ReXNet sweep throughput: candidates per hour with the joblib launcher (parallel trainings)
against the basic launcher (one after another), for the same candidates.

    python scripts/bench_rexnet_sweep.py --sequential-threads 1 --out runs/bench.json
    python scripts/bench_rexnet_sweep.py --candidates 12      # against two-thread trainings

Each measurement is the whole command a user runs, `python -m nas.search method=rexnet`
at the demo's setting (its space, budgets and epochs, conf/method/rexnet/demo.yaml) with
`--candidates` candidates trained once each, in a new run directory: start-up, sampling,
the candidates' `nas.train` multirun and the report included. Launchers alternate over
`--repeats` rounds; reported: the median candidates per hour of each and the spread, and the
ratio (target: joblib with 2 jobs at least 1.8x the sequential rate). Each parallel
training runs on one thread (joblib's workers get cores / jobs); `--sequential-threads 1`
gives the sequential trainings the same one thread, so the ratio measures what running
them side by side gains. Without it they use torch's default (both cores here), and the
ratio is bounded by how little one training gains from a second thread.
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
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def timed_search(launcher: list[str], candidates: int, run_dir: Path,
                 threads: int | None) -> float:
    """Seconds for one search, checked to have trained every candidate."""
    env = dict(os.environ)
    env.pop("OMP_NUM_THREADS", None)
    if threads is not None:
        env["OMP_NUM_THREADS"] = str(threads)
    cmd = [sys.executable, "-m", "nas.search", "method=rexnet", f"method.candidates={candidates}",
           "method.repeats=1", "method.group_fraction=0.3", *launcher, f"hydra.run.dir={run_dir}"]
    start = time.perf_counter()
    proc = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    seconds = time.perf_counter() - start
    if proc.returncode != 0:
        sys.exit(f"bench: {' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    result = json.loads((run_dir / "result.json").read_text())
    assert result["trainings"] == candidates, result
    return seconds


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--candidates", type=int, default=16)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--jobs", type=int, default=2)
    p.add_argument("--sequential-threads", type=int, default=None,
                   help="OMP_NUM_THREADS of the sequential run (default: torch's own)")
    p.add_argument("--out", type=Path, default=None)
    args = p.parse_args(argv)

    setups = {"sequential": (["method.evaluator.launcher=basic"], args.sequential_threads),
              f"joblib_{args.jobs}": (["method.evaluator.launcher=joblib",
                                       f"method.evaluator.jobs={args.jobs}"],
                                      None)}
    seconds: dict[str, list[float]] = {name: [] for name in setups}
    with tempfile.TemporaryDirectory() as tmp:
        for r in range(args.repeats):
            for name, (launcher, threads) in setups.items():
                s = timed_search(launcher, args.candidates, Path(tmp) / f"{name}_{r}", threads)
                seconds[name].append(s)
                print(f"round {r}: {name:<12} {s:6.1f} s  "
                      f"{3600 * args.candidates / s:6.0f} candidates/h", flush=True)
    summary = {"candidates": args.candidates, "repeats": args.repeats, "jobs": args.jobs,
               "sequential_threads": args.sequential_threads, "cpus": os.cpu_count(),
               "seconds": seconds}
    for name, values in seconds.items():
        rates = [3600 * args.candidates / s for s in values]
        summary[name] = {"candidates_per_hour": statistics.median(rates),
                         "spread": [min(rates), max(rates)]}
        print(f"{name:<12} {statistics.median(rates):6.0f} candidates/h "
              f"({min(rates):.0f}-{max(rates):.0f})")
    parallel = summary[f"joblib_{args.jobs}"]["candidates_per_hour"]
    summary["ratio"] = parallel / summary["sequential"]["candidates_per_hour"]
    print(f"joblib with {args.jobs} jobs: {summary['ratio']:.2f}x the sequential rate "
          f"(target 1.8x)")
    if args.out:
        args.out.parent.mkdir(parents=True, exist_ok=True)
        from nas.files import write_text_atomic
        write_text_atomic(args.out, json.dumps(summary, indent=1) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())
