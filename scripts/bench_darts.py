"""DARTS search speed and memory at the paper's search configuration, against NNI 3.0.

    python scripts/bench_darts.py --nni-python /path/to/nni-venv/bin/python --out runs/bench_darts.json

Times one search iteration (an architecture step, then a weight step: what `python -m
nas.search method=darts` runs per batch, `nas.methods.darts.search.search_iteration`) of the
8-cell, 16-channel search network on random 32x32 batches of 32 and 64, first and second
order, in channels-last layout (what the search runs on the CPU) and contiguous NCHW (NNI's
layout), and NNI 3.0's DARTS (first order only; `scripts/bench_darts_nni.py`, run with
`--nni-python`, the python of a virtualenv holding `nni==3.0`, `torch==2.13.0` and
`pytorch-lightning` 2.6) in the same run with the same threads. Every measurement runs in a
fresh process (so peak RSS is its own), `--repeats` times, the implementations alternating;
reported: the median ms per iteration over all timed iterations, the spread of the
per-process medians, and the median peak RSS.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]


def worker(args) -> None:
    """One process: build the search network, warm up, time `iterations` iterations."""
    import torch

    from nas.arch.zoo.darts import darts
    from nas.methods.darts.search import DartsConfig, make_optimizers, search_iteration
    from nas.methods.darts.cells import DARTS_OPS, CellSearchSpace, CellSupernet

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    cfg = DartsConfig(order=args.order, channels=args.channels, layers=args.layers)
    net = CellSupernet(CellSearchSpace(DARTS_OPS, darts("darts_v2", input_size=args.size)),
                       channels=cfg.channels, layers=cfg.layers)
    channels_last = args.layout == "channels_last"
    if channels_last:
        net = net.to(memory_format=torch.channels_last)
    w_opt, a_opt = make_optimizers(net, cfg)

    def batch():
        x = torch.randn(args.batch, 3, args.size, args.size)
        if channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return x, torch.randint(0, 10, (args.batch,))

    times = []
    for i in range(args.warmup + args.iterations):
        train, val = batch(), batch()
        start = time.perf_counter()
        search_iteration(net, cfg, w_opt, a_opt, train, val)
        times.append(time.perf_counter() - start)
    print(json.dumps({"impl": "nas", "order": args.order, "batch": args.batch,
                      "layout": args.layout,
                      "ms": [1000 * t for t in times[args.warmup:]],
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "torch": torch.__version__, "threads": torch.get_num_threads()}))


def run_worker(cmd: list[str], threads: int) -> dict:
    env = dict(os.environ, OMP_NUM_THREADS=str(threads), PYTHONPATH=str(REPO))
    r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
    lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
    if r.returncode != 0 or not lines:
        raise SystemExit(f"error: {' '.join(cmd[:3])} ... failed (exit {r.returncode}): "
                         f"{(r.stderr.strip().splitlines() or ['no output'])[-1]}")
    return json.loads(lines[-1])


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--nni-python", type=Path, default=None,
                   help="python of a virtualenv with nni==3.0 (NNI is skipped without it)")
    p.add_argument("--batches", type=int, nargs="+", default=[32, 64])
    p.add_argument("--orders", type=int, nargs="+", default=[1, 2], choices=[1, 2])
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--warmup", type=int, default=1)
    p.add_argument("--iterations", type=int, default=3)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--layouts", nargs="+", default=["channels_last", "contiguous"],
                   choices=["channels_last", "contiguous"],
                   help="ours in these memory layouts: channels-last is what the search "
                        "runs on the CPU (trainer.memory_format=auto), contiguous (NCHW) is "
                        "NNI's")
    p.add_argument("--out", type=Path, default=Path("runs/bench_darts.json"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--order", type=int, default=1, help=argparse.SUPPRESS)
    p.add_argument("--batch", type=int, default=64, help=argparse.SUPPRESS)
    p.add_argument("--layout", default="contiguous", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    if args.nni_python is not None and not args.nni_python.is_file():
        print(f"error: --nni-python {args.nni_python}: no such file", file=sys.stderr)
        return 2
    shape = ["--channels", str(args.channels), "--layers", str(args.layers), "--size",
             str(args.size), "--warmup", str(args.warmup), "--iterations", str(args.iterations),
             "--threads", str(args.threads)]
    runs: dict[str, list[dict]] = {}
    for rep in range(args.repeats):
        for batch in args.batches:
            jobs = [(f"nas {layout} order {o} batch {batch}",
                     [sys.executable, __file__, "--worker", "--order", str(o), "--batch",
                      str(batch), "--layout", layout, *shape])
                    for layout in args.layouts for o in args.orders]
            if args.nni_python is not None:
                jobs.append((f"nni order 1 batch {batch}",
                             [str(args.nni_python), str(REPO / "scripts" / "bench_darts_nni.py"),
                              "--batch", str(batch), *shape]))
            for name, cmd in jobs:
                result = run_worker(cmd, args.threads)
                runs.setdefault(name, []).append(result)
                print(f"[{rep + 1}/{args.repeats}] {name}: "
                      f"{statistics.median(result['ms']):.0f} ms/iteration, "
                      f"peak RSS {result['peak_rss_mb']:.0f} MB", flush=True)
    summary = {}
    for name, results in runs.items():
        medians = [statistics.median(r["ms"]) for r in results]
        summary[name] = {
            "ms_median": statistics.median(ms for r in results for ms in r["ms"]),
            "ms_spread": [min(medians), max(medians)],
            "peak_rss_mb_median": statistics.median(r["peak_rss_mb"] for r in results),
            "runs": results}
    print(f"\n{'configuration':<37} {'ms/iteration':>13} {'spread':>17} {'peak RSS':>10}")
    for name, s in summary.items():
        lo, hi = s["ms_spread"]
        print(f"{name:<37} {s['ms_median']:>13.0f} {lo:>8.0f}-{hi:<8.0f} "
              f"{s['peak_rss_mb_median']:>7.0f} MB")
    for batch in args.batches:
        nni = summary.get(f"nni order 1 batch {batch}")
        for layout in args.layouts:
            ours = summary.get(f"nas {layout} order 1 batch {batch}")
            second = summary.get(f"nas {layout} order 2 batch {batch}")
            if ours and nni:
                print(f"batch {batch}, {layout}: first order "
                      f"{ours['ms_median'] / nni['ms_median']:.2f}x NNI's time, peak RSS "
                      f"{ours['peak_rss_mb_median'] / nni['peak_rss_mb_median']:.2f}x")
            if ours and second:
                print(f"batch {batch}, {layout}: second order "
                      f"{second['ms_median'] / ours['ms_median']:.2f}x the first order's time")
    args.out.parent.mkdir(parents=True, exist_ok=True)
    settings = {k: str(v) if isinstance(v, Path) else v for k, v in vars(args).items()
                if k not in ("worker", "order", "batch", "layout")}
    from nas.files import write_text_atomic
    write_text_atomic(args.out, json.dumps({"settings": settings, "results": summary},
                                           indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
