"""AutoNL search step against a training step of the largest network it contains.

    python scripts/bench_autonl.py --out runs/bench_autonl.json

Times, in one run with the same batches and threads, one optimizer step (forward, loss,
backward, TF RMSProp step) of (a) the superkernel search network with its cost term
CE + lam ln(MACs) after warm-up, and (b) the stand-alone network of the space's most
expensive choice (every layer at kernel 5, expansion 6, the larger SE, LightNL at 25 %
with stride 1), built from its spec. Every measurement runs in a fresh process,
`--repeats` times, alternating; reported: the median ms per step over all timed steps, the
spread of the per-process medians, and the ratio (target: at most 1.5x). Defaults: the
demo's quarter-width space at 32x32 with a stride-1 stem, batch 128.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import time
from pathlib import Path

REPO = Path(__file__).resolve().parents[1]
IMPLS = ("search", "largest")


def worker(args) -> None:
    """One process: build one network, warm up, time `iterations` optimizer steps."""
    import torch
    import torch.nn.functional as F

    from nas.arch.builder import build
    from nas.methods.autonl.search import AutoNLConfig
    from nas.optim import build_optimizer
    from nas.methods.autonl.superkernel import SuperkernelNet, autonl_space

    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    space = autonl_space(width=args.width, stem_stride=args.stem_stride, num_classes=10,
                         input_size=args.size)
    net = SuperkernelNet(space) if args.impl == "search" else build(space.to_spec(space.largest()))
    fmt = torch.channels_last if args.channels_last else torch.contiguous_format
    net = net.to(memory_format=fmt)
    net.train()
    cfg = AutoNLConfig()
    opt, _ = build_optimizer(net, cfg.optim, batch_size=args.batch, steps_per_epoch=100,
                             max_epochs=1)
    x = torch.randn(args.batch, 3, args.size, args.size).contiguous(memory_format=fmt)
    y = torch.randint(0, 10, (args.batch,))
    times = []
    for _ in range(args.warmup + args.iterations):
        start = time.perf_counter()
        loss = F.cross_entropy(net(x), y, label_smoothing=0.1)
        if args.impl == "search":
            loss = loss + cfg.lam * torch.log(net.cost())
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        times.append(time.perf_counter() - start)
    print(json.dumps({"impl": args.impl, "ms": [1000 * t for t in times[args.warmup:]],
                      "params": sum(p.numel() for p in net.parameters()),
                      "threads": torch.get_num_threads()}))


def main(argv=None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--width", type=float, default=0.25)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--stem-stride", type=int, default=1, choices=[1, 2])
    p.add_argument("--batch", type=int, default=128)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iterations", type=int, default=10)
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=2)
    p.add_argument("--contiguous", dest="channels_last", action="store_false",
                   help="NCHW instead of channels-last (the training default on the CPU)")
    p.add_argument("--out", type=Path, default=Path("runs/bench_autonl.json"))
    p.add_argument("--worker", action="store_true", help=argparse.SUPPRESS)
    p.add_argument("--impl", choices=IMPLS, default="search", help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.worker:
        worker(args)
        return 0
    shape = ["--width", str(args.width), "--size", str(args.size), "--stem-stride",
             str(args.stem_stride), "--batch", str(args.batch), "--warmup", str(args.warmup),
             "--iterations", str(args.iterations), "--threads", str(args.threads),
             *([] if args.channels_last else ["--contiguous"])]
    env = dict(os.environ, OMP_NUM_THREADS=str(args.threads), PYTHONPATH=str(REPO))
    runs: dict[str, list[dict]] = {}
    for rep in range(args.repeats):
        for impl in IMPLS:
            cmd = [sys.executable, __file__, "--worker", "--impl", impl, *shape]
            r = subprocess.run(cmd, cwd=REPO, env=env, capture_output=True, text=True)
            lines = [ln for ln in r.stdout.splitlines() if ln.startswith("{")]
            if r.returncode != 0 or not lines:
                print(f"error: the {impl} worker failed (exit {r.returncode}): "
                      f"{(r.stderr.strip().splitlines() or ['no output'])[-1]}", file=sys.stderr)
                return 1
            result = json.loads(lines[-1])
            runs.setdefault(impl, []).append(result)
            print(f"[{rep + 1}/{args.repeats}] {impl}: {statistics.median(result['ms']):.1f} "
                  f"ms/step", flush=True)
    summary = {}
    for impl, results in runs.items():
        medians = [statistics.median(r["ms"]) for r in results]
        summary[impl] = {"ms_median": statistics.median(ms for r in results for ms in r["ms"]),
                         "ms_spread": [min(medians), max(medians)],
                         "params": results[0]["params"], "runs": results}
    ratio = summary["search"]["ms_median"] / summary["largest"]["ms_median"]
    for impl, s in summary.items():
        lo, hi = s["ms_spread"]
        print(f"{impl:<8} {s['ms_median']:8.1f} ms/step (per-process medians {lo:.1f}-{hi:.1f}), "
              f"{s['params']:,} params")
    print(f"search step / largest network's training step: {ratio:.2f}x (target <= 1.5x)")
    from nas.files import write_text_atomic

    settings = {k: v for k, v in vars(args).items() if k not in ("worker", "impl")}
    settings["out"] = str(settings["out"])
    args.out.parent.mkdir(parents=True, exist_ok=True)
    write_text_atomic(args.out, json.dumps({"settings": settings, "ratio": ratio,
                                            "results": summary}, indent=1) + "\n")
    print(f"wrote {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
