"""Stand-alone training (the work behind `python -m nas.train`): config schemas of the
trainer, budget and logger groups, training, evaluation, export and the run summary."""

from __future__ import annotations

import dataclasses
import json
import logging
import os
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Optional

import pytorch_lightning as pl
import torch
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import LearningRateMonitor, ModelCheckpoint, RichProgressBar
from pytorch_lightning.loggers import CSVLogger, WandbLogger
from rich.console import Console
from rich.panel import Panel

from nas.arch import io
from nas.arch.config import spec_from_config
from nas.arch.spec import SpecError
from nas.arch.zoo import UnknownArch
from nas.checkpoints import CheckpointError, check_resume, load_weights
from nas.classifier import ClassifierModule, NonFiniteLoss
from nas.config import ConfigError, check, require
from nas.data import DataError, data_config, make_datamodule
from nas.ema import TFEMA
from nas.export import export_onnx
from nas.files import write_text_atomic
from nas.memory_format import MEMORY_FORMATS, MemoryFormat
from nas.optim import OptimConfig

# Bad input: reported as one line and exit status 2 by the command-line entry points.
USER_ERRORS = (ConfigError, SpecError, UnknownArch, CheckpointError, NonFiniteLoss, DataError)

log = logging.getLogger(__name__)


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
    precision: str = "32-true"
    sync_batchnorm: bool = False
    deterministic: bool = False
    log_every_n_steps: int = 10
    check_val_every_n_epoch: int = 1
    enable_progress_bar: bool = True
    memory_format: str = "auto"  # auto (channels_last on the CPU) | channels_last | contiguous

    def __post_init__(self) -> None:
        require(self.memory_format in MEMORY_FORMATS, "memory_format",
                f"one of {', '.join(MEMORY_FORMATS)}", self.memory_format)
        require(self.accelerator in ("auto", "cpu", "gpu", "cuda", "mps"), "accelerator",
                "one of auto, cpu, gpu, cuda, mps", self.accelerator)
        require(self.devices == "auto" or (isinstance(self.devices, int) and self.devices >= 1),
                "devices", "'auto' or an integer >= 1", self.devices)
        require(self.num_nodes >= 1, "num_nodes", "an integer >= 1", self.num_nodes)
        require(self.precision in ("32-true", "16-mixed", "bf16-mixed", "64-true"), "precision",
                "one of 32-true, 16-mixed, bf16-mixed, 64-true", self.precision)
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


@dataclass
class RunConfig:
    seed: int = 0
    ckpt_path: Any = None
    bn_recalibration_steps: int = 0
    export_onnx: bool = True
    weights: Any = None          # a nas checkpoint whose weights start this run (fine-tuning)
    evaluate_only: bool = False  # no training: evaluate the (loaded) weights on val and test

    def __post_init__(self) -> None:
        require(self.bn_recalibration_steps >= 0, "bn_recalibration_steps", "an integer >= 0",
                self.bn_recalibration_steps)
        require(self.ckpt_path is None or isinstance(self.ckpt_path, str), "ckpt_path",
                "null or a checkpoint path", self.ckpt_path)
        require(self.weights is None or isinstance(self.weights, str), "weights",
                "null or a checkpoint path", self.weights)
        require(not (self.weights and self.ckpt_path), "weights",
                "null when ckpt_path resumes a run (a resumed run has its own weights)",
                self.weights)


def _run_dir() -> Path:
    return Path(HydraConfig.get().runtime.output_dir)


def _loggers(cfg: LoggerConfig, run_dir: Path, name: str) -> list:
    loggers = []
    if cfg.csv:
        loggers.append(CSVLogger(str(run_dir), name="csv", version=""))
    if cfg.wandb and cfg.wandb_mode != "disabled":
        os.environ.setdefault("WANDB_SILENT", "true")
        loggers.append(WandbLogger(project=cfg.project, name=name, save_dir=str(run_dir),
                                   mode=cfg.wandb_mode))
    return loggers


def train(cfg: DictConfig) -> dict:
    """Check every group, train, evaluate, export; returns the metrics written to metrics.json."""
    run = check(RunConfig, {k: cfg.get(k) for k in ("seed", "ckpt_path", "bn_recalibration_steps",
                                                    "export_onnx", "weights", "evaluate_only")},
                "run")
    budget = check(BudgetConfig, cfg.budget, "budget")
    trainer_cfg = check(TrainerConfig, cfg.trainer, "trainer")
    logger_cfg = check(LoggerConfig, cfg.logger, "logger")
    optim = check(OptimConfig, cfg.optim, "optim")
    data_cfg = data_config(cfg.data)
    if budget.batch_size is not None:
        data_cfg = dataclasses.replace(data_cfg, batch_size=budget.batch_size,
                                       eval_batch_size=budget.batch_size)
    datamodule = make_datamodule(data_cfg)
    spec = spec_from_config(cfg.arch, num_classes=datamodule.num_classes,
                            input_size=datamodule.input_size)
    if spec.in_channels != datamodule.in_channels:
        spec = dataclasses.replace(spec, in_channels=datamodule.in_channels)
    if run.ckpt_path:
        check_resume(run.ckpt_path, spec)
    weights = load_weights(run.weights, spec) if run.weights else None
    return _fit(cfg, spec, datamodule, run, budget, trainer_cfg, logger_cfg, optim, weights)


