"""Training as a library: `train_arch` trains and evaluates an ArchSpec on a datamodule in a
run directory, from plain Python (no Hydra inside); a `Recipe` holds everything of a training
but the architecture and the seed; `train_from_config` is the same from a composed `train`
config, the work behind `python -m nas.train`. Many trainings at once: nas.evaluation.

    from nas.training import train_arch
    metrics = train_arch(get_spec("moga_a", num_classes=10, input_size=32), datamodule,
                         optim=OptimConfig(), budget=BudgetConfig(epochs=3),
                         run_dir=Path("runs/x"))
"""

from __future__ import annotations

import dataclasses
import json
import logging
import time
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Optional, Sequence

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback, ModelCheckpoint
from rich.console import Console
from rich.panel import Panel

from nas.arch import io
from nas.arch.config import spec_from_config
from nas.arch.spec import ArchSpec, SpecError
from nas.arch.zoo import UnknownArch
from nas.checkpoints import CheckpointError, check_resume, load_weights
from nas.classifier import ClassifierModule, NonFiniteLoss
from nas.config import ConfigError, check, require
from nas.cost.memory import check_fits
from nas.data import DataError, LoaderConfig, data_config, make_datamodule
from nas.data.base import ImageDataModule
from nas.ema import TFEMA
from nas.export import export_onnx
from nas.files import write_text_atomic
from nas.optim import OptimConfig
from nas.trainer import BudgetConfig, LoggerConfig, TrainerConfig, make_trainer

if TYPE_CHECKING:
    from nas.estimate import Estimate

NO_LOGS = LoggerConfig(csv=False, wandb=False, wandb_mode="disabled")

# Bad input: reported as one line and exit status 2 by the command-line entry points.
USER_ERRORS = (ConfigError, SpecError, UnknownArch, CheckpointError, NonFiniteLoss, DataError)

log = logging.getLogger(__name__)


@dataclass
class RunConfig:
    """The top-level keys of `conf/train.yaml`."""

    seed: int = 0
    ckpt_path: Any = None
    bn_recalibration_steps: int = 0
    export_onnx: bool = True
    weights: Any = None          # a nas checkpoint whose weights start this run (fine-tuning)
    evaluate_only: bool = False  # no training: evaluate the (loaded) weights on val and test
    estimate: bool = False       # no training: time a few steps, predict the run's wall time

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


def with_budget_batch(data: LoaderConfig, budget: BudgetConfig) -> LoaderConfig:
    """The data config with the budget's batch size (smoke runs), where it sets one."""
    if budget.batch_size is None:
        return data
    return dataclasses.replace(data, batch_size=budget.batch_size,
                               eval_batch_size=budget.batch_size)


@dataclass
class Recipe:
    """How a network is trained and evaluated: every checked group of a `train` config but
    the architecture, and the run options that are the same for each training of a sweep.
    One structured value, so an evaluator writes it to a file as it is
    (`nas.evaluation`) and `python -m nas.train` and a sweep's jobs train alike."""

    data: LoaderConfig
    optim: OptimConfig = dataclasses.field(default_factory=OptimConfig)
    budget: BudgetConfig = dataclasses.field(default_factory=BudgetConfig)
    trainer: TrainerConfig = dataclasses.field(default_factory=TrainerConfig)
    logger: LoggerConfig = dataclasses.field(default_factory=LoggerConfig)
    bn_recalibration_steps: int = 0
    export_onnx: bool = True

    def to_dict(self) -> dict:
        """Plain values, the keys of a `train` config (what `read_config` reads back)."""
        return dataclasses.asdict(self)

    def datamodule(self) -> ImageDataModule:
        """The datamodule of `data` with the budget's batch size, where it sets one."""
        return make_datamodule(with_budget_batch(self.data, self.budget))

    def train(self, spec: ArchSpec, run_dir: Path, *, seed: int,
              datamodule: Optional[ImageDataModule] = None, **run: Any) -> Optional[dict]:
        """`train_arch` of `spec` with this recipe (`run`: its per-run options, such as
        ckpt_path or callbacks); the spec takes the data's channel count."""
        datamodule = datamodule or self.datamodule()
        if spec.in_channels != datamodule.in_channels:
            spec = dataclasses.replace(spec, in_channels=datamodule.in_channels)
        return train_arch(spec, datamodule, optim=self.optim, budget=self.budget,
                          trainer=self.trainer, logger=self.logger, run_dir=run_dir, seed=seed,
                          bn_recalibration_steps=self.bn_recalibration_steps,
                          export=self.export_onnx, **run)


