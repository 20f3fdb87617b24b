"""`python -m nas.train`: stand-alone training of a published or searched architecture.

    python -m nas.train arch=moga_a budget=smoke
    python -m nas.train arch=file arch.path=runs/.../arch.yaml data=cifar10 data.root=...
    python -m nas.train -m arch=moga_a,moga_b,moga_c hydra/launcher=joblib

Every config group is checked before any work starts; bad input ends with one line on
stderr and exit status 2, and never touches an earlier run's files. The work itself is in
nas.training (importable, so multirun launchers can pickle it).
"""

from __future__ import annotations

import sys
from pathlib import Path

import hydra
from omegaconf import DictConfig

CONF_DIR = str(Path(__file__).resolve().parent.parent / "conf")


@hydra.main(config_path=CONF_DIR, config_name="train", version_base="1.3")
def main(cfg: DictConfig) -> float | None:
    from nas.training import USER_ERRORS, train

    try:
        metrics = train(cfg)
    except USER_ERRORS as e:
        print(f"error: {e}", file=sys.stderr)
        sys.exit(2)
    return metrics.get("best_val_top1")


if __name__ == "__main__":
    main()
