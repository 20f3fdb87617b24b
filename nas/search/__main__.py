"""`python -m nas.search method=<name>`: run a search, write its result, print the command
that trains it.

    python -m nas.search method=moga budget=smoke
    python -m nas.search -m method=moga method.nsga.weights=[0.4,0.4,0.2],[0.5,0.5,0]
    python -m nas.search method=atomnas                       # searches and trains in one run
    python -m nas.search -m method=atomnas method.lam=1.0e-4,1.2e-4,1.8e-4
    python -m nas.search resume_dir=runs/search/<run>         # continue a killed search

Bad input ends with one line on stderr and exit status 2.
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from hydra.core.hydra_config import HydraConfig
from omegaconf import DictConfig

from nas.cli import exit_on_unknown_choice
from nas.config import CONF_DIR


@hydra.main(config_path=str(CONF_DIR), config_name="search", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from nas.console import quiet_third_party
    quiet_third_party()
    from nas.search.runner import search
    from nas.training import USER_ERRORS

    hydra_cfg = HydraConfig.get()
    try:
        result = search(cfg, Path(hydra_cfg.runtime.output_dir),
                        hydra_cfg.runtime.choices.get("data", "embedded"))
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    return None if result is None else result.get("accuracy")


if __name__ == "__main__":
    exit_on_unknown_choice(CONF_DIR)
    main()
