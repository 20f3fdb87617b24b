"""Re-measure the README's latency-table figures through the MoGA search's own code path.

    python scripts/bench_lut.py --out-dir runs/lut                    # the demo search's space
    python scripts/bench_lut.py --out-dir runs/lut224 --setting imagenet

Each run calls nas.methods.moga.search.latency_stage, the function the search builds lut.json and
lut_report.json with, at the demo budget's lut settings: the figures are the search's own.
Exits 1 when, over the runs, the median relative RMSE is above --max-rel-rmse or the
median Kendall tau below --min-tau.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import statistics
import sys
from pathlib import Path

# The search's embedded data is 32x32 with 10 classes; imagenet is the paper's setting.
SETTINGS = {"search": dict(num_classes=10, input_size=32),
            "imagenet": dict(width=1.0, stem_stride=2, init=None, num_classes=1000,
                             input_size=224)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", required=True, metavar="DIR",
                   help="DIR/run<k>/ gets each run's lut.json and lut_report.json (replaced "
                        "if there), DIR/bench_lut.json every figure")
    p.add_argument("--setting", choices=sorted(SETTINGS), default="search",
                   help="search: the demo search's space (width, stem stride and init of "
                        "conf/method/moga/demo.yaml; 10 classes, 32x32; default); imagenet: "
                        "width 1.0, stem stride 2, official init, 1000 classes, 224x224")
    p.add_argument("--runs", type=int, metavar="N", default=3,
                   help="tables built and checked, each afresh (default: 3)")
    p.add_argument("--seed", type=int, metavar="N", default=0,
                   help="run k uses seed + k, as the search uses its seed (default: 0)")
    p.add_argument("--warmup", type=int, metavar="N", default=None,
                   help="untimed forwards at each visit (default: the demo budget's "
                        "method.lut.warmup)")
    p.add_argument("--repeats", type=int, metavar="N", default=None,
                   help="timed forwards at each visit of a reference path or checked network "
                        "(default: the demo budget's method.lut.repeats)")
    p.add_argument("--visits", type=int, metavar="N", default=None,
                   help="least interleaved visits (default: method.lut.visits)")
    p.add_argument("--max-visits", type=int, metavar="N", default=None,
                   help="most interleaved visits (default: method.lut.max_visits)")
    p.add_argument("--max-spread", type=float, metavar="X", default=None,
                   help="visit until the median split-half spread is at most X (default: "
                        "method.lut.max_spread)")
    p.add_argument("--report-archs", type=int, metavar="N", default=None,
                   help="random networks timed whole per run, at least 2 (default: the demo "
                        "budget's method.lut.report_archs)")
    p.add_argument("--max-rel-rmse", type=float, metavar="X", default=0.05,
                   help="target for the median relative RMSE (default: 0.05)")
    p.add_argument("--min-tau", type=float, metavar="X", default=0.8,
                   help="target for the median Kendall tau (default: 0.8)")
    args = p.parse_args(argv)
    if args.runs < 1:
        p.error(f"--runs: expected an integer >= 1, got {args.runs}")

    from nas.files import write_text_atomic
    from nas.methods.moga.search import demo_setting, latency_stage, moga_space

    cfg = demo_setting()[0]
    overrides = {k: v for k, v in (("warmup", args.warmup), ("repeats", args.repeats),
                                   ("visits", args.visits), ("max_visits", args.max_visits),
                                   ("max_spread", args.max_spread),
                                   ("report_archs", args.report_archs)) if v is not None}
    try:
        lut = dataclasses.replace(cfg.lut, **overrides)
    except ValueError as e:
        p.error(f"method.lut.{e}")
    if lut.report_archs < 2:
        p.error(f"--report-archs: expected an integer >= 2, got {lut.report_archs}")
    setting = {"width": cfg.width, "stem_stride": cfg.stem_stride, "init": cfg.init,
               **SETTINGS[args.setting]}
    space = moga_space(**setting)
    out = Path(args.out_dir)

    print(f"{args.setting}: width {setting['width']}, stem stride {setting['stem_stride']}, "
          f"init {setting['init'] or 'official'}, {setting['num_classes']} classes, "
          f"{setting['input_size']}x{setting['input_size']}; lut {dataclasses.asdict(lut)}",
          flush=True)
    load_before = _load()
    runs = []
    for k in range(args.runs):
        run_dir = out / f"run{k}"
        for name in ("lut.json", "lut_report.json"):  # a saved table would be reused
            (run_dir / name).unlink(missing_ok=True)
        run_dir.mkdir(parents=True, exist_ok=True)
        table, r = latency_stage(space, lut, run_dir, args.seed + k)
        runs.append({"run": k, "seed": args.seed + k, "dir": str(run_dir),
                     "entries": len(table), "build_seconds": table.meta["build_seconds"],
                     "scale": table.calibration["scale"], "rel_rmse": r["rel_rmse"],
                     "rmse_ms": r["rmse_ms"], "mean_measured_ms": r["mean_measured_ms"],
                     "kendall_tau": r["kendall_tau"],
                     "table_visits": table.meta["visits_done"],
                     "table_spread": table.meta["spread"],
                     "report_visits": r["noise"]["visits"], "report_spread": r["noise"]["spread"],
                     "settled": r["noise"]["settled"],
                     "uncalibrated_rel_rmse": r["uncalibrated"]["rel_rmse"],
                     "measure_seconds": r["measure_seconds"]})
        _print_run(runs[-1], header=k == 0)
    load = {"before": load_before, "after": _load(), "cpus": os.cpu_count()}

    summary = {name: {"median": statistics.median(x[name] for x in runs),
                      "min": min(x[name] for x in runs), "max": max(x[name] for x in runs)}
               for name in ("rel_rmse", "kendall_tau")}
    rel, tau = summary["rel_rmse"]["median"], summary["kendall_tau"]["median"]
    ok = rel <= args.max_rel_rmse and tau >= args.min_tau  # a nan tau fails
    s = r["settings"]
    result = {"setting": {"name": args.setting, **setting}, "lut": dataclasses.asdict(lut),
              "device": s["device"], "torch_version": s["torch_version"],
              "low_percentile": s["low_percentile"], "runs": runs, "summary": summary,
              "targets": {"max_rel_rmse": args.max_rel_rmse, "min_tau": args.min_tau},
              "ok": ok, "load_average": load}
    write_text_atomic(out / "bench_lut.json", json.dumps(result, indent=1) + "\n")

    print(f"{s['device']}, torch {s['torch_version']}, {len(runs)} run(s): median relative "
          f"RMSE {rel:.2%} ({summary['rel_rmse']['min']:.2%}-{summary['rel_rmse']['max']:.2%}"
          f"; target <= {args.max_rel_rmse:.0%}), median Kendall tau {tau:.3f} "
          f"({summary['kendall_tau']['min']:.3f}-{summary['kendall_tau']['max']:.3f}; target "
          f">= {args.min_tau})")
    print(f"load average {load['before']} before, {load['after']} after, {load['cpus']} CPUs"
          f" -> {out / 'bench_lut.json'}")
    busy = max(load["before"] or 0, load["after"] or 0)
    if busy > (os.cpu_count() or 1):
        print(f"warning: load average {busy:.1f} on {os.cpu_count()} CPUs; other work was "
              f"running, timings are noisy", file=sys.stderr)
    return 0 if ok else 1


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _print_run(x: dict, header: bool) -> None:
    if header:
        print("run  seed  entries  build s  scale   rel RMSE  RMSE ms  mean ms  tau    "
              "visits  spread (table / report)")
    print(f"{x['run']:<4} {x['seed']:<5} {x['entries']:<8} {x['build_seconds']:<8.1f} "
          f"{x['scale']:<7.4f} {x['rel_rmse']:<9.2%} {x['rmse_ms']:<8.4f} "
          f"{x['mean_measured_ms']:<8.3f} {x['kendall_tau']:<6.3f} "
          f"{x['table_visits']}/{x['report_visits']:<4} {x['table_spread']:.2%} / "
          f"{x['report_spread']:.2%}{'' if x['settled'] else '  (not settled)'}", flush=True)


if __name__ == "__main__":
    sys.exit(main())
