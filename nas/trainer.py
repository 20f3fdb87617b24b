"""The one Lightning Trainer factory (training, every search, every script) and the schemas
of the groups it reads: `trainer`, `budget`, `logger`.

Every option of these groups is either honoured by the Trainer it builds or stops the
stage with one ConfigError line; none is dropped in silence.
"""

from __future__ import annotations

import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional, Sequence

import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback, LearningRateMonitor, RichProgressBar
from pytorch_lightning.loggers import CSVLogger, WandbLogger

from nas.config import ConfigError, require
from nas.cost.timing import steady_malloc
from nas.memory_format import MEMORY_FORMATS, MemoryFormat
from nas.seeding import EpochSeed

PRECISIONS = ("auto", "32-true", "16-mixed", "bf16-mixed", "64-true")
MALLOCS = ("default", "heap")  # trainer.malloc: see keep_heap

@dataclass
class BudgetConfig:
    name: str = "demo"
    epochs: int = 15
    limit_train_batches: Any = 1.0
    limit_val_batches: Any = 1.0
    limit_test_batches: Any = 1.0
    # Replaces data.batch_size and data.eval_batch_size when set (smoke: small and fast).
    batch_size: Optional[int] = None

    def __post_init__(self) -> None:
        require(self.epochs >= 1, "epochs", "an integer >= 1", self.epochs)
        require(self.batch_size is None or self.batch_size >= 1, "batch_size",
                "null or an integer >= 1", self.batch_size)
        for key in ("limit_train_batches", "limit_val_batches", "limit_test_batches"):
            v = getattr(self, key)
            ok = (isinstance(v, int) and not isinstance(v, bool) and v >= 1) or \
                (isinstance(v, float) and 0.0 < v <= 1.0)
            require(ok, key, "a batch count >= 1 or a fraction in (0, 1]", v)


@dataclass
class TrainerConfig:
    accelerator: str = "auto"
    devices: Any = 1
    num_nodes: int = 1
    strategy: str = "auto"
    precision: str = "auto"      # auto: bf16-mixed on CUDA GPUs with bf16, else 32-true
    sync_batchnorm: bool = False
    deterministic: bool = False
    log_every_n_steps: int = 10
    check_val_every_n_epoch: int = 1
    enable_progress_bar: bool = True
    memory_format: str = "auto"  # auto (channels_last on the CPU) | channels_last | contiguous
    malloc: str = "default"      # default (glibc's) | heap (faster CPU steps, more memory)

    def __post_init__(self) -> None:
        require(self.memory_format in MEMORY_FORMATS, "memory_format",
                f"one of {', '.join(MEMORY_FORMATS)}", self.memory_format)
        require(self.malloc in MALLOCS, "malloc", f"one of {', '.join(MALLOCS)}", self.malloc)
        require(self.accelerator in ("auto", "cpu", "gpu", "cuda", "mps"), "accelerator",
                "one of auto, cpu, gpu, cuda, mps", self.accelerator)
        require(self.devices == "auto" or (isinstance(self.devices, int) and self.devices >= 1),
                "devices", "'auto' or an integer >= 1", self.devices)
        require(self.num_nodes >= 1, "num_nodes", "an integer >= 1", self.num_nodes)
        require(self.precision in PRECISIONS, "precision", f"one of {', '.join(PRECISIONS)}",
                self.precision)
        require(self.log_every_n_steps >= 1, "log_every_n_steps", "an integer >= 1",
                self.log_every_n_steps)
        require(self.check_val_every_n_epoch >= 1, "check_val_every_n_epoch", "an integer >= 1",
                self.check_val_every_n_epoch)


@dataclass
class LoggerConfig:
    csv: bool = True
    wandb: bool = True
    wandb_mode: str = "offline"
    project: str = "nas"

    def __post_init__(self) -> None:
        require(self.wandb_mode in ("offline", "online", "disabled"), "wandb_mode",
                "one of offline, online, disabled", self.wandb_mode)


def make_loggers(cfg: LoggerConfig, run_dir: Path, name: str) -> list:
    """CSV in <run_dir>/csv, and wandb (offline by default: no account or network needed)."""
    loggers: list = []
    if cfg.csv:
        loggers.append(CSVLogger(str(run_dir), name="csv", version=""))
    if cfg.wandb and cfg.wandb_mode != "disabled":
        os.environ.setdefault("WANDB_SILENT", "true")
        import wandb as wandb_lib

        # A run still open in this process belongs to an earlier job of a multirun (Hydra's
        # basic launcher and joblib's workers run several jobs in one process): closed, or
        # WandbLogger would log this job into it.
        if wandb_lib.run is not None:
            wandb_lib.finish()
        wandb = WandbLogger(project=cfg.project, name=name, save_dir=str(run_dir),
                            mode=cfg.wandb_mode)
        # Lightning always passes anonymous=None, which wandb warns is deprecated whatever
        # its value; leaving the argument out is the same setting without the notice.
        wandb._wandb_init.pop("anonymous", None)
        loggers.append(wandb)
    return loggers


