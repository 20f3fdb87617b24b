"""The best of several searches by a short training of each: DARTS's selection protocol.

DARTS (its Sec. 3.2) runs the search four times with different seeds and keeps the cell whose
network, trained from scratch for a short schedule (100 epochs on CIFAR-10), validates best.
Here that is a multirun of `nas.search` plus this step at its end:

    python -m nas.search -m +experiment=darts_cifar10 selection=darts data.root=/data/cifar
    python -m nas.selection sweep=runs/search_multirun/<sweep>   # (re)run the step on a sweep

`selection=darts` (conf/selection/darts.yaml) sweeps the seeds and registers `SelectBest`, a
Hydra callback that runs `select_best` on the sweep directory when the searches are done.
Every search's arch.yaml is trained through the evaluator (nas.evaluation) with the recipe
its method records for `selection.budget` (the searches' budget by default) for
`selection.epochs`, on the searches' data with a validation part of `selection.val_fraction`
of the training images, so that the test images never decide (DARTS's own train.py
validated on the test set). The best final validation top-1 wins. Outputs in the sweep
directory: `selection/` (one training run per search, resumable), `selection.json` (every
search's seed, params, MACs and validation top-1; the best one and its train command).
"""

from __future__ import annotations

import dataclasses
import json
import sys
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Optional

from hydra.experimental.callback import Callback
from omegaconf import DictConfig, OmegaConf

from nas.config import CONF_DIR, ConfigError, check, require
from nas.evaluation import EvaluatorConfig

FINISHED = "selection.json"


@dataclass
class SelectionConfig:
    budget: Optional[str] = None   # the budget option of the trainings (null: the searches')
    epochs: int = 100              # the short schedule (DARTS: 100 epochs on CIFAR-10)
    val_fraction: float = 0.1      # of the training images, where the data carves one out
    evaluator: EvaluatorConfig = field(
        default_factory=lambda: EvaluatorConfig(backend="hydra", launcher="basic"))

    def __post_init__(self) -> None:
        require(self.epochs >= 1, "epochs", "an integer >= 1", self.epochs)
        require(0.0 < self.val_fraction < 1.0, "val_fraction", "a fraction in (0, 1)",
                self.val_fraction)


@dataclass(frozen=True)
class Search:
    """One finished search of the sweep."""
    name: str            # its directory under the sweep
    path: Path
    seed: int
    budget: str
    data_choice: str
    data: dict
    result: dict


def _searches(sweep: Path) -> list[Search]:
    """Every job directory of the sweep, each a finished search (else one ConfigError)."""
    jobs = sorted(d for d in sweep.iterdir() if (d / ".hydra" / "config.yaml").is_file())
    if not jobs:
        raise ConfigError(f"selection: {sweep} holds no search job (no */.hydra/config.yaml); "
                          f"expected the sweep directory of a nas.search multirun")
    found = []
    for job in jobs:
        result = job / "result.json"
        if not result.is_file():
            raise ConfigError(f"selection: the search {job} did not finish (no result.json); "
                              f"expected every search of the sweep finished (resume it with "
                              f"python -m nas.search resume_dir={job})")
        cfg = OmegaConf.load(job / ".hydra" / "config.yaml")
        choices = OmegaConf.load(job / ".hydra" / "hydra.yaml").hydra.runtime.choices
        found.append(Search(job.name, job, int(cfg.get("seed", 0)), choices.budget,
                            choices.data, OmegaConf.to_container(cfg.data, resolve=True),
                            json.loads(result.read_text())))
    for what in ("data_choice", "data"):
        if len({json.dumps(getattr(s, what), sort_keys=True) for s in found}) > 1:
            raise ConfigError(f"selection: the searches of {sweep} ran on different data "
                              f"({what} differs); expected one data set for every search")
    recipes = {s.result.get("recipe") for s in found}
    if len(recipes) > 1:
        raise ConfigError(f"selection: the searches of {sweep} record different training "
                          f"recipes ({', '.join(map(str, sorted(recipes, key=str)))}); "
                          f"expected searches of one method")
    return found


def _compose_train(overrides: list[str]) -> DictConfig:
    """`train` composed as `python -m nas.train <overrides>` would, inside a Hydra app (the
    callback) or outside one (`python -m nas.selection`)."""
    from hydra import compose, initialize_config_dir
    from hydra.core.global_hydra import GlobalHydra

    if GlobalHydra.instance().is_initialized():
        return compose("train", overrides=overrides)
    with initialize_config_dir(str(CONF_DIR), version_base="1.3"):
        return compose("train", overrides=overrides)


def _recipe(searches: list[Search], sel: SelectionConfig, trainer: Any, logger: Any):
    """The one recipe of every training: the method's at the selection's budget, for
    `epochs`, on the searches' data with its validation part."""
    from nas.data import data_config
    from nas.train import searched_recipe
    from nas.training import read_config

    first = searches[0]
    budget = sel.budget or first.budget
    if not (CONF_DIR / "budget" / f"{budget}.yaml").is_file():
        raise ConfigError(f"selection.budget: expected a budget option (conf/budget: smoke, "
                          f"demo, paper), got {budget!r}")
    recipe_choice = searched_recipe(str(first.path / "arch.yaml"), budget)
    composed = _compose_train(["arch=file", f"arch.path={first.path / 'arch.yaml'}",
                               f"budget={budget}", f"data={first.data_choice}",
                               *([f"recipe={recipe_choice}"] if recipe_choice else [])])
    recipe, _ = read_config(composed)
    data = data_config(first.data)
    if hasattr(data, "val_fraction"):
        data = dataclasses.replace(data, val_fraction=sel.val_fraction)
    return dataclasses.replace(
        recipe, data=data, budget=dataclasses.replace(recipe.budget, epochs=sel.epochs),
        trainer=dataclasses.replace(trainer, enable_progress_bar=False), logger=logger,
        export_onnx=False), recipe_choice


