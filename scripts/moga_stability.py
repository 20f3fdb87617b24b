"""Does a MoGA search select the same network when its latency table is measured again?

    python scripts/moga_stability.py --supernet runs/search/<run>/supernet.pt \
        --runs 3 --out-dir runs/moga_stability

Runs the MoGA demo search --runs times with one seed on one trained supernet
(`method.supernet`: the supernet's training is the same at the same seed, so only the
latency table, measured afresh by each run, differs), then compares the selections:

- how often two runs select the same network;
- whether the selected networks' predicted latencies agree within the tables' stated
  error: |a - b| / mean(a, b) at most the sum of the two tables' relative RMSE against
  whole networks (each run's lut_report.json);
- each selection predicted by every other run's table, which separates a table that moved
  from a selection that moved.

Writes DIR/run<k>/ (each search's run directory) and DIR/stability.json; exits 1 when some
pair of runs disagrees beyond the stated error.
"""

from __future__ import annotations

import argparse
import itertools
import json
import os
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
    p.add_argument("overrides", nargs="*", help="more nas.search overrides, e.g. data=...")
    args = p.parse_args(argv)
    if args.runs < 2:
        p.error(f"--runs: expected an integer >= 2, got {args.runs}")
    supernet = Path(args.supernet)
    if not supernet.is_file():
        p.error(f"--supernet: {supernet} is not a file (expected a search's supernet.pt)")

    from nas.arch import io
    from nas.cost.lut import LatencyTable
    from nas.files import write_text_atomic

    out = Path(args.out_dir)
    runs = []
    for k in range(args.runs):
        run_dir = out / f"run{k}"
        if not (run_dir / "result.json").is_file():
            cmd = [sys.executable, "-m", "nas.search", "method=moga", f"seed={args.seed}",
                   f"method.supernet={supernet.resolve()}", "logger=none",
                   "trainer.enable_progress_bar=false", f"hydra.run.dir={run_dir}",
                   *args.overrides]
            print("$", " ".join(cmd), flush=True)
            rc = subprocess.run(cmd, env=dict(os.environ)).returncode
            if rc != 0:
                print(f"error: run {k} stopped with exit status {rc}", file=sys.stderr)
                return 2
        result = json.loads((run_dir / "result.json").read_text())
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
        diff = abs(a["latency_ms"] - b["latency_ms"]) / ((a["latency_ms"] + b["latency_ms"]) / 2)
        bound = a["rel_rmse"] + b["rel_rmse"]
        pairs.append({"runs": [a["run"], b["run"]], "same_network": a["genome"] == b["genome"],
                      "latency_difference": diff, "stated_error": bound,
                      "agree": diff <= bound})
    summary = {"runs": runs, "pairs": pairs,
               "same_network_fraction": sum(x["same_network"] for x in pairs) / len(pairs),
               "all_agree": all(x["agree"] for x in pairs)}
    write_text_atomic(out / "stability.json", json.dumps(summary, indent=1) + "\n")

    print("run  latency ms  rel RMSE  tau    visits  genome")
    for r in runs:
        print(f"{r['run']:<4} {r['latency_ms']:<11.3f} {r['rel_rmse']:<9.2%} "
              f"{r['kendall_tau']:<6.3f} {r['visits']:<7} {r['genome']}")
    for x in pairs:
        print(f"runs {x['runs'][0]}-{x['runs'][1]}: {'same' if x['same_network'] else 'other'} "
              f"network, latencies {x['latency_difference']:.2%} apart, stated error "
              f"{x['stated_error']:.2%}: {'agree' if x['agree'] else 'DISAGREE'}")
    print(f"same network in {summary['same_network_fraction']:.0%} of pairs -> "
          f"{out / 'stability.json'}")
    return 0 if summary["all_agree"] else 1


if __name__ == "__main__":
    sys.exit(main())
