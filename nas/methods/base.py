"""The method contract: what a search method is given, what it returns, and its base class.

A method is one module plus its config: a `Method` subclass with a dataclass `Config` (the
schema of the `method` group), named by `_target_` in `conf/method/<name>.yaml`, with its
budget scales in `conf/method/<name>/<budget>.yaml`. `nas.search.runner` finds it from the
config and does the shared plumbing (run directory, result files, printed commands).
"""

from __future__ import annotations

import dataclasses
import importlib
from abc import ABC, abstractmethod
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, ClassVar, Optional, Sequence

import pytorch_lightning as pl
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.callbacks import Callback

from nas.arch.spec import ArchSpec
from nas.config import CONF_DIR, ConfigError
from nas.cost.memory import check_fits
from nas.data import ImageDataModule, LoaderConfig, make_datamodule
from nas.estimate import Estimate, stand_in
from nas.methods.stage import Fitted, fit_stage
from nas.optim import OptimConfig
from nas.trainer import BudgetConfig, LoggerConfig, TrainerConfig, make_trainer
from nas.training import Recipe


@dataclass
class SearchContext:
    """What every method gets besides its own config (checked groups of the search run)."""

    run_dir: Path
    data: LoaderConfig          # budget.batch_size already applied
    data_choice: str            # the `data=` option, for the printed train command
    budget: BudgetConfig
    trainer: TrainerConfig
    logger: LoggerConfig
    seed: int                   # every random stream of the search derives from it
    # estimate=true: stages time a few steps into it instead of running (nas.estimate)
    estimate: Optional[Estimate] = None

    def datamodule(self, **changes: Any) -> ImageDataModule:
        """The run's datamodule: `data` (with `changes`, such as a batch size), its batches
        ordered by the run's seed; when estimating, its stand-in of the same shapes and
        sizes (nas.estimate), so that the stages time themselves on it."""
        datamodule = make_datamodule(dataclasses.replace(self.data, **changes))
        datamodule.seed = self.seed
        if self.estimate is not None:
            datamodule, self.estimate.sizes = stand_in(datamodule)
        return datamodule

    def reseed(self) -> None:
        """Every random stream (Python, NumPy, torch) back to the run's seed: before a module
        is built, and where a stage must draw the same whether or not the run was resumed."""
        pl.seed_everything(self.seed, workers=True, verbose=False)

    def recipe(self, optim: OptimConfig) -> Recipe:
        """The training of a search's candidates: the run's data, budget and trainer (no
        progress bar), `optim`, CSV logs only, no ONNX export (nas.evaluation)."""
        return Recipe(data=self.data, optim=optim, budget=self.budget,
                      trainer=dataclasses.replace(self.trainer, enable_progress_bar=False),
                      logger=LoggerConfig(wandb=False, wandb_mode="disabled",
                                          project=self.logger.project),
                      export_onnx=False)

    def check_memory(self, spec: ArchSpec, batch_size: int, *, what: str, fix: str,
                     field: str = "method.width") -> None:
        """Refuse, before anything is built, a network that cannot fit this device's memory
        (one line naming `field`, `what` and the `fix`)."""
        check_fits(spec, batch_size, self.trainer.accelerator, field=field, what=what, fix=fix)

    def fit(self, build: Callable[[], pl.LightningModule], *, name: str, identity: str,
            **options: Any) -> Optional[Fitted]:
        """The one search stage (`nas.methods.stage.fit_stage`): reseed, build, fit with an
        every-epoch last.ckpt that a resumed run continues from (its identity checked first),
        timed, and (`hand_back_as=`) the supernet's own pick exported; a `Fitted` on rank
        zero, None elsewhere."""
        return fit_stage(self, build, name=name, identity=identity, **options)

    def make_trainer(self, *, name: str, callbacks: Sequence[Callback] = (),
                     **overrides: Any) -> pl.Trainer:
        """A Trainer from the run's trainer, budget and logger groups (nas.trainer), without
        sanity validation; `overrides` are the Trainer arguments a stage sets itself."""
        overrides.setdefault("num_sanity_val_steps", 0)
        return make_trainer(self.run_dir, self.trainer, self.budget, self.logger, name=name,
                            seed=self.seed, callbacks=callbacks, **overrides)