def select_best(sweep: Path, sel: SelectionConfig, trainer: Any, logger: Any) -> dict:
    """Train every search's result of `sweep` with one short recipe; write and return
    selection.json (the best by final validation top-1)."""
    from rich.console import Console
    from rich.table import Table

    from nas.arch import io
    from nas.evaluation import EvalJob, evaluate
    from nas.files import write_text_atomic

    sweep = Path(sweep)
    if (sweep / FINISHED).is_file():
        raise ConfigError(f"selection: {sweep / FINISHED} exists; the selection of this sweep "
                          f"is finished")
    searches = _searches(sweep)
    recipe, recipe_choice = _recipe(searches, sel, trainer, logger)
    jobs = [EvalJob(s.name, io.load(s.path / "arch.yaml"), s.seed) for s in searches]
    console = Console(stderr=True)
    console.print(f"Selection: {len(jobs)} searches, each trained {sel.epochs} epochs "
                  f"({recipe_choice or 'the default recipe'} at budget "
                  f"{sel.budget or searches[0].budget}), validated on "
                  f"{sel.val_fraction:.0%} of the training images")
    trained = evaluate(jobs, recipe, sweep / "selection", sel.evaluator,
                       report=lambda name, m, done, total: console.print(
                           f"[{done}/{total}] {name}: val top-1 "
                           f"{100 * m['final_val_top1']:.2f} %"))
    rows = {s.name: {"seed": s.seed, "params": trained[s.name]["params"],
                     "macs": trained[s.name]["macs"],
                     "val_top1": trained[s.name]["final_val_top1"],
                     "search_dir": str(s.path)} for s in searches}
    # The best validation; a tie keeps the earlier search (the sweep's order).
    best = max(rows, key=lambda name: rows[name]["val_top1"])
    chosen = next(s for s in searches if s.name == best)
    summary = {"epochs": sel.epochs, "budget": sel.budget or searches[0].budget,
               "recipe": recipe_choice, "val_fraction": sel.val_fraction, "searches": rows,
               "best": best, "arch_yaml": str(chosen.path / "arch.yaml"),
               "train_command": chosen.result.get("train_command")}
    table = Table(title=f"Selection after {sel.epochs} epochs (val top-1)")
    for col in ("search", "seed", "params", "MACs (M)", "val top-1 %"):
        table.add_column(col)
    for name, r in rows.items():
        table.add_row(("* " if name == best else "") + name, str(r["seed"]),
                      f"{r['params']:,}", f"{r['macs'] / 1e6:.2f}", f"{100 * r['val_top1']:.2f}")
    console.print(table)
    print(f"\nThe selected search: {chosen.path}\nTrain its network:\n  "
          f"{summary['train_command']}\n")
    write_text_atomic(sweep / FINISHED, json.dumps(summary, indent=1) + "\n")
    return summary


def _groups(config: DictConfig):
    from nas.trainer import LoggerConfig, TrainerConfig

    return (check(SelectionConfig, config.selection, "selection"),
            check(TrainerConfig, config.trainer, "trainer"),
            check(LoggerConfig, config.logger, "logger"))


class SelectBest(Callback):
    """At the end of a `nas.search` multirun: `select_best` on its sweep directory."""

    def on_run_start(self, config: DictConfig, **kwargs: Any) -> None:
        print("error: selection: a selection picks among the searches of a multirun; expected "
              "python -m nas.search -m ... selection=<option>", file=sys.stderr)
        sys.exit(2)

    def on_multirun_end(self, config: DictConfig, **kwargs: Any) -> None:
        from nas.training import USER_ERRORS

        try:
            select_best(Path(config.hydra.sweep.dir), *_groups(config))
        except USER_ERRORS as e:
            print(f"error: {e}", file=sys.stderr)
            sys.exit(2)


def main(argv: Optional[list[str]] = None) -> int:
    """`python -m nas.selection sweep=<dir>`: the selection of a finished multirun, with the
    settings it was started with (its multirun.yaml); finished trainings are kept."""
    from nas.training import USER_ERRORS

    argv = sys.argv[1:] if argv is None else argv
    if len(argv) != 1 or not argv[0].startswith("sweep="):
        print("error: usage: python -m nas.selection sweep=<the sweep directory of a nas.search "
              "multirun>", file=sys.stderr)
        return 2
    sweep = Path(argv[0].removeprefix("sweep="))
    saved = sweep / "multirun.yaml"
    try:
        if not saved.is_file():
            raise ConfigError(f"selection: {saved} is missing; expected the sweep directory "
                              f"of a nas.search multirun")
        config = OmegaConf.load(saved)
        if "selection" not in config:
            raise ConfigError(f"selection: {saved} has no selection settings; expected a "
                              f"multirun started with selection=<option>")
        select_best(sweep, *_groups(config))
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        return 2
    return 0


if __name__ == "__main__":
    sys.exit(main())
