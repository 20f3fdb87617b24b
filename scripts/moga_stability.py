"""Does a MoGA search select the same network when its latency table is measured again?

    python scripts/moga_stability.py --supernet runs/search/<run>/supernet.pt \
        --runs 3 --out-dir runs/moga_stability

Runs the MoGA demo search --runs times with one seed on one trained supernet
(`method.supernet`: the supernet's training is the same at the same seed, so only the
latency table, measured afresh by each run, differs), then compares the selections:

- how often two runs select the same network;
- whether the selected networks' latencies agree within the tables' stated error: the
  two selections are predicted by every run's table, and the median over tables of
  |a - b| / mean(a, b) must be at most the sum of the two tables' relative RMSE against
  whole networks (each run's lut_report.json). Judged on common tables, a selection that
  moved is told apart from a host whose speed moved between the runs;
- the host's drift: the ratio of the two runs' whole-network times of the same reference
  paths (each table's calibration), which scales every figure of a run alike and so
  leaves NSGA-II's ranks and range-normalised crowding unchanged.

With --perturb SD, it also asks where a moved selection comes from: run 0 is searched
again on run 0's table as saved, on that table times 1.03 (the host's drift, which
NSGA-II should not see), and on --draws copies with every entry times 1 + N(0, SD), each
through `method.lut.table` (DIR/control/<name>/), and says whether each selects run 0's
network.

Writes DIR/run<k>/ (each search's run directory) and DIR/stability.json; exits 1 when some
pair of runs disagrees beyond the stated error.
"""

from __future__ import annotations

