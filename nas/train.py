"""`python -m nas.train`: stand-alone training of a published or searched architecture.

    python -m nas.train arch=moga_a budget=smoke
    python -m nas.train arch=file arch.path=runs/.../arch.yaml data=cifar10 data.root=...
    python -m nas.train -m arch=moga_a,moga_b,moga_c hydra/launcher=joblib
    python -m nas.train arch=moga_a budget=paper data=imagenet estimate=true   # cost first

A thin wrapper over `nas.training.train_from_config` (the library works without Hydra).
Every config group is checked before any work starts; bad input ends with one line on
stderr and exit status 2, and never touches an earlier run's files.
"""

from __future__ import annotations

import json
import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nas.cli import exit_on_unknown_choice
from nas.config import CONF_DIR, ConfigError


def searched_recipe(arch_path: str, budget: str) -> str | None:
    """The recipe of the method that searched `arch_path` at `budget` (`recipe` in the
    result.json its search wrote beside it, conf/recipe/<budget>/<recipe>.yaml), as a
    `recipe=` option such as `paper/moga_a`. Every searched network has one at budget=paper
    (an error names what is missing); at other budgets it may have none (None)."""
    result = Path(arch_path).parent / "result.json"
    try:
        name = json.loads(result.read_text()).get("recipe")
    except (OSError, ValueError, AttributeError):
        name = None
    if isinstance(name, str) and (CONF_DIR / "recipe" / budget / f"{name}.yaml").is_file():
        return f"{budget}/{name}"
    if budget == "paper":
        raise ConfigError(f"budget=paper: {arch_path} is a searched architecture with no paper "
                          f"recipe recorded in {result}; choose one with recipe=paper/<zoo "
                          f"name> (the recipes are conf/recipe/paper/*.yaml, e.g. "
                          f"recipe=paper/moga_a)")
    return None


def with_search_recipe(cfg: DictConfig) -> DictConfig:
    """`arch=file` without `recipe=`: the config recomposed with the recipe its search recorded
    for this budget (values on the command line still win); any other config as it is."""
    hydra_cfg = HydraConfig.get()
    choices = hydra_cfg.runtime.choices
    budget = choices.get("budget")
    if choices.get("arch") != "file" or choices.get("recipe") != f"{budget}/file":
        return cfg
    recipe = searched_recipe(cfg.arch.get("path") or "", budget)
    if recipe is None:
        return cfg
    print(f"budget={budget}: training with recipe={recipe}, the recipe of its search")
    return hydra.compose(config_name="train",
                         overrides=[*hydra_cfg.overrides.task, f"recipe={recipe}"])


@hydra.main(config_path=str(CONF_DIR), config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from nas.console import quiet_third_party
    quiet_third_party()
    from nas.training import USER_ERRORS, print_summary, train_from_config

    try:
        metrics = train_from_config(with_search_recipe(cfg),
                                    Path(HydraConfig.get().runtime.output_dir))
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    if metrics is None or cfg.get("estimate"):  # not rank zero, or the estimate is printed
        return None
    print_summary(metrics)
    return metrics.get("best_val_top1")


if __name__ == "__main__":
    exit_on_unknown_choice(CONF_DIR)
    main()
