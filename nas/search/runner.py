"""The method-independent part of a search: find the method from its config, check the shared
groups, run it, write arch.yaml and result.json, print the commands that train the result."""

from __future__ import annotations

import dataclasses
import json
import shlex
from pathlib import Path
from typing import Optional

from omegaconf import DictConfig, OmegaConf

from nas.arch import io
from nas.config import ConfigError, check
from nas.data import LoaderConfig, data_config
from nas.estimate import Estimate, device_name
from nas.files import write_text_atomic
from nas.methods.base import Method, SearchContext, SearchResult, method_class
from nas.run_dirs import FINISHED, run_kind
from nas.trainer import BudgetConfig, LoggerConfig, TrainerConfig
from nas.training import with_budget_batch


def train_command(arch_path: Path, data_choice: str, data: LoaderConfig) -> str:
    """The `python -m nas.train` command that trains a searched architecture on the same data."""
    args = ["python", "-m", "nas.train", "arch=file", f"arch.path={arch_path}",
            f"data={data_choice}"]
    root = getattr(data, "root", None)
    if root and data_choice not in ("embedded", "digits"):
        args.append(f"data.root={root}")
    # A search at another input size (DARTS's demo: 16x16) trains its result at that size,
    # and one with another split (ReXNet's demo) on the same split, so that the test images
    # stay ones the search never ranked candidates on; a subset's classes and the ImageNet
    # crops and resize (the MnasNet-style overlays' bicubic) go with them too.
    defaults = {f.name: f.default for f in dataclasses.fields(data)}
    for key in ("input_size", "val_fraction", "test_fraction", "data_seed", "num_classes",
                "crop_pct", "min_scale", "interpolation"):
        if key in defaults and getattr(data, key) != defaults[key]:
            args.append(f"data.{key}={getattr(data, key)}")
    return " ".join(shlex.quote(a) for a in args)


# What a resumed search takes from the saved run: everything that decides its result. The
# trainer and logger groups come from the resuming command (devices, progress bar, ...).
RESUMED_KEYS = ("method", "data", "budget", "seed")


def resumed_config(cfg: DictConfig, run_dir: Path) -> tuple[DictConfig, str]:
    """The config of the search saved in `run_dir`, and its data choice, for `resume_dir=`:
    checked to be an unfinished search of a known method before anything is written."""
    saved = run_dir / ".hydra" / "config.yaml"
    expected = f"expected the directory of an unfinished nas.search run (with {saved})"
    if not run_dir.is_dir() or not saved.is_file():
        raise ConfigError(f"resume_dir: {run_dir} is not a search run directory; {expected}")
    if run_kind(run_dir) != "search":
        raise ConfigError(f"resume_dir: {run_dir} is not a search run (its saved config has no "
                          f"method); {expected}")
    if (run_dir / FINISHED["search"]).is_file():
        raise ConfigError(f"resume_dir: {run_dir} holds a finished search "
                          f"({run_dir / FINISHED['search']}); nothing to resume; train its "
                          f"result with the command printed there")
    old = OmegaConf.to_container(OmegaConf.load(saved))
    method_class(OmegaConf.create(old["method"]))       # a method this install knows
    merged = OmegaConf.to_container(cfg)
    merged.update({k: old[k] for k in RESUMED_KEYS if k in old})  # replaced, not merged
    hydra_yaml = run_dir / ".hydra" / "hydra.yaml"
    try:
        choices = OmegaConf.load(hydra_yaml).hydra.runtime.choices if hydra_yaml.is_file() \
            else {}
    except Exception as e:  # YAML errors, a python tag, missing keys
        raise ConfigError(f"resume_dir: {hydra_yaml} is not a Hydra run record "
                          f"({type(e).__name__}); {expected}") from None
    return OmegaConf.create(merged), choices.get("data", "embedded")


def search(cfg: DictConfig, run_dir: Path, data_choice: str) -> Optional[dict]:
    """Run the search `cfg` describes in `run_dir`; returns result.json's content on rank
    zero, None on other ranks. `resume_dir` in `cfg` continues that run in place instead."""
    if cfg.get("resume_dir"):
        # Continue the earlier run in its own directory: the method reuses what it finished.
        run_dir = Path(cfg.resume_dir)
        cfg, data_choice = resumed_config(cfg, run_dir)
        print(f"Resuming the search in {run_dir}")
    cls = method_class(cfg.method)
    method_cfg = {k: v for k, v in cfg.method.items() if k != "_target_"}
    method = cls(check(cls.Config, method_cfg, "method"))
    budget = check(BudgetConfig, cfg.budget, "budget")
    data = data_config(cfg.data)
    if budget.batch_size is not None:  # search loaders keep a larger evaluation batch
        data = dataclasses.replace(with_budget_batch(data, budget),
                                   eval_batch_size=max(budget.batch_size, data.eval_batch_size))
    trainer = check(TrainerConfig, cfg.trainer, "trainer")
    estimate = Estimate(device_name(trainer.accelerator)) if cfg.get("estimate") else None
    ctx = SearchContext(run_dir=run_dir, data=data, data_choice=data_choice, budget=budget,
                        trainer=trainer, logger=check(LoggerConfig, cfg.logger, "logger"),
                        seed=int(cfg.get("seed", 0)), estimate=estimate)
    result = method.search(ctx)
    if estimate is not None:
        if method.not_estimated:
            estimate.left_out.append(method.not_estimated)
        return estimate.report(run_dir, f"nas.search method={method.cfg.name}")
    if result is None:  # not rank zero
        return None
    return write_result(result, ctx, method)


def write_result(result: SearchResult, ctx: SearchContext, method: Method) -> dict:
    """arch.yaml, the other specs, result.json; print the train (and evaluate) commands."""
    arch_path = ctx.run_dir / "arch.yaml"
    io.save(result.arch, arch_path)
    for key, spec in result.others.items():
        io.save(spec, ctx.run_dir / f"{key}.yaml")
    command = train_command(arch_path.resolve(), ctx.data_choice, ctx.data)
    recipe = method.recipe
    summary = {"method": method.cfg.name, **result.metrics, "arch_yaml": str(arch_path),
               "recipe": recipe, "train_command": command, "run_dir": str(ctx.run_dir)}
    summary["others"] = {k: str(ctx.run_dir / f"{k}.yaml") for k in result.others}
    summary["artifacts"] = {k: str(v) for k, v in result.artifacts.items()}
    print(f"\nTrain the selected architecture:\n  {command}\n")
    if recipe:
        print(f"At the paper's scale (the recipe conf/recipe/paper/{recipe}.yaml, recorded in "
              f"result.json):\n  {command} budget=paper\n")
    if result.weights is not None:
        weights = shlex.quote(str(Path(result.weights).resolve()))
        summary["model_ckpt"] = str(result.weights)
        summary["evaluate_command"] = f"{command} weights={weights} evaluate_only=true"
        print(f"Evaluate (or, without evaluate_only, fine-tune) its trained weights:\n"
              f"  {summary['evaluate_command']}\n")
    write_text_atomic(ctx.run_dir / "result.json", json.dumps(summary, indent=1) + "\n")
    return summary