RUN_KEYS = ("seed", "ckpt_path", "bn_recalibration_steps", "export_onnx", "weights",
            "evaluate_only", "estimate")


def read_config(cfg: DictConfig | dict) -> tuple[Recipe, RunConfig]:
    """Check every group of a `train` config but `arch` (one ConfigError line for the first
    bad value): its recipe, and its run options."""
    cfg = cfg if isinstance(cfg, DictConfig) else OmegaConf.create(cfg)
    run = check(RunConfig, {k: cfg.get(k) for k in RUN_KEYS if k in cfg}, "run")
    recipe = Recipe(data=data_config(cfg.data), optim=check(OptimConfig, cfg.optim, "optim"),
                    budget=check(BudgetConfig, cfg.budget, "budget"),
                    trainer=check(TrainerConfig, cfg.trainer, "trainer"),
                    logger=check(LoggerConfig, cfg.logger, "logger"),
                    bn_recalibration_steps=run.bn_recalibration_steps,
                    export_onnx=run.export_onnx)
    return recipe, run


def train_from_config(cfg: DictConfig, run_dir: Path,
                      callbacks: Sequence[Callback] = ()) -> Optional[dict]:
    """Check every group of a composed `train` config, then train its architecture with its
    recipe in `run_dir` (with more Lightning `callbacks`, if given)."""
    recipe, run = read_config(cfg)
    datamodule = recipe.datamodule()
    spec = spec_from_config(cfg.arch, num_classes=datamodule.num_classes,
                            input_size=datamodule.input_size)
    if run.estimate:
        return estimate_training(recipe, spec, run_dir, seed=run.seed, datamodule=datamodule)
    return recipe.train(spec, run_dir, seed=run.seed, datamodule=datamodule,
                        ckpt_path=run.ckpt_path, weights=run.weights,
                        evaluate_only=run.evaluate_only, callbacks=callbacks,
                        hparams={"config": OmegaConf.to_container(cfg, resolve=True)})


def train_arch(spec: ArchSpec, datamodule: ImageDataModule, *, optim: OptimConfig,
               run_dir: Path, budget: Optional[BudgetConfig] = None,
               trainer: Optional[TrainerConfig] = None, logger: Optional[LoggerConfig] = None,
               seed: int = 0, ckpt_path: Optional[str] = None, weights: Optional[str] = None,
               evaluate_only: bool = False, bn_recalibration_steps: int = 0,
               export: bool = True, hparams: Optional[dict] = None,
               callbacks: Sequence[Callback] = ()) -> Optional[dict]:
    """Train `spec` on `datamodule` (resuming from `ckpt_path`, or starting from the network
    weights of the nas checkpoint `weights`), evaluate it on val and test, export ONNX.

    Writes arch.yaml, checkpoints/{best,last}.ckpt, the loggers' files, model.onnx and
    metrics.json into `run_dir`; returns the metrics on rank zero, None on other ranks.
    `budget`, `trainer` and `logger` default to their schemas' defaults; `callbacks` are
    more Lightning callbacks for the fit. `seed` is the run's one seed: it also orders the
    datamodule's batches, so this call and `python -m nas.train seed=<seed>` are one run.
    """
    run_dir = Path(run_dir)
    budget, trainer = budget or BudgetConfig(), trainer or TrainerConfig()
    logger = logger or LoggerConfig()
    if ckpt_path:
        check_resume(ckpt_path, spec)
    check_fits(spec, datamodule.batch_size, trainer.accelerator)
    state = load_weights(weights, spec) if weights else None
    pl.seed_everything(seed, workers=True, verbose=False)
    datamodule.seed = seed
    module = ClassifierModule(spec, optim, batch_size=datamodule.batch_size,
                              bn_recalibration_steps=bn_recalibration_steps)
    if state is not None:
        try:
            module.model.load_state_dict(state)
        except RuntimeError as e:
            raise CheckpointError(f"{weights}: weights do not fit the architecture "
                                  f"({str(e).splitlines()[0][:160]})") from None
    log.info("%s: %s params, %.2f M MACs%s at %dx%d, %d classes", spec.name,
             f"{module.cost.params:,}", module.cost.macs / 1e6,
             f" + {module.cost.extra_macs / 1e6:.2f} M matmul" if module.cost.extra_macs else "",
             spec.input_size, spec.input_size, spec.num_classes)
    ckpt_dir = run_dir / "checkpoints"
    best = ModelCheckpoint(dirpath=ckpt_dir, filename="best", monitor="val/top1", mode="max",
                           save_last=True, auto_insert_metric_name=False)
    stage_callbacks: list = [best, *callbacks]
    if optim.ema_decay and not evaluate_only:
        stage_callbacks.append(TFEMA(optim.ema_decay))
    pl_trainer = make_trainer(run_dir, trainer, budget, logger, name=spec.name, seed=seed,
                              callbacks=stage_callbacks, gradient_clip_val=optim.grad_clip)
    if pl_trainer.is_global_zero:
        io.save(spec, run_dir / "arch.yaml")
        for lg in pl_trainer.loggers:
            lg.log_hyperparams({"params": module.cost.params, "macs": module.cost.macs,
                                "extra_macs": module.cost.extra_macs, **(hparams or {})})
    start = time.time()
    if not evaluate_only:
        pl_trainer.fit(module, datamodule=datamodule, ckpt_path=ckpt_path)
    fit_seconds = time.time() - start
    # The module now holds the final weights (the EMA average where the recipe uses one).
    final_val = pl_trainer.validate(module, datamodule=datamodule, verbose=False)[0]
    test = pl_trainer.test(module, datamodule=datamodule, verbose=False)[0]
    if not pl_trainer.is_global_zero:
        return None
    best_score = best.best_model_score
    metrics = {
        "arch": spec.name, "params": module.cost.params, "params_nobn": module.cost.params_nobn,
        "macs": module.cost.macs, "extra_macs": module.cost.extra_macs,
        "best_val_top1": float(best_score) if best_score is not None else None,
        "final_val_top1": final_val.get("val/top1"), "final_val_top5": final_val.get("val/top5"),
        "test_top1": test.get("test/top1"), "test_top5": test.get("test/top5"),
        "seed": seed, "epochs": pl_trainer.current_epoch,
        "global_step": pl_trainer.global_step,
        "world_size": pl_trainer.world_size,
        "fit_seconds": round(fit_seconds, 2), "run_dir": str(run_dir),
        "best_checkpoint": best.best_model_path or None,
        "last_checkpoint": None if evaluate_only else str(ckpt_dir / "last.ckpt"),
    }
    if export:
        shape = (2, spec.in_channels, spec.input_size, spec.input_size)
        metrics["onnx"] = export_onnx(module.model.cpu(), shape, run_dir / "model.onnx")
    write_text_atomic(run_dir / "metrics.json", json.dumps(metrics, indent=1) + "\n")
    return metrics