def _fit(cfg, spec, datamodule, run, budget, trainer_cfg, logger_cfg, optim,
         weights=None) -> dict:
    run_dir = _run_dir()
    pl.seed_everything(run.seed, workers=True, verbose=False)
    module = ClassifierModule(spec, optim, batch_size=datamodule.batch_size,
                              bn_recalibration_steps=run.bn_recalibration_steps,
                              drop_path_ramp=getattr(spec, "family", "") == "cell")
    if weights is not None:
        try:
            module.model.load_state_dict(weights)
        except RuntimeError as e:
            raise CheckpointError(f"{run.weights}: weights do not fit the architecture "
                                  f"({str(e).splitlines()[0][:160]})") from None
    log.info("%s: %s params, %.2f M MACs%s at %dx%d, %d classes", spec.name,
             f"{module.cost.params:,}", module.cost.macs / 1e6,
             f" + {module.cost.extra_macs / 1e6:.2f} M matmul" if module.cost.extra_macs else "",
             spec.input_size, spec.input_size, spec.num_classes)
    ckpt_dir = run_dir / "checkpoints"
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/top1", mode="max",
                           save_last=True, auto_insert_metric_name=False)
    # The layout first: weight averaging copies the module at its own setup.
    callbacks: list = [MemoryFormat(trainer_cfg.memory_format), best]
    if optim.ema_decay and not run.evaluate_only:
        callbacks.append(TFEMA(optim.ema_decay))
    sync_bn = trainer_cfg.sync_batchnorm
    if sync_bn and (trainer_cfg.accelerator == "cpu" or not torch.cuda.is_available()):
        # torch's SyncBatchNorm runs only on GPUs; CPU DDP (tests, debugging) keeps local BN.
        log.warning("trainer.sync_batchnorm ignored: SyncBatchNorm needs GPUs")
        sync_bn = False
    loggers = _loggers(logger_cfg, run_dir, spec.name)
    if loggers:
        callbacks.append(LearningRateMonitor(logging_interval="step"))
    if trainer_cfg.enable_progress_bar:
        callbacks.append(RichProgressBar(leave=True))
    trainer = pl.Trainer(
        default_root_dir=str(run_dir), max_epochs=budget.epochs,
        limit_train_batches=budget.limit_train_batches,
        limit_val_batches=budget.limit_val_batches,
        limit_test_batches=budget.limit_test_batches,
        accelerator=trainer_cfg.accelerator, devices=trainer_cfg.devices,
        num_nodes=trainer_cfg.num_nodes, strategy=trainer_cfg.strategy,
        precision=trainer_cfg.precision, sync_batchnorm=sync_bn,
        deterministic=trainer_cfg.deterministic, log_every_n_steps=trainer_cfg.log_every_n_steps,
        check_val_every_n_epoch=trainer_cfg.check_val_every_n_epoch,
        enable_progress_bar=trainer_cfg.enable_progress_bar,
        gradient_clip_val=optim.grad_clip, logger=loggers or False, callbacks=callbacks,
        enable_model_summary=False)
    if trainer.is_global_zero:
        io.save(spec, run_dir / "arch.yaml")
        for lg in loggers:
            lg.log_hyperparams({"params": module.cost.params, "macs": module.cost.macs,
                                "extra_macs": module.cost.extra_macs,
                                "config": OmegaConf.to_container(cfg, resolve=True)})
    start = time.time()
    if not run.evaluate_only:
        trainer.fit(module, datamodule=datamodule, ckpt_path=run.ckpt_path)
    fit_seconds = time.time() - start
    # The module now holds the final weights (the EMA average where the recipe uses one).
    final_val = trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    test = trainer.test(module, datamodule=datamodule, verbose=False)[0]
    if not trainer.is_global_zero:
        return {}
    best_score = best.best_model_score
    metrics = {
        "arch": spec.name, "params": module.cost.params, "params_nobn": module.cost.params_nobn,
        "macs": module.cost.macs, "extra_macs": module.cost.extra_macs,
        "best_val_top1": float(best_score) if best_score is not None else None,
        "final_val_top1": final_val.get("val/top1"), "final_val_top5": final_val.get("val/top5"),
        "test_top1": test.get("test/top1"), "test_top5": test.get("test/top5"),
        "epochs": trainer.current_epoch, "global_step": trainer.global_step,
        "fit_seconds": round(fit_seconds, 2), "run_dir": str(run_dir),
        "best_checkpoint": best.best_model_path or None,
        "last_checkpoint": None if run.evaluate_only else str(ckpt_dir / "last.ckpt"),
    }
    if run.export_onnx:
        shape = (2, spec.in_channels, spec.input_size, spec.input_size)
        metrics["onnx"] = export_onnx(module.model.cpu(), shape, run_dir / "model.onnx")
    write_text_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    _summary(metrics)
    return metrics


def _summary(m: dict) -> None:
    pct = lambda v: "-" if v is None else f"{100 * v:.2f} %"  # noqa: E731
    lines = [
        f"arch            {m['arch']}",
        f"params / MACs   {m['params']:,} / {m['macs'] / 1e6:.2f} M",
        f"best val top-1  {pct(m['best_val_top1'])}",
        f"final val top-1 {pct(m['final_val_top1'])}   test top-1 {pct(m['test_top1'])}",
        f"time            {m['fit_seconds']:.1f} s, {m['epochs']} epochs, {m['global_step']} steps",
        f"run directory   {m['run_dir']}",
    ]
    if m["last_checkpoint"]:
        lines.append(f"checkpoints     {m['best_checkpoint']}  (and last.ckpt)")
    if "onnx" in m:
        lines.append(f"onnx            {m['onnx']['path']} (parity max |diff| "
                     f"{m['onnx']['max_abs_diff']:.1e})")
    Console(stderr=True).print(Panel("\n".join(lines), title="nas.train", expand=False))