@dataclass
class SearchResult:
    """What a search returns; the runner writes it (arch.yaml, result.json, other specs)."""

    arch: ArchSpec                                    # the selected architecture
    metrics: dict[str, Any]                           # headline figures (JSON values)
    others: dict[str, ArchSpec] = field(default_factory=dict)  # "front/0" -> front/0.yaml
    weights: Optional[Path] = None    # trained weights of `arch` (nas checkpoint), if any
    artifacts: dict[str, Path] = field(default_factory=dict)   # plots, tables, state files


class Method(ABC):
    """A search method. Subclasses set `Config` (a dataclass whose fields are the `method`
    group's keys, `name` included) and `recipe` (the zoo name whose paper recipe,
    conf/recipe/paper/<recipe>.yaml, trains the result at budget=paper), and implement
    `search`. With `ctx.estimate` set, `search` runs as usual on stand-in data and each
    ctx.fit only times itself (and returns None, as on other ranks)."""

    Config: ClassVar[type]
    recipe: ClassVar[Optional[str]] = None
    # What `estimate=true` leaves out of this method's prediction (stages that are not a fit
    # through ctx.fit), said under the estimate.
    not_estimated: ClassVar[str] = ""

    def __init__(self, cfg: Any):
        self.cfg = cfg

    @abstractmethod
    def search(self, ctx: SearchContext) -> Optional[SearchResult]:
        """Run the search in ctx.run_dir; the result on rank zero, None on other ranks."""

    def sampler(self, datamodule: ImageDataModule) -> Callable[[int], ArchSpec]:
        """Draws from this method's search space for this data: `draw(seed)` is one
        architecture, uniform over the space's decisions (what `method=random` trains).
        A method without a space to draw from keeps this refusal."""
        raise ConfigError(f"method.space: {self.cfg.name} has no search space to draw from")


def method_class(method_cfg: DictConfig) -> type[Method]:
    """The Method subclass named by `method._target_` ("package.module.ClassName")."""
    target = method_cfg.get("_target_")
    if not isinstance(target, str) or "." not in target:
        raise ConfigError(f"method._target_: expected the import path of a nas.methods.base."
                          f"Method subclass (e.g. nas.methods.moga.search.MoGA), got {target!r}")
    module_name, _, class_name = target.rpartition(".")
    try:
        cls = getattr(importlib.import_module(module_name), class_name)
    except (ImportError, AttributeError) as e:
        raise ConfigError(f"method._target_: cannot import {target} ({e})") from None
    if not (isinstance(cls, type) and issubclass(cls, Method)):
        raise ConfigError(f"method._target_: {target} is not a nas.methods.base.Method subclass")
    return cls


def method_config(method: str, budget: str) -> DictConfig:
    """The `method` group as `nas.search method=<method> budget=<budget>` composes it (its
    defaults list and its budget's scale included), `_target_` with it."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    overrides = [f"method={method}", f"budget={budget}"]
    if GlobalHydra.instance().is_initialized():     # inside a running entry point
        return compose("search", overrides=overrides).method
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        return compose("search", overrides=overrides).method


def method_setting(method: str, budget: str = "demo") -> tuple[DictConfig, dict, dict]:
    """What `nas.search method=<method> budget=<budget>` runs with, read from the configs so
    that scripts follow the search when a budget changes: conf/method/<method>.yaml with the
    `method` overrides of conf/method/<method>/<budget>.yaml, and that overlay's budget and
    data overrides (plain dicts, empty where it has none)."""
    base = OmegaConf.load(CONF_DIR / "method" / f"{method}.yaml")
    overlay_path = CONF_DIR / "method" / method / f"{budget}.yaml"
    overlay = OmegaConf.load(overlay_path) if overlay_path.is_file() else OmegaConf.create()
    cfg = OmegaConf.merge(base, overlay.get("method") or {})
    cfg.pop("_target_", None)
    extra = {k: OmegaConf.to_container(overlay[k]) if k in overlay else {}
             for k in ("budget", "data")}
    return cfg, extra["budget"], extra["data"]