def _limit(value: Any) -> Any:
    """A budget's batch limit for the Trainer: the fraction 1.0 (every batch) as Lightning's
    own default, None, which it does not announce on every run as it does an explicit 1.0."""
    return None if isinstance(value, float) and value == 1.0 else value


def runs_on_cuda(accelerator: str) -> bool:
    """Whether a Trainer with this `trainer.accelerator` runs on CUDA devices."""
    return accelerator in ("gpu", "cuda") or (accelerator == "auto" and torch.cuda.is_available())


def resolve_precision(precision: str, accelerator: str) -> str:
    """What `trainer.precision` means on this machine: `auto` is bf16 autocast on CUDA GPUs
    that support bf16 (Ampere and later) and float32 elsewhere (the CPU, whose bf16 is slower
    than float32 without AMX, and older GPUs, whose fp16 would need loss scaling)."""
    if precision != "auto":
        return precision
    if runs_on_cuda(accelerator) and torch.cuda.is_available() and torch.cuda.is_bf16_supported():
        return "bf16-mixed"
    return "32-true"


def use_tensor_cores(accelerator: str) -> None:
    """On CUDA, float32 matrix products (what autocast leaves in float32, and 32-true runs) may
    use TF32 tensor cores: torch's 'high' matmul precision (Lightning's advice on Ampere+)."""
    if runs_on_cuda(accelerator):
        torch.set_float32_matmul_precision("high")


def keep_heap(malloc: str) -> bool:
    """`trainer.malloc=heap`: this process serves every buffer from glibc's heap and keeps
    it there when freed (`steady_malloc(heap_only=True)`). Training on the CPU at ImageNet
    sizes otherwise spends much of its time in page faults on activations that glibc maps
    and unmaps at every step (scripts/bench_cpu_heap.py at 224, batch 32: steps 1.5-2x as
    fast, peak memory x 1.2-1.4). Opt-in: the AtomNAS supernet at batch 64 outgrew a 24 GB
    machine that way. `default` leaves glibc as it is. Returns whether the heap is kept."""
    return malloc == "heap" and steady_malloc(heap_only=True)


def make_trainer(run_dir: Path, trainer: TrainerConfig, budget: BudgetConfig,
                 logger: LoggerConfig, *, name: str, seed: int,
                 callbacks: Sequence[Callback] = (), **overrides: Any) -> pl.Trainer:
    """A Trainer for one stage of a run in `run_dir`, named `name` in the loggers.

    The memory-format callback comes first (weight averaging copies the module at its own
    setup), then the per-epoch reseeding from `seed` (what makes a resumed run exact), the
    stage's `callbacks`, the lr monitor when something logs, the progress bar.
    `overrides` are Trainer arguments the stage sets itself, such as
    `limit_val_batches=0` for a stage without validation.
    """
    if trainer.sync_batchnorm and not runs_on_cuda(trainer.accelerator):
        raise ConfigError("trainer.sync_batchnorm: SyncBatchNorm runs on CUDA devices only; "
                          "set trainer.sync_batchnorm=false to keep per-process BN on "
                          f"{trainer.accelerator} (accelerator), or train on GPUs")
    use_tensor_cores(trainer.accelerator)
    keep_heap(trainer.malloc)
    loggers = make_loggers(logger, run_dir, name)
    all_callbacks: list[Callback] = [MemoryFormat(trainer.memory_format), EpochSeed(seed),
                                     *callbacks]
    if loggers:
        all_callbacks.append(LearningRateMonitor(logging_interval="step"))
    if trainer.enable_progress_bar:
        all_callbacks.append(RichProgressBar(leave=True))
    kwargs: dict[str, Any] = dict(
        default_root_dir=str(run_dir), max_epochs=budget.epochs,
        limit_train_batches=_limit(budget.limit_train_batches),
        limit_val_batches=_limit(budget.limit_val_batches),
        limit_test_batches=_limit(budget.limit_test_batches),
        accelerator=trainer.accelerator, devices=trainer.devices, num_nodes=trainer.num_nodes,
        strategy=trainer.strategy,
        precision=resolve_precision(trainer.precision, trainer.accelerator),
        sync_batchnorm=trainer.sync_batchnorm, deterministic=trainer.deterministic,
        log_every_n_steps=trainer.log_every_n_steps,
        check_val_every_n_epoch=trainer.check_val_every_n_epoch,
        enable_progress_bar=trainer.enable_progress_bar, enable_model_summary=False,
        logger=loggers or False)
    kwargs.update(overrides)
    return pl.Trainer(callbacks=all_callbacks, **kwargs)
