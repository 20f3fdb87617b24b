"""AtomNAS cost: the search-and-train run against training its result from scratch.

    python scripts/bench_atomnas.py --repeats 3      # AtomNAS-C at the demo budget, median of 3
    python scripts/bench_atomnas.py --lam 1.8e-4     # the demo's own lambda (AtomNAS-A)
    python scripts/bench_atomnas.py --epochs 4 --width 0.25

(a) Runs the AtomNAS search as `python -m nas.search method=atomnas method.lam=1.0e-4` does
at the demo budget (same supernet, recipe, penalty, shrinkage, per-epoch validation with BN
recalibration), then trains the architecture it ends with from scratch for the same epochs
with the same recipe and evaluation (lambda 0: nothing is penalised or removed). The paper
reports 25.5 h / 22 h = 1.16 for AtomNAS-C, so C's lambda is the default here; the target is
a ratio of at most --max-ratio (1.3).

(b) Training-step time at each architecture the search went through: the median over the
steps run at that size, with its MACs, so each shrink shows what it bought.

Exits non-zero when the ratio is over --max-ratio.
"""

from __future__ import annotations

import argparse
import dataclasses
import statistics
import sys
import tempfile
import time
import warnings
from pathlib import Path

import pytorch_lightning as pl
from omegaconf import OmegaConf

from nas.config import check
from nas.cost import count
from nas.data import data_config, make_datamodule
from nas.methods.atomnas.search import AtomNASConfig, AtomNASModule, supernet_spec
from nas.methods.base import method_setting
from nas.trainer import BudgetConfig, LoggerConfig, TrainerConfig, make_trainer

class StepTimer(pl.Callback):
    """Wall time of every training step, keyed by the MACs of the network that ran it."""

    def __init__(self) -> None:
        self.steps: list[tuple[int, float]] = []
        self._start = 0.0

    def on_train_batch_start(self, trainer, module, batch, batch_idx) -> None:
        self._start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx) -> None:
        self.steps.append((module.cost.macs, time.perf_counter() - self._start))


def demo_config(width: float | None, lam_scale: float | None,
                lam: float) -> tuple[AtomNASConfig, dict, int]:
    """The demo search's method config (with the flags'), data overrides and epochs."""
    method, budget, data = method_setting("atomnas", "demo")
    if width is not None:
        method.width = width
    if lam_scale is not None:
        method.lam_scale = lam_scale
    method.lam = lam
    return check(AtomNASConfig, method, "method"), data, int(budget.get("epochs") or 15)


def fit(module: AtomNASModule, datamodule, epochs: int,
        batches: int | None) -> tuple[float, StepTimer]:
    timer = StepTimer()
    with tempfile.TemporaryDirectory() as run_dir:  # nothing is written there
        trainer = make_trainer(
            Path(run_dir), TrainerConfig(accelerator="cpu", enable_progress_bar=False),
            BudgetConfig(epochs=epochs, limit_train_batches=batches or 1.0),
            LoggerConfig(csv=False, wandb=False), name="bench_atomnas", seed=0,
            callbacks=[timer],
            enable_checkpointing=False, num_sanity_val_steps=0)
    start = time.perf_counter()
    trainer.fit(module, datamodule=datamodule)
    return time.perf_counter() - start, timer


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--epochs", type=int, default=None, help="default: the demo budget's")
    p.add_argument("--train-batches", type=int, default=None,
                   help="steps per epoch (default: the whole training split)")
    p.add_argument("--width", type=float, default=None, help="default: the demo's")
    p.add_argument("--lam", type=float, default=1.0e-4,
                   help="AtomNAS-C's (default), whose run the paper timed; the demo's is A's, 1.8e-4")
    p.add_argument("--lam-scale", type=float, default=None, help="default: the demo's")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--max-ratio", type=float, default=1.3)
    p.add_argument("--repeats", type=int, default=1,
                   help="alternating search/scratch pairs; the median ratio is reported")
    args = p.parse_args(argv)
    cfg, data_overrides, demo_epochs = demo_config(args.width, args.lam_scale, args.lam)
    epochs = args.epochs or demo_epochs
    if epochs < 1 or args.repeats < 1 or (args.train_batches is not None
                                          and args.train_batches < 1):
        p.error("--epochs, --repeats and --train-batches must be >= 1")
    warnings.filterwarnings("ignore", ".*does not have many workers.*")
    data = make_datamodule(data_config(OmegaConf.create({"name": "embedded", **data_overrides})))
    spec = supernet_spec(cfg, num_classes=data.num_classes, input_size=data.input_size,
                         in_channels=data.in_channels)

    # Search and scratch alternate, so a slow spell of this shared machine hits both; every
    # repeat is the same seeded run (same architectures), only its timing differs.
    ratios, search_steps, scratch_steps = [], [], []
    for r in range(args.repeats):
        pl.seed_everything(args.seed, verbose=False)
        search = AtomNASModule(spec, cfg, batch_size=data.batch_size)
        search_s, timer = fit(search, data, epochs, args.train_batches)
        search_steps += timer.steps
        final = search.spec
        pl.seed_everything(args.seed, verbose=False)
        scratch = AtomNASModule(final, dataclasses.replace(cfg, lam=0.0),
                                batch_size=data.batch_size)
        scratch_s, timer = fit(scratch, data, epochs, args.train_batches)
        scratch_steps += timer.steps
        if scratch.spec != final:
            print("warning: the from-scratch run removed atoms although lambda is 0",
                  file=sys.stderr)
        ratios.append(search_s / scratch_s)
        print(f"repeat {r + 1}: search-and-train {search_s:.1f} s, the result from scratch "
              f"{scratch_s:.1f} s, ratio {ratios[-1]:.3f}")
    ratio = statistics.median(ratios)

    print(f"lam {cfg.lam:g}: supernet {count(spec).macs / 1e6:.2f} M MACs -> searched "
          f"{count(final).macs / 1e6:.2f} M "
          f"({sum(h['shrunk'] for h in search.history)} shrinks), {epochs} epochs, "
          f"batch {data.batch_size}")
    print(f"ratio {ratio:.3f}, median of {len(ratios)} (paper 1.16, target <= {args.max_ratio})")
    print("step time by architecture (median over its steps):")
    by_macs: dict[int, list[float]] = {}
    for macs, s in search_steps:
        by_macs.setdefault(macs, []).append(s)
    for macs, times in sorted(by_macs.items(), reverse=True):
        print(f"  search   {macs / 1e6:8.2f} M MACs  {1e3 * statistics.median(times):7.1f} ms "
              f"({len(times)} steps)")
    scratch_times = [s for _, s in scratch_steps]
    print(f"  scratch  {count(final).macs / 1e6:8.2f} M MACs  "
          f"{1e3 * statistics.median(scratch_times):7.1f} ms ({len(scratch_times)} steps)")
    return 0 if ratio <= args.max_ratio else 1


if __name__ == "__main__":
    sys.exit(main())
