"""MoGA's Fig. 9 at small scale: does the parameter objective move the final population?

MoGA maximises parameters as a third objective (weight 0.2) to keep NSGA-II from dropping
larger models generation by generation; its Fig. 9 compares the parameter histograms of
the last generation with and without that objective. Two searches on the same trained
supernet, latency table and seed, differing only in the objectives:

    python -m nas.search +experiment=moga_demo hydra.run.dir=runs/fig9/trained
    python -m nas.search +experiment=moga_demo hydra.run.dir=runs/fig9/three \\
        method.supernet=runs/fig9/trained/supernet.pt method.lut.table=runs/fig9/trained/lut.json
    python -m nas.search +experiment=moga_demo hydra.run.dir=runs/fig9/two \\
        method.supernet=runs/fig9/trained/supernet.pt method.lut.table=runs/fig9/trained/lut.json \\
        'method.objectives=[accuracy,latency]' 'method.nsga.weights=[0.5,0.5]'
    python scripts/moga_params_objective.py runs/fig9/three runs/fig9/two --out runs/fig9/fig9.png

Reads each run's pareto.csv (the final population) and result.json, prints the parameter
statistics of both populations and of their fronts, and writes the two histograms.
"""

from __future__ import annotations

import argparse
import csv
import json
import sys
from pathlib import Path

import numpy as np


class InputError(ValueError):
    pass


def read_run(run: Path) -> tuple[list[str], list[dict]]:
    """(objectives, final population rows) of a finished MoGA search directory."""
    try:
        result = json.loads((run / "result.json").read_text())
        with open(run / "pareto.csv", newline="") as f:
            rows = [{"params": int(r["params"]), "accuracy": float(r["accuracy"]),
                     "latency_ms": float(r["latency_ms"]), "rank": int(r["rank"])}
                    for r in csv.DictReader(f)]
    except (OSError, ValueError, KeyError, TypeError) as e:
        raise InputError(f"{run}: not a finished MoGA search directory ({e})") from None
    if result.get("method") != "moga" or not rows:
        raise InputError(f"{run}: not a finished MoGA search directory (result.json of "
                         f"method {result.get('method')!r}, {len(rows)} population rows)")
    return list(result.get("objectives", [])), rows


def summary(rows: list[dict]) -> dict:
    params = np.array([r["params"] for r in rows], dtype=float)
    front = np.array([r["params"] for r in rows if r["rank"] == 0], dtype=float)
    return {"n": len(params), "params_median": float(np.median(params)),
            "params_mean": float(params.mean()), "front_n": len(front),
            "front_params_median": float(np.median(front)) if len(front) else None,
            "best_accuracy": max(r["accuracy"] for r in rows)}


def plot(groups: dict[str, list[dict]], path: Path) -> None:
    from nas.files import pyplot, save_figure

    plt = pyplot()

    fig, ax = plt.subplots(figsize=(6.4, 4.0))
    everything = [r["params"] / 1e3 for rows in groups.values() for r in rows]
    bins = np.linspace(min(everything), max(everything), 16)
    for label, rows in groups.items():
        ax.hist([r["params"] / 1e3 for r in rows], bins=bins, alpha=0.55, label=label)
    ax.set_xlabel("parameters (thousands)")
    ax.set_ylabel("models in the last generation")
    ax.set_title("MoGA Fig. 9 at small scale: the parameter objective")
    ax.legend()
    fig.tight_layout()
    save_figure(fig, path)


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("runs", type=Path, nargs=2, metavar="RUN",
                   help="two finished MoGA search directories (e.g. three and two objectives)")
    p.add_argument("--out", type=Path, default=Path("runs/fig9/fig9.png"), help="figure (PNG)")
    args = p.parse_args(argv)
    try:
        groups, stats = {}, {}
        for run in args.runs:
            objectives, rows = read_run(run)
            label = " + ".join(objectives) or str(run)
            groups[label], stats[label] = rows, summary(rows)
    except InputError as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    for label, s in stats.items():
        print(f"{label:<32} population {s['n']:>3}: median params {s['params_median']:,.0f} "
              f"(mean {s['params_mean']:,.0f}); front {s['front_n']:>2}: median "
              f"{s['front_params_median']:,.0f}; best accuracy {100 * s['best_accuracy']:.2f} %")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    plot(groups, args.out)
    (args.out.with_suffix(".json")).write_text(json.dumps(stats, indent=1) + "\n")
    print(f"wrote {args.out} and {args.out.with_suffix('.json')}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