import argparse
import dataclasses
import itertools
import json
import os
import statistics
import subprocess
import sys
from pathlib import Path


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--supernet", required=True, metavar="PT",
                   help="a supernet.pt written by a MoGA demo search (method=moga)")
    p.add_argument("--runs", type=int, default=3, metavar="N",
                   help="searches, each measuring its own table (default: 3)")
    p.add_argument("--seed", type=int, default=0, metavar="N",
                   help="the seed of every search (default: 0)")
    p.add_argument("--out-dir", required=True, metavar="DIR")
    p.add_argument("--perturb", type=float, default=None, metavar="SD",
                   help="also search on run 0's table as saved, x 1.03 and with every entry "
                        "x 1 + N(0, SD) (e.g. 0.002)")
    p.add_argument("--draws", type=int, default=2, metavar="N",
                   help="perturbed copies of run 0's table with --perturb (default: 2)")
    p.add_argument("overrides", nargs="*", help="more nas.search overrides, e.g. data=...")
    args = p.parse_args(argv)
    if args.runs < 2:
        p.error(f"--runs: expected an integer >= 2, got {args.runs}")
    if args.perturb is not None and not 0 < args.perturb < 0.5:
        p.error(f"--perturb: expected a standard deviation in (0, 0.5), got {args.perturb}")
    if args.draws < 1:
        p.error(f"--draws: expected an integer >= 1, got {args.draws}")
    supernet = Path(args.supernet)
    if not supernet.is_file():
        p.error(f"--supernet: {supernet} is not a file (expected a search's supernet.pt)")

    import numpy as np

    from nas.arch import io
    from nas.cost.lut import LatencyTable
    from nas.files import write_text_atomic

    out = Path(args.out_dir)

    def search(run_dir: Path, *more: str) -> dict | None:
        """The run's result.json, searching first unless it is there (None: it failed)."""
        if not (run_dir / "result.json").is_file():
            cmd = [sys.executable, "-m", "nas.search", "method=moga", f"seed={args.seed}",
                   f"method.supernet={supernet.resolve()}", "logger=none",
                   "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}",
                   *args.overrides, *more]
            print("$", " ".join(cmd), flush=True)
            rc = subprocess.run(cmd, env=dict(os.environ)).returncode
            if rc != 0:
                print(f"error: {run_dir} stopped with exit status {rc}", file=sys.stderr)
                return None
        return json.loads((run_dir / "result.json").read_text())

    runs = []
    for k in range(args.runs):
        run_dir = out / f"run{k}"
        result = search(run_dir)
        if result is None:
            return 2
        report = json.loads((run_dir / "lut_report.json").read_text())
        runs.append({"run": k, "genome": result["genome"], "latency_ms": result["latency_ms"],
                     "rel_rmse": report["rel_rmse"], "kendall_tau": report["kendall_tau"],
                     "visits": report["noise"]["visits"]})

    tables = [LatencyTable.load(out / f"run{k}" / "lut.json") for k in range(args.runs)]
    for r in runs:   # the selection as every run's table predicts it
        spec = io.load(out / f"run{r['run']}" / "arch.yaml")
        r["predicted_by_each_table_ms"] = [t.predict(spec) for t in tables]
    pairs = []
    for a, b in itertools.combinations(runs, 2):
        per_table = [apart(pa, pb) for pa, pb in zip(a["predicted_by_each_table_ms"],
                                                     b["predicted_by_each_table_ms"])]
        diff = float(statistics.median(per_table))
        bound = a["rel_rmse"] + b["rel_rmse"]
        own = apart(a["latency_ms"], b["latency_ms"])
        pairs.append({"runs": [a["run"], b["run"]], "same_network": a["genome"] == b["genome"],
                      "latency_difference": diff, "latency_difference_per_table": per_table,
                      "latency_difference_own_tables": own, "stated_error": bound,
                      "host_speed_ratio": host_ratio(tables[a["run"]], tables[b["run"]]),
                      "agree": diff <= bound})
    summary = {"runs": runs, "pairs": pairs,
               "same_network_fraction": sum(x["same_network"] for x in pairs) / len(pairs),
               "all_agree": all(x["agree"] for x in pairs)}
    if args.perturb is not None:
        controls = []
        rng = np.random.default_rng(args.seed)
        # (name, factor of every entry, sd of each entry's own factor 1 + N(0, sd))
        controls_asked = [("as_saved", 1.0, None), ("times_1.03", 1.03, None),
                          *((f"perturbed_{d}", 1.0, args.perturb) for d in range(args.draws))]
        for name, factor, sd in controls_asked:
            table = LatencyTable.load(out / "run0" / "lut.json")
            for key in sorted(table.entries):    # a fixed order: the same draws on resume
                own_factor = 1.0 + rng.normal(0.0, sd) if sd is not None else 1.0
                table.entries[key] = scaled(table.entries[key], factor * own_factor)
            path = out / "control" / f"{name}.json"
            if not path.is_file():
                path.parent.mkdir(parents=True, exist_ok=True)
                table.save(path)
            result = search(out / "control" / name, f"method.lut.table={path.resolve()}")
            if result is None:
                return 2
            controls.append({"table": name, "entry_sd": sd,
                             "same_as_run0": result["genome"] == runs[0]["genome"],
                             "genome": result["genome"], "latency_ms": result["latency_ms"],
                             "heldout_loss": result.get("heldout_loss")})
        summary["controls"] = controls
    write_text_atomic(out / "stability.json", json.dumps(summary, indent=1) + "\n")

    print("run  latency ms  rel RMSE  tau    visits  genome")
    for r in runs:
        print(f"{r['run']:<4} {r['latency_ms']:<11.3f} {r['rel_rmse']:<9.2%} "
              f"{r['kendall_tau']:<6.3f} {r['visits']:<7} {r['genome']}")
    for x in pairs:
        ratio = x["host_speed_ratio"]
        print(f"runs {x['runs'][0]}-{x['runs'][1]}: {'same' if x['same_network'] else 'other'} "
              f"network, {x['latency_difference']:.2%} apart on common tables (own tables "
              f"{x['latency_difference_own_tables']:.2%}; host times x"
              f"{'n/a' if ratio is None else f'{ratio:.3f}'}), stated error "
              f"{x['stated_error']:.2%}: {'agree' if x['agree'] else 'DISAGREE'}")
    for c in summary.get("controls", []):
        print(f"run 0 searched again on its table {c['table']}: "
              f"{'the same' if c['same_as_run0'] else 'another'} network, "
              f"{c['latency_ms']:.3f} ms")
    print(f"same network in {summary['same_network_fraction']:.0%} of pairs -> "
          f"{out / 'stability.json'}")
    return 0 if summary["all_agree"] else 1


def apart(a: float, b: float) -> float:
    """|a - b| relative to their mean."""
    return abs(a - b) / ((a + b) / 2)


def scaled(stats, factor: float):
    """LatencyStats with every time (a field ending in _ms) times `factor`."""
    return dataclasses.replace(stats, **{f.name: getattr(stats, f.name) * factor
                                         for f in dataclasses.fields(stats)
                                         if f.name.endswith("_ms")})


def host_ratio(a, b) -> float | None:
    """Median ratio of table b's whole-network times to table a's over the reference paths
    both timed (None when they share none)."""
    ca, cb = a.calibration or {}, b.calibration or {}
    times_a = {tuple(v): t for v, t in zip(ca.get("vectors", []), ca.get("measured_ms", []))}
    ratios = [t / times_a[tuple(v)] for v, t in zip(cb.get("vectors", []),
                                                    cb.get("measured_ms", []))
              if tuple(v) in times_a]
    return float(statistics.median(ratios)) if ratios else None


if __name__ == "__main__":
    sys.exit(main())
