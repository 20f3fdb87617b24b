"""Runs `nas.search method=atomnas` at the smoke scale in-process (for Lightning's DDP
launcher, which starts the other ranks by running this script again) and saves, on every
rank, what the search stage hands back: rank<r>.pt in the output directory.

    python tests/atomnas_ddp.py OUT [override ...]
"""

import os
import sys
from pathlib import Path

import torch
from hydra import compose, initialize_config_dir

import nas.methods.stage as stage
from nas.arch import io
from nas.config import CONF_DIR
from nas.search.runner import search


def main(out: Path, overrides: list[str]) -> None:
    handed = stage.hand_back

    def recording(supernet, name, **kw):
        exported = handed(supernet, name, **kw)
        rank = int(os.environ.get("LOCAL_RANK", "0"))
        torch.save({"arch_yaml": io.dumps(exported.spec), "state_dict": exported.state_dict},
                   out / f"rank{rank}.pt")
        return exported

    stage.hand_back = recording
    with initialize_config_dir(config_dir=str(CONF_DIR), version_base="1.3"):
        cfg = compose("search", overrides=["method=atomnas", "budget=smoke",
                                           "trainer.enable_progress_bar=false",
                                           "logger=none", *overrides])
    search(cfg, out / "run", "embedded")


if __name__ == "__main__":
    main(Path(sys.argv[1]), sys.argv[2:])
