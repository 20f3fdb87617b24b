"""MoGA search costs: one FairNAS step against its m single-path steps, and scoring speed.

    python scripts/bench_fairnas.py                       # MoGA demo setting
    python scripts/bench_fairnas.py --width 0.25 --per-path-batch 8 --repeats 3

(a) A FairNAS step trains all m = 12 paths of a step (each on its own slice of an
m x per-path batch) and makes one optimizer update; the same work done path by path is
m single-path steps (forward, backward, optimizer step on that path's slice). Strict
fairness should cost no more than that work: the target is a ratio of at most
--max-ratio (1.15). Both sides run on the same supernet, optimizer, batches and paths
(the FairNAS side calls FairNASModule.training_step itself, without a Trainer, so the
Lightning loop is not part of either side); each repeat draws new paths, the two sides
alternate which goes first to cancel drift, and the medians over repeats are compared.
--profile prints where each side spends its time.

(b) Candidate scoring throughput: architectures per second of CandidateScorer as the
search uses it (BN recalibration of the path on fixed training batches, then top-1 on
fixed held-out batches; demo scale: 4 batches of 16 and 2 batches of 256).

Exits non-zero when the FairNAS ratio is over --max-ratio.
"""

from __future__ import annotations

import argparse
import itertools
import statistics
import sys
import time
import warnings

import torch

from nas.data import make_datamodule
from nas.memory_format import set_memory_format
from nas.methods.moga.fairnas import FairNASModule
from nas.methods.moga.search import N_CHOICES, CandidateScorer, add_demo_arguments, demo_setting, moga_space
from nas.optim import build_optimizer



def take(loader, n: int) -> list:
    """The first n batches of a loader, cycling it when it is shorter."""
    out: list = []
    while len(out) < n:
        before = len(out)
        out.extend(itertools.islice(loader, n - len(out)))
        if len(out) == before:
            raise RuntimeError("the data loader gives no batches")
    return out


def fairnas_step(module: FairNASModule, opt, batch) -> float:
    start = time.perf_counter()
    loss = module.training_step(batch, 0)
    opt.zero_grad(set_to_none=True)
    loss.backward()
    opt.step()
    return time.perf_counter() - start


def single_path_steps(module: FairNASModule, opt, batch) -> float:
    """The m steps a FairNAS step contains, one path (and its slice) at a time."""
    x, y = batch
    paths = module.paths(0)
    start = time.perf_counter()
    for path, xs, ys in zip(paths, x.chunk(module.m), y.chunk(module.m)):
        loss = module.criterion(module.supernet(xs, path), ys)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
    return time.perf_counter() - start


def profile_sides(module: FairNASModule, opt, batch, rows: int) -> None:
    from torch.profiler import ProfilerActivity, profile

    for name, fn in (("FairNAS step", fairnas_step), ("m single-path steps", single_path_steps)):
        with profile(activities=[ProfilerActivity.CPU]) as prof:
            fn(module, opt, batch)
        print(f"\n--- profile: {name}")
        print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=rows))


def bench_step(args, dm, space) -> tuple[float, float, list[float], list[float]]:
    train_loader, _ = dm.search_dataloaders()
    batches = take(train_loader, args.repeats + args.warmup)
    torch.manual_seed(0)
    optim_cfg = args.optim
    module = FairNASModule(space, optim_cfg, batch_size=args.per_path_batch, seed=0,
                           weights=args.weights)
    set_memory_format(module, "auto", torch.device("cpu"))  # as nas.search lays it out
    module.train()
    opt, _ = build_optimizer(module.supernet, optim_cfg, batch_size=args.per_path_batch,
                             steps_per_epoch=1000, max_epochs=1)
    fair, single = [], []
    for r, batch in enumerate(batches):
        # Without a Trainer global_step stays 0, so the paths of a repeat come from its seed.
        module.seed = r
        sides = [(fair, fairnas_step), (single, single_path_steps)]
        if r % 2:
            sides.reverse()
        for out, fn in sides:
            t = fn(module, opt, batch)
            if r >= args.warmup:
                out.append(t)
    if args.profile:
        profile_sides(module, opt, batches[-1], args.profile)
    return statistics.median(fair), statistics.median(single), fair, single