def estimate_training(recipe: Recipe, spec: ArchSpec, run_dir: Path, *, seed: int,
                      datamodule: Optional[ImageDataModule] = None,
                      estimate: Optional["Estimate"] = None) -> dict:
    """The predicted wall time of training `spec` with `recipe` (nas.estimate): a few steps
    of the real module on stand-in batches of the run's shape; adds its phases to `estimate`
    where given, else prints and writes the estimate. Returns the estimate's content."""
    from nas.estimate import Estimate, Phase, batches, device_name, stand_in, timed_fit

    datamodule, sizes = stand_in(datamodule or recipe.datamodule())
    if spec.in_channels != datamodule.in_channels:
        spec = dataclasses.replace(spec, in_channels=datamodule.in_channels)
    check_fits(spec, datamodule.batch_size, recipe.trainer.accelerator)
    own = estimate is None
    estimate = estimate or Estimate(device_name(recipe.trainer.accelerator))
    estimate.sizes = estimate.sizes or sizes
    pl.seed_everything(seed, workers=True, verbose=False)
    datamodule.seed = seed
    module = ClassifierModule(spec, recipe.optim, batch_size=datamodule.batch_size,
                              bn_recalibration_steps=recipe.bn_recalibration_steps)

    def make(**args: Any) -> pl.Trainer:
        return make_trainer(run_dir, recipe.trainer, recipe.budget, NO_LOGS, name=spec.name,
                            seed=seed, **args)

    phases = timed_fit(make, module, budget=recipe.budget, name=spec.name,
                       datamodule=datamodule,
                       overrides={"gradient_clip_val": recipe.optim.grad_clip})
    estimate.phases += phases
    if len(phases) > 1:   # the test pass, at the validation step's time
        n_test = -(-len(datamodule.test_set) // datamodule.cfg.eval_batch_size)
        estimate.phases.append(Phase(f"{spec.name}: test steps",
                                     batches(n_test, recipe.budget.limit_test_batches),
                                     phases[-1].seconds, phases[-1].spread))
    if recipe.bn_recalibration_steps or recipe.optim.ema_decay:
        estimate.left_out.append("BN recalibration before evaluations and the weight EMA")
    if not own:
        return estimate.to_dict()
    return estimate.report(run_dir, f"nas.train {spec.name}")


def print_summary(m: dict) -> None:
    """The final panel of `python -m nas.train`."""
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
