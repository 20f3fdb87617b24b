"""A run's cost before it starts (`estimate=true` on `nas.train` and `nas.search`).

The real networks take a few training steps and validation steps at the run's shape, on
this device, through the run's own Trainer and LightningModule (so a search step is the
method's own step: DARTS's bilevel iteration, FairNAS's m paths, AtomNAS's penalty), fed
by a stand-in datamodule: the real one's shapes, batch sizes and split sizes (read from the
data where it is present, else the data set's published sizes), a pool of fixed random images.
The medians of the timed steps (after warm-up) times the steps of the whole run (epochs x
batches per epoch as Lightning counts them for this many devices) give the prediction.
Not included: data loading (the stand-in has none to do), checkpoint writing, and stages
that are not a Lightning fit (the report names them).
"""

from __future__ import annotations

import json
import statistics
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any, Callable, Optional

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback
from rich.console import Console
from rich.table import Table
from torch.utils.data import Dataset

from nas.data.base import DataError, ImageDataModule, LoaderConfig, split_key
from nas.files import write_text_atomic
from nas.trainer import BudgetConfig

WARMUP, TIMED = 3, 5     # steps of each kind: not timed, then timed
POOL = 64                # distinct random images behind a stand-in split


@dataclass
class Phase:
    """One kind of work in the run: `count` units of a measured median `seconds` each."""

    name: str
    count: int
    seconds: float
    spread: tuple[float, float] = (0.0, 0.0)    # min and max of the timed units

    @property
    def total(self) -> float:
        return self.count * self.seconds


@dataclass
class Estimate:
    """The phases of one run, the sizes they rest on, and what is left out."""

    device: str
    sizes: dict[str, Any] = field(default_factory=dict)
    phases: list[Phase] = field(default_factory=list)
    left_out: list[str] = field(default_factory=list)

    @property
    def seconds(self) -> float:
        return sum(p.total for p in self.phases)

    def to_dict(self) -> dict:
        return {"device": self.device, "predicted_seconds": round(self.seconds, 1),
                "sizes": self.sizes, "left_out": self.left_out,
                "phases": [{**asdict(p), "total": round(p.total, 1)} for p in self.phases]}

    def report(self, run_dir: Path, title: str) -> dict:
        """Print the table and write estimate.json into `run_dir`; returns its content."""
        table = Table(title=f"{title}: predicted {duration(self.seconds)} on {self.device}")
        for col in ("phase", "count", "s each (min-max)", "total"):
            table.add_column(col)
        for p in self.phases:
            table.add_row(p.name, f"{p.count:,}",
                          f"{p.seconds:.4f} ({p.spread[0]:.4f}-{p.spread[1]:.4f})",
                          duration(p.total))
        console = Console(stderr=True)
        console.print(table)
        console.print(f"data: {self.sizes}")
        for line in self.left_out:
            console.print(f"not included: {line}")
        out = self.to_dict()
        write_text_atomic(Path(run_dir) / "estimate.json", json.dumps(out, indent=1) + "\n")
        return out


def duration(seconds: float) -> str:
    if seconds < 120:
        return f"{seconds:.1f} s"
    if seconds < 2 * 3600:
        return f"{seconds / 60:.1f} min"
    if seconds < 2 * 86400:
        return f"{seconds / 3600:.1f} h"
    return f"{seconds / 86400:.1f} days"


# ----------------------------------------------------------------------------- stand-in data

class _Pool(Dataset):
    """`n` samples drawn in turn from a pool of fixed random images (not one image: a batch
    of equal images has no variance for BatchNorm), labels cycling through the classes."""

    def __init__(self, images: torch.Tensor, n: int, num_classes: int):
        self.images, self.n, self.num_classes = images, n, num_classes

    def __len__(self) -> int:
        return self.n

    def __getitem__(self, key) -> tuple[torch.Tensor, torch.Tensor]:
        i, _ = split_key(key)
        return self.images[i % len(self.images)], torch.tensor(i % self.num_classes)


class StandInDataModule(ImageDataModule):
    """The real datamodule's shapes, batches and split sizes; no data to read or decode."""

    def __init__(self, cfg: LoaderConfig, *, num_classes: int, input_size: int,
                 in_channels: int, sizes: tuple[int, int, int]):
        super().__init__(cfg)
        self.num_classes, self.input_size, self.in_channels = num_classes, input_size, \
            in_channels
        self.sizes = sizes
        self._mean, self._std = (0.0,) * in_channels, (1.0,) * in_channels
        self._images = torch.randn(POOL, in_channels, input_size, input_size,
                                   generator=torch.Generator().manual_seed(0))

    def _load(self) -> None:
        n_train, n_val, n_test = self.sizes
        self._train_labels = np.arange(n_train) % self.num_classes
        self._val_set = _Pool(self._images, n_val, self.num_classes)
        self._test_set = _Pool(self._images, n_test, self.num_classes)

    def train_dataset(self, indices: Optional[np.ndarray] = None,
                      augment: bool = True) -> Dataset:
        self.setup()
        n = len(self._train_labels) if indices is None else len(indices)
        return _Pool(self._images, n, self.num_classes)