def bench_scoring(args, space) -> tuple[float, list[float]]:
    # Recalibration batches are the first training batches cut to the per-path size, as the
    # search takes them; the held-out loader is built at the scoring batch size.
    per_step = args.per_path_batch * N_CHOICES
    train_loader, _ = make_datamodule({**args.data, "name": "embedded", "batch_size": per_step}
                                      ).search_dataloaders()
    _, held_loader = make_datamodule({**args.data, "name": "embedded",
                                      "batch_size": args.score_batch}).search_dataloaders()
    recal = [(x[:args.per_path_batch], y[:args.per_path_batch])
             for x, y in take(train_loader, args.recal_steps)]
    held = list(itertools.islice(held_loader, args.score_batches))
    torch.manual_seed(0)
    module = FairNASModule(space, args.optim, batch_size=args.per_path_batch,
                           weights=args.weights)
    set_memory_format(module, "auto", torch.device("cpu"))
    scorer = CandidateScorer(module.supernet, recal, held, torch.device("cpu"))
    g = torch.Generator().manual_seed(0)
    scorer.accuracy(space.sample(g))  # warm-up
    rates = []
    for _ in range(args.repeats):
        vectors = [space.sample(g) for _ in range(args.archs)]
        start = time.perf_counter()
        for v in vectors:
            scorer.accuracy(v)
        rates.append(len(vectors) / (time.perf_counter() - start))
    return statistics.median(rates), rates


def main(argv: list[str] | None = None) -> int:
    demo, _, demo_batch, demo_data = demo_setting()
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    add_demo_arguments(p, demo, demo_batch)
    p.add_argument("--repeats", type=int, default=7, help="timed repeats of each measurement")
    p.add_argument("--warmup", type=int, default=1, help="untimed FairNAS/single-path rounds")
    p.add_argument("--max-ratio", type=float, default=1.15,
                   help="FairNAS step / sum of its single-path steps must not exceed this")
    p.add_argument("--archs", type=int, default=8, help="architectures per scoring repeat")
    p.add_argument("--threads", type=int, default=1,
                   help="torch threads (default 1: demo-scale tensors are small, and with other "
                        "processes on this 2-core machine a second OpenMP thread made steps "
                        "several times slower)")
    p.add_argument("--profile", type=int, default=0, metavar="ROWS",
                   help="also print the top ROWS ops of each side (torch.profiler)")
    p.add_argument("--skip-scoring", action="store_true", help="only part (a)")
    args = p.parse_args(argv)
    args.data = demo_data  # the demo search's data overrides (its held-out fraction)
    args.optim = demo.optim  # the supernet optimizer the search steps
    for key in ("per_path_batch", "repeats", "recal_steps", "score_batches", "score_batch",
                "archs"):
        if getattr(args, key) < 1:
            p.error(f"--{key.replace('_', '-')} must be >= 1")
    if args.threads:
        torch.set_num_threads(args.threads)
    # training_step logs through self.log, which only warns when no Trainer is attached.
    warnings.filterwarnings("ignore", message=r".*self\.log\(\)")

    dm = make_datamodule({"name": "embedded", "batch_size": args.per_path_batch * N_CHOICES})
    space = moga_space(width=args.width, stem_stride=args.stem_stride, init=args.init,
                       num_classes=dm.num_classes, input_size=dm.input_size)
    print(f"MoGA space width {args.width}, stem stride {args.stem_stride}, init "
          f"{args.init or 'official'}, "
          f"{dm.input_size}x{dm.input_size} embedded MNIST, m = {N_CHOICES} paths x "
          f"{args.per_path_batch} images, torch threads {torch.get_num_threads()}, "
          f"medians of {args.repeats} repeats")

    fair, single, fair_runs, single_runs = bench_step(args, dm, space)
    ratio = fair / single
    runs = ", ".join(f"{f / s:.3f}" for f, s in zip(fair_runs, single_runs))
    print(f"FairNAS step (12 paths, one update)  : {1000 * fair:9.1f} ms")
    print(f"sum of its 12 single-path steps      : {1000 * single:9.1f} ms")
    print(f"ratio                                : {ratio:9.3f}  (limit {args.max_ratio:.2f}; "
          f"per repeat: {runs})")

    if not args.skip_scoring:
        rate, rates = bench_scoring(args, space)
        print(f"candidate scoring (recal {args.recal_steps} x {args.per_path_batch}, "
              f"top-1 on {args.score_batches} x {args.score_batch} held-out): "
              f"{rate:.2f} archs/s  ({1000 / rate:.0f} ms/arch; runs: "
              f"{', '.join(f'{r:.2f}' for r in rates)})")
    return 0 if ratio <= args.max_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
