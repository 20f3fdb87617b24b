"""NNI 3.0's DARTS timed the way scripts/bench_darts.py times ours (run by that script with the
python of a virtualenv holding nni==3.0; it imports nothing from this repository).

    <nni venv>/bin/python scripts/bench_darts_nni.py --batch 64 --warmup 2 --iterations 5

NNI's DARTS space (`nni.nas.hub.pytorch.DARTS`, 8 cells, width 16, CIFAR stem), its
Classification evaluator with SGD and its DARTS strategy (first order: NNI has no second
order), run unmodified through `NasExperiment` on random 32x32 tensors. A Lightning callback
times each training batch (one architecture step and one weight step); the peak RSS of the
process is read at the end. Prints one JSON line.
"""

from __future__ import annotations

import argparse
import json
import resource
import time
import warnings

import torch


def main() -> None:
    p = argparse.ArgumentParser()
    p.add_argument("--batch", type=int, default=64)
    p.add_argument("--channels", type=int, default=16)
    p.add_argument("--layers", type=int, default=8)
    p.add_argument("--size", type=int, default=32)
    p.add_argument("--warmup", type=int, default=2)
    p.add_argument("--iterations", type=int, default=5)
    p.add_argument("--threads", type=int, default=1)
    args = p.parse_args()
    torch.set_num_threads(args.threads)
    torch.manual_seed(0)
    warnings.filterwarnings("ignore")

    import pytorch_lightning as pl
    from nni.nas.evaluator.pytorch import Classification, DataLoader
    from nni.nas.experiment import NasExperiment
    from nni.nas.hub.pytorch import DARTS as DartsSpace
    from nni.nas.strategy import DARTS as DartsStrategy

    steps = args.warmup + args.iterations
    n = steps * args.batch
    data = torch.utils.data.TensorDataset(torch.randn(n, 3, args.size, args.size),
                                          torch.randint(0, 10, (n,)))

    class Timer(pl.Callback):
        def __init__(self):
            self.times: list[float] = []

        def on_train_batch_start(self, trainer, pl_module, batch, batch_idx):
            self.start = time.perf_counter()

        def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx):
            self.times.append(time.perf_counter() - self.start)

    timer = Timer()
    space = DartsSpace(width=args.channels, num_cells=args.layers, dataset="cifar")
    evaluator = Classification(
        learning_rate=0.025, weight_decay=3e-4, optimizer=torch.optim.SGD,
        train_dataloaders=DataLoader(data, batch_size=args.batch),
        val_dataloaders=DataLoader(data, batch_size=args.batch),
        num_classes=10, max_epochs=1, limit_train_batches=steps, limit_val_batches=0,
        accelerator="cpu", devices=1, enable_progress_bar=False, logger=False,
        enable_checkpointing=False, enable_model_summary=False, callbacks=[timer])
    experiment = NasExperiment(space, evaluator, DartsStrategy(gradient_clip_val=5.0))
    experiment.run()
    times = timer.times[args.warmup:]
    print(json.dumps({"impl": "nni", "order": 1, "batch": args.batch,
                      "ms": [1000 * t for t in times],
                      "peak_rss_mb": resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024,
                      "torch": torch.__version__, "threads": torch.get_num_threads()}))


if __name__ == "__main__":
    main()
