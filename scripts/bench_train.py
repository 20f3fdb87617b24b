"""Training throughput of the nas training stage against a plain PyTorch loop.

    python scripts/bench_train.py --arch mobilenetv2_100 --data embedded --batch 64 --steps 80

Both sides train the same spec on the same batches (one pre-loaded list, so data loading
is not measured twice) with the same optimizer, schedule and loss, for the same number
of steps after the same warm-up; the framework side is ClassifierModule under a
Lightning Trainer set up as `python -m nas.train` sets it up (rich progress bar and
learning-rate monitor included; validation and checkpoint writing fall outside the timed
window). Reports images/s for each and the framework's overhead; exits non-zero above
--max-overhead. Repeats alternate the two sides to cancel drift.
"""

from __future__ import annotations

import argparse
import statistics
import sys
import tempfile
import time
from pathlib import Path

import torch
from pytorch_lightning.callbacks import Callback
from torch import nn

from nas.arch.builder import build
from nas.arch.zoo import get_spec
from nas.classifier import ClassifierModule
from nas.config import check
from nas.data import make_datamodule
from nas.memory_format import set_memory_format
from nas.optim import OptimConfig, build_optimizer
from nas.trainer import BudgetConfig, LoggerConfig, TrainerConfig, make_trainer


class _Timer(Callback):
    """Wall time from the start of batch `warmup` to the end of the last batch."""

    def __init__(self, warmup: int):
        self.warmup, self.start, self.end = warmup, None, None

    def on_train_batch_start(self, trainer, module, batch, batch_idx):
        if batch_idx == self.warmup:
            self.start = time.perf_counter()

    def on_train_batch_end(self, trainer, module, outputs, batch, batch_idx):
        self.end = time.perf_counter()


class _Batches:
    """Pre-loaded batches as one iterable (a plain list would be read as many loaders)."""

    def __init__(self, batches: list):
        self.batches = batches

    def __iter__(self):
        return iter(self.batches)

    def __len__(self) -> int:
        return len(self.batches)


def plain_loop(spec, optim_cfg, batches, warmup: int) -> float:
    torch.manual_seed(0)
    model = build(spec).train()
    set_memory_format(model, "auto", torch.device("cpu"))  # as the training stage lays it out
    opt, sched = build_optimizer(model, optim_cfg, batch_size=len(batches[0][1]),
                                 steps_per_epoch=len(batches), max_epochs=1)
    criterion = nn.CrossEntropyLoss(label_smoothing=optim_cfg.label_smoothing)
    start = None
    for i, (x, y) in enumerate(batches):
        if i == warmup:
            start = time.perf_counter()
        loss = criterion(model(x), y)
        opt.zero_grad(set_to_none=True)
        loss.backward()
        opt.step()
        sched.step()
    return time.perf_counter() - start


def framework(spec, optim_cfg, batches, warmup: int, progress_bar: bool) -> float:
    torch.manual_seed(0)
    module = ClassifierModule(spec, optim_cfg, batch_size=len(batches[0][1]))
    timer = _Timer(warmup)
    with tempfile.TemporaryDirectory() as run_dir:  # the CSV log of the stage goes there
        trainer = make_trainer(
            Path(run_dir), TrainerConfig(accelerator="cpu", enable_progress_bar=progress_bar),
            BudgetConfig(epochs=1), LoggerConfig(wandb=False), name="bench_train",
            seed=0, callbacks=[timer], enable_checkpointing=False, limit_val_batches=0,
            num_sanity_val_steps=0)
        trainer.fit(module, train_dataloaders=_Batches(batches))
    return timer.end - timer.start


def main(argv: list[str] | None = None) -> int:
    p = argparse.ArgumentParser(description=__doc__,
                                formatter_class=argparse.RawDescriptionHelpFormatter)
    p.add_argument("--arch", default="mobilenetv2_100")
    p.add_argument("--data", default="embedded", choices=["embedded", "synthetic"])
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--steps", type=int, default=80, help="timed steps per measurement")
    p.add_argument("--warmup", type=int, default=10, help="untimed steps before timing")
    p.add_argument("--repeats", type=int, default=3)
    p.add_argument("--threads", type=int, default=None)
    p.add_argument("--no-progress-bar", action="store_true")
    p.add_argument("--max-overhead", type=float, default=5.0, help="percent")
    args = p.parse_args(argv)
    if args.threads:
        torch.set_num_threads(args.threads)
    dm = make_datamodule({"name": args.data, "batch_size": args.batch})
    loader = dm.train_dataloader()
    batches = []
    while len(batches) < args.warmup + args.steps:
        batches.extend(loader)
    batches = batches[: args.warmup + args.steps]
    spec = get_spec(args.arch, num_classes=dm.num_classes, input_size=dm.input_size)
    optim_cfg = check(OptimConfig, {"name": "sgd", "lr": 0.05, "schedule": "cosine",
                                    "weight_decay": 4e-5}, "optim")
    images = args.steps * args.batch
    plain, fw = [], []
    for _ in range(args.repeats):
        plain.append(images / plain_loop(spec, optim_cfg, batches, args.warmup))
        fw.append(images / framework(spec, optim_cfg, batches, args.warmup,
                                     not args.no_progress_bar))
    p_med, f_med = statistics.median(plain), statistics.median(fw)
    overhead = 100.0 * (p_med - f_med) / p_med
    print(f"{args.arch} on {args.data} ({dm.input_size}x{dm.input_size}), batch {args.batch}, "
          f"{args.steps} timed steps x {args.repeats}, torch threads {torch.get_num_threads()}")
    print(f"plain PyTorch loop : {p_med:8.1f} img/s  (runs: {', '.join(f'{v:.1f}' for v in plain)})")
    print(f"nas training stage : {f_med:8.1f} img/s  (runs: {', '.join(f'{v:.1f}' for v in fw)})")
    print(f"framework overhead : {overhead:+.1f} %  (limit {args.max_overhead:.1f} %)")
    return 0 if overhead <= args.max_overhead else 1


if __name__ == "__main__":
    sys.exit(main())