def stand_in(real: ImageDataModule) -> tuple[StandInDataModule, dict]:
    """The stand-in of `real`, and where its sizes came from: the data itself, or the data
    set's published sizes where the data is not here."""
    cfg = real.cfg
    try:
        real.setup()
        sizes = (real.num_train, len(real.val_set), len(real.test_set))
        source = "read from the data"
    except DataError as e:
        sizes = cfg.nominal_sizes()
        if sizes is None:
            raise
        source = f"published sizes ({str(e).split(';')[0][:80]})"
    module = StandInDataModule(cfg, num_classes=real.num_classes, input_size=real.input_size,
                               in_channels=real.in_channels, sizes=sizes)
    module.seed = real.seed
    return module, {"name": cfg.name, "train": sizes[0], "val": sizes[1], "test": sizes[2],
                    "source": source}


# ----------------------------------------------------------------------------- timing

class StepTimer(Callback):
    """Times each training and validation batch (CUDA synchronised) and stops the fit once
    it has `steps` training batches and, where the fit validates, one validation."""

    def __init__(self, steps: int, validates: bool):
        self.steps, self.validates = steps, validates
        self.train: list[float] = []
        self.val: list[float] = []
        self._start = 0.0

    @staticmethod
    def _now() -> float:
        if torch.cuda.is_available():
            torch.cuda.synchronize()
        return time.perf_counter()

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        self._start = self._now()

    def on_train_batch_end(self, trainer, pl_module, outputs, batch, batch_idx) -> None:
        self.train.append(self._now() - self._start)
        if len(self.train) >= self.steps and not self.validates:
            trainer.should_stop = True

    def on_validation_batch_start(self, trainer, pl_module, batch, batch_idx,
                                  dataloader_idx=0) -> None:
        self._start = self._now()

    def on_validation_batch_end(self, trainer, pl_module, outputs, batch, batch_idx,
                                dataloader_idx=0) -> None:
        self.val.append(self._now() - self._start)

    def on_validation_end(self, trainer, pl_module) -> None:
        if len(self.train) >= self.steps:
            trainer.should_stop = True


def _median(times: list[float]) -> tuple[float, tuple[float, float]]:
    timed = times[WARMUP:] or times
    return statistics.median(timed), (min(timed), max(timed))


def batches(n: int, limit: Any) -> int:
    """Lightning's batch count for a loader of `n` batches under a limit (count or fraction)."""
    if isinstance(limit, int) and not isinstance(limit, bool):
        return min(n, limit)
    return max(1, int(n * float(limit))) if n else 0


def _first_len(loaders: Any) -> int:
    if isinstance(loaders, (list, tuple)):
        loaders = loaders[0] if loaders else None
    return len(loaders) if loaders is not None else 0


def timed_fit(make_trainer: Callable[..., pl.Trainer], module: pl.LightningModule, *,
              budget: BudgetConfig, name: str, overrides: Optional[dict] = None,
              **fit_args: Any) -> list[Phase]:
    """A few steps of `module`'s fit, and the phases of the whole fit they predict.

    `make_trainer(callbacks=..., **trainer_args)` builds the run's own Trainer (without
    loggers: an estimate writes no logs); `overrides`
    are the Trainer arguments the run's stage sets itself (they stay: a stage without
    validation has none here either); `fit_args` are what the run passes to `Trainer.fit`."""
    overrides = dict(overrides or {})
    val_limit = overrides.pop("limit_val_batches", budget.limit_val_batches)
    steps = WARMUP + TIMED
    timer = StepTimer(steps, validates=val_limit != 0)
    trainer = make_trainer(callbacks=[timer], **{
        **overrides, "limit_train_batches": steps, "limit_val_batches": steps if val_limit
        else 0, "num_sanity_val_steps": 0, "enable_checkpointing": False})
    trainer.fit(module, **fit_args)
    per_epoch = batches(_first_len(trainer.train_dataloader), budget.limit_train_batches)
    every = max(1, int(trainer.check_val_every_n_epoch or 1))
    train_s, train_spread = _median(timer.train)
    phases = [Phase(f"{name}: training steps", budget.epochs * per_epoch, train_s,
                    train_spread)]
    if timer.val:
        val_s, val_spread = _median(timer.val)
        per_pass = batches(_first_len(trainer.val_dataloaders), val_limit)
        phases.append(Phase(f"{name}: validation steps", budget.epochs // every * per_pass,
                            val_s, val_spread))
    return phases


def device_name(accelerator: str) -> str:
    """What the estimate was measured on."""
    from nas.cost.timing import device_name as named
    from nas.trainer import runs_on_cuda

    return named("cuda" if runs_on_cuda(accelerator) else "cpu")


