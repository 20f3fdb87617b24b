"""The method-independent part of a search: check the shared config groups, run the method,
write arch.yaml and result.json, print the command that trains the result."""

from __future__ import annotations

import dataclasses
import importlib
import json
import shlex
from dataclasses import dataclass
from pathlib import Path

import pytorch_lightning as pl
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig, OmegaConf
from pytorch_lightning.loggers import CSVLogger

from nas.arch import io
from nas.config import ConfigError, check
from nas.data import LoaderConfig, data_config
from nas.files import write_text_atomic
from nas.memory_format import MemoryFormat
from nas.training import BudgetConfig, LoggerConfig, TrainerConfig

# method name -> "module:function"; the function takes (method cfg, SearchContext) and
# returns (ArchSpec, result dict).
METHODS = {"moga": "nas.methods.moga:search", "atomnas": "nas.methods.atomnas:search"}


@dataclass
class SearchContext:
    """What every method gets besides its own config."""

    run_dir: Path
    data: LoaderConfig
    budget: BudgetConfig
    trainer: TrainerConfig
    logger: LoggerConfig
    seed: int
    data_choice: str


def search_trainer(ctx: SearchContext, **overrides) -> pl.Trainer:
    """A Lightning Trainer from the shared trainer, budget and logger groups (CSV log in the
    run directory, no sanity validation, the trainer's memory format); a method adds or
    overrides arguments, and its callbacks come after the memory format's."""
    t, b = ctx.trainer, ctx.budget
    kwargs = dict(
        default_root_dir=str(ctx.run_dir), max_epochs=b.epochs,
        limit_train_batches=b.limit_train_batches, limit_val_batches=b.limit_val_batches,
        limit_test_batches=b.limit_test_batches, accelerator=t.accelerator, devices=t.devices,
        num_nodes=t.num_nodes, strategy=t.strategy, precision=t.precision,
        log_every_n_steps=t.log_every_n_steps, enable_progress_bar=t.enable_progress_bar,
        enable_model_summary=False, num_sanity_val_steps=0,
        logger=CSVLogger(str(ctx.run_dir), name="csv", version="") if ctx.logger.csv else False)
    callbacks = [MemoryFormat(t.memory_format), *overrides.pop("callbacks", [])]
    kwargs.update(overrides)
    return pl.Trainer(callbacks=callbacks, **kwargs)


def train_command(arch_path: Path, data_choice: str, data: LoaderConfig) -> str:
    """The `python -m nas.train` command that trains a searched architecture on the same data."""
    args = ["python", "-m", "nas.train", "arch=file", f"arch.path={arch_path}",
            f"data={data_choice}"]
    root = getattr(data, "root", None)
    if root and data_choice not in ("embedded", "digits"):
        args.append(f"data.root={root}")
    return " ".join(shlex.quote(a) for a in args)


CONF_DIR = Path(__file__).resolve().parents[2] / "conf"


def method_setting(method: str, budget: str = "demo") -> tuple[DictConfig, dict, dict]:
    """What `nas.search method=<method> budget=<budget>` runs with, read from the configs so
    scripts follow the search when a budget changes: conf/method/<method>.yaml with the
    overrides of conf/method_budget/<method>/<budget>.yaml, and that overlay's budget and
    data overrides (plain dicts, empty where it has none)."""
    overlay = OmegaConf.load(CONF_DIR / "method_budget" / method / f"{budget}.yaml")
    cfg = OmegaConf.merge(OmegaConf.load(CONF_DIR / "method" / f"{method}.yaml"),
                          overlay.get("method") or {})
    extra = {k: OmegaConf.to_container(overlay[k]) if k in overlay else {}
             for k in ("budget", "data")}
    return cfg, extra["budget"], extra["data"]


# What a resumed search takes from the saved run: everything that decides its result. The
# trainer and logger groups come from the resuming command (devices, progress bar, ...).
RESUMED_KEYS = ("method", "data", "budget", "seed")


def resumed_config(cfg: DictConfig, run_dir: Path) -> tuple[DictConfig, str]:
    """The config of the search saved in `run_dir`, and its data choice, for `resume_dir=`."""
    saved = run_dir / ".hydra" / "config.yaml"
    if not run_dir.is_dir() or not saved.is_file():
        raise ConfigError(f"resume_dir: {run_dir} is not a search run directory "
                          f"(expected {saved} written by an earlier nas.search run)")
    old = OmegaConf.to_container(OmegaConf.load(saved))
    merged = OmegaConf.to_container(cfg)
    merged.update({k: old[k] for k in RESUMED_KEYS if k in old})  # replaced, not merged
    choices = OmegaConf.load(run_dir / ".hydra" / "hydra.yaml").hydra.runtime.choices \
        if (run_dir / ".hydra" / "hydra.yaml").is_file() else {}
    return OmegaConf.create(merged), choices.get("data", "embedded")


def search(cfg: DictConfig) -> dict:
    hydra_cfg = HydraConfig.get()
    run_dir = Path(hydra_cfg.runtime.output_dir)
    data_choice = hydra_cfg.runtime.choices.get("data", "embedded")
    if cfg.get("resume_dir"):
        # Continue the earlier run in its own directory: finished stages are reused
        # (supernet.pt, lut.json) and the evolutionary search resumes from nsga_state.pkl.
        run_dir = Path(cfg.resume_dir)
        cfg, data_choice = resumed_config(cfg, run_dir)
        print(f"Resuming the search in {run_dir}")
    name = cfg.method.get("name")
    if name not in METHODS:
        raise ConfigError(f"method.name: expected one of {', '.join(METHODS)}, got {name!r}")
    budget = check(BudgetConfig, cfg.budget, "budget")
    trainer = check(TrainerConfig, cfg.trainer, "trainer")
    logger = check(LoggerConfig, cfg.logger, "logger")
    data = data_config(cfg.data)
    if budget.batch_size is not None:
        data = dataclasses.replace(data, batch_size=budget.batch_size,
                                   eval_batch_size=max(budget.batch_size, data.eval_batch_size))
    ctx = SearchContext(run_dir=run_dir, data=data, budget=budget, trainer=trainer,
                        logger=logger, seed=int(cfg.get("seed", 0)), data_choice=data_choice)
    module, fn = METHODS[name].split(":")
    spec, result = getattr(importlib.import_module(module), fn)(cfg.method, ctx)
    if not result.get("rank_zero", True):
        return result
    arch_path = ctx.run_dir / "arch.yaml"
    io.save(spec, arch_path)
    result["arch_yaml"] = str(arch_path)
    result["train_command"] = train_command(arch_path.resolve(), ctx.data_choice, data)
    if result.get("model_ckpt"):  # a method whose result is already trained (AtomNAS)
        weights = shlex.quote(str(Path(result["model_ckpt"]).resolve()))
        result["evaluate_command"] = (f"{result['train_command']} weights={weights} "
                                      f"evaluate_only=true")
    write_text_atomic(ctx.run_dir / "result.json", json.dumps(result, indent=1) + "\n")
    print(f"\nTrain the selected architecture:\n  {result['train_command']}\n")
    if "evaluate_command" in result:
        print(f"Evaluate (or, without evaluate_only, fine-tune) its trained weights:\n"
              f"  {result['evaluate_command']}\n")
    return result
