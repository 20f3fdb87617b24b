"""Benchmark the latency lookup table of the MoGA search space against whole networks.

    python scripts/bench_lut.py --out-dir runs/lut                 # the search setting
    python scripts/bench_lut.py --out-dir runs/lut224 --setting imagenet

Builds the table for moga_space (search: width 1.0, stem stride 1, 10 classes, 32x32;
imagenet: stem stride 2, 1000 classes, 224x224) on this device, writes lut.json, and
times 30 random architectures (not among the table's calibration paths) as whole
networks, in visits that alternate with the build's reference paths so that both see
the same machine load; writes lut_report.json: RMSE, relative RMSE (RMSE / mean
measured) and Kendall tau-b of predicted against measured latency, with
per-architecture rows. Exits 1 when the relative RMSE is above --max-rel-rmse or tau
below --min-tau.

Timing is noisy on a shared machine: by default (CPU, 1 thread) both the table and the
networks are timed with the thread's CPU time, which leaves out the time slices the OS
gives other processes (--clock wall for wall time). The load average before and after
is recorded, and a busy machine (load above the core count) is reported on stderr.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path

SETTINGS = {"search": dict(stem_stride=1, num_classes=10, input_size=32),
            "imagenet": dict(stem_stride=2, num_classes=1000, input_size=224)}


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--out-dir", required=True, metavar="DIR",
                   help="where lut.json and lut_report.json go")
    p.add_argument("--setting", choices=sorted(SETTINGS), default="search",
                   help="search: 32x32, stem stride 1, 10 classes (default); "
                        "imagenet: 224x224, stem stride 2, 1000 classes")
    p.add_argument("--width", type=float, default=1.0, help="width multiplier (default: 1.0)")
    p.add_argument("--device", default=None,
                   help="torch device (default: cuda when available, else cpu)")
    p.add_argument("--threads", type=int, default=1, help="intra-op threads (default: 1)")
    p.add_argument("--batch", type=int, default=1, help="batch size (default: 1)")
    p.add_argument("--warmup", type=int, default=10, help="untimed forwards (default: 10)")
    p.add_argument("--repeats", type=int, default=30,
                   help="timed forwards per reference path and per evaluated network "
                        "(default: 30)")
    p.add_argument("--contexts", type=int, default=4,
                   help="sweeps of reference paths; each sweep puts every candidate on "
                        "one path (default: 4)")
    p.add_argument("--timing", choices=("context", "isolated"), default="context",
                   help="time parts inside whole-network forwards (default) or alone")
    p.add_argument("--calibration", choices=("scale", "linear", "none"), default="scale",
                   help="fit of the summed entries on the reference paths (default: scale)")
    p.add_argument("--clock", choices=("auto", "wall", "thread"), default="auto",
                   help="wall time, or the thread's CPU time, which leaves out other "
                        "processes' slices on a shared machine (CPU, 1 thread); auto: "
                        "thread where allowed, else wall (default)")
    p.add_argument("--n", type=int, default=30, help="architectures evaluated (default: 30)")
    p.add_argument("--seed", type=int, default=0, help="reference-path seed (default: 0)")
    p.add_argument("--report-seed", type=int, default=1,
                   help="seed of the evaluated architectures (default: 1)")
    p.add_argument("--rounds", type=int, default=6,
                   help="visits to the evaluated networks, spread over the table's build "
                        "(default: 6)")
    p.add_argument("--no-interleave", action="store_true",
                   help="time the evaluated networks after the build instead of in "
                        "alternation with it")
    p.add_argument("--reuse", action="store_true",
                   help="reuse DIR/lut.json when it matches this device and settings")
    p.add_argument("--max-rel-rmse", type=float, default=0.05, help="target (default: 0.05)")
    p.add_argument("--min-tau", type=float, default=0.8, help="target (default: 0.8)")
    p.add_argument("--default-malloc", action="store_true",
                   help="keep glibc's default malloc thresholds (see steady_malloc)")
    args = p.parse_args(argv)

    import torch

    from nas.cost.latency import (LatencyTable, NetworkTimer, lut_report, reference_paths,
                                  sample_vectors, space_layout, steady_malloc)
    from nas.methods.moga import moga_space

    device = args.device or ("cuda" if torch.cuda.is_available() else "cpu")
    clock = args.clock
    if clock == "auto":
        clock = "thread" if torch.device(device).type == "cpu" and args.threads == 1 else "wall"
    if not args.default_malloc and device.startswith("cpu") and not steady_malloc():
        print("note: mallopt unavailable; CPU timings may include page faults", file=sys.stderr)
    space = moga_space(width=args.width, **SETTINGS[args.setting])
    out = Path(args.out_dir)
    out.mkdir(parents=True, exist_ok=True)
    build_args = dict(batch=args.batch, device=device, threads=args.threads,
                      warmup=args.warmup, repeats=args.repeats, timing=args.timing,
                      contexts=args.contexts, calibration=args.calibration, clock=clock,
                      seed=args.seed)
    if not 1 <= args.rounds <= args.repeats:
        p.error(f"--rounds: expected an integer in [1, --repeats], got {args.rounds}")
    load_before = _load()
    timer, skipped = None, 0
    if not (args.no_interleave or args.reuse):
        # The evaluated networks are drawn now, leaving out the reference paths the build
        # will fit its calibration on (the same seed gives the same paths), and timed in
        # `rounds` visits spread over the build.
        planned = reference_paths(space_layout(space), args.contexts,
                                  torch.Generator().manual_seed(args.seed))
        planned = [[c[i] for i in space.searchable] for c in planned]
        try:
            vectors, skipped = sample_vectors(space, args.n, args.report_seed, planned)
            timer = NetworkTimer(space, vectors, device=device, threads=args.threads,
                                 batch=args.batch, warmup=args.warmup, clock=clock)
        except ValueError as e:
            p.error(str(e))
        counts = [args.repeats // args.rounds + (k < args.repeats % args.rounds)
                  for k in range(args.rounds)]

        def interleave(done: int, total: int) -> None:
            while timer.rounds < done * args.rounds // total:
                timer.round(counts[timer.rounds])

        build_args["interleave"] = interleave
    try:
        if args.reuse:
            table = LatencyTable.load_or_build(out / "lut.json", space, **build_args)
        else:
            table = LatencyTable().build_for_space(space, **build_args)
            table.save(out / "lut.json")
    except ValueError as e:
        p.error(str(e))
    if timer is None:
        report = lut_report(table, space, n=args.n, seed=args.report_seed, rounds=args.rounds)
    else:
        report = lut_report(table, space, timer=timer)
        report.update(seed=args.report_seed, skipped_calibration_paths=skipped)
    report["interleaved"] = timer is not None
    report["build_seconds"] = table.meta.get("build_seconds")  # the original build's if reused
    report["entries"] = len(table)
    report["load_average"] = {"before": load_before, "after": _load(), "cpus": os.cpu_count()}
    report["setting"] = {"name": args.setting, "width": args.width, **SETTINGS[args.setting]}
    (out / "lut_report.json").write_text(json.dumps(report, indent=1) + "\n")

    ok = report["rel_rmse"] <= args.max_rel_rmse and report["kendall_tau"] >= args.min_tau
    _print(report, table, out, args)
    busy = max(report["load_average"]["before"] or 0, report["load_average"]["after"] or 0)
    if busy > (os.cpu_count() or 1):
        print(f"warning: load average {busy:.1f} on {os.cpu_count()} CPUs; other work was "
              f"running, timings are noisy", file=sys.stderr)
    return 0 if ok else 1


def _load() -> float | None:
    try:
        return round(os.getloadavg()[0], 2)
    except OSError:
        return None


def _print(r: dict, table, out: Path, args: argparse.Namespace) -> None:
    s, u, cal = r["settings"], r["uncalibrated"], r["calibration"]
    print(f"{s['device']}, torch {s['torch_version']}, {s['threads']} thread(s), batch "
          f"{s['batch']}, {s['resolution']}x{s['resolution']}, timing {s['timing']}, "
          f"{s['clock']} clock, {s['allocator']} malloc")
    print(f"table: {r['entries']} entries -> {out / 'lut.json'} "
          f"(built in {r['build_seconds']:.1f} s)")
    if cal:
        print(f"calibration: {cal['fit']} x{cal['scale']:.4f} {cal['offset_ms']:+.4f} ms, "
              f"fitted on {cal['paths']} reference paths (left out of the evaluation)")
    how = "in alternation with the build" if r["interleaved"] else "after the build"
    print(f"{r['n']} architectures, measured {how} in {r['measure_seconds']:.1f} s: mean "
          f"{r['mean_measured_ms']:.3f} ms measured, {r['mean_predicted_ms']:.3f} ms predicted")
    print(f"RMSE {r['rmse_ms']:.4f} ms, relative RMSE {r['rel_rmse']:.2%} "
          f"(target <= {args.max_rel_rmse:.0%}), Kendall tau {r['kendall_tau']:.3f} "
          f"(target >= {args.min_tau}), mean error {r['mean_rel_error']:+.2%}, "
          f"max |error| {r['max_abs_rel_error']:.2%}")
    if cal:
        print(f"without calibration: RMSE {u['rmse_ms']:.4f} ms, relative RMSE "
              f"{u['rel_rmse']:.2%}, Kendall tau {u['kendall_tau']:.3f}, mean error "
              f"{u['mean_rel_error']:+.2%}")
    print(f"report -> {out / 'lut_report.json'}")


if __name__ == "__main__":
    sys.exit(main())
