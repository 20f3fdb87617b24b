"""A toy search method written outside `nas/`, as a new contributor would write one: a
random search over the MoGA space that trains each sampled candidate briefly with the
training library and selects the best validation accuracy.

It is found through its config alone (`_target_` in conf/method/toy.yaml, a directory put
on Hydra's search path); tests/test_method_contract.py runs it end to end.
"""

from __future__ import annotations

from dataclasses import dataclass

import torch

from nas.config import require
from nas.data import make_datamodule
from nas.methods.base import Method, SearchContext, SearchResult
from nas.methods.moga.search import moga_space
from nas.optim import OptimConfig
from nas.trainer import LoggerConfig
from nas.training import train_arch


@dataclass
class ToyConfig:
    name: str = "toy"
    candidates: int = 3     # architectures sampled and trained
    width: float = 0.25

    def __post_init__(self) -> None:
        require(self.candidates >= 1, "candidates", "an integer >= 1", self.candidates)


class ToySearch(Method):
    Config = ToyConfig
    recipe = "moga_a"

    def search(self, ctx: SearchContext) -> SearchResult | None:
        datamodule = make_datamodule(ctx.data)
        space = moga_space(width=self.cfg.width, stem_stride=2, init="torchvision",
                           num_classes=datamodule.num_classes,
                           input_size=datamodule.input_size)
        generator = torch.Generator().manual_seed(ctx.seed)
        scored = []
        for k in range(self.cfg.candidates):
            vector = space.sample(generator)
            metrics = train_arch(space.to_spec(vector, name=f"toy_{k}"), datamodule,
                                 optim=OptimConfig(), budget=ctx.budget, trainer=ctx.trainer,
                                 logger=LoggerConfig(csv=False, wandb=False),
                                 run_dir=ctx.run_dir / "candidates" / str(k), seed=ctx.seed,
                                 export=False)
            if metrics is None:  # not rank zero
                return None
            scored.append((metrics["final_val_top1"], k, vector))
        accuracy, best, vector = max(scored)
        return SearchResult(arch=space.to_spec(vector, name="toy_searched"),
                            metrics={"accuracy": accuracy, "genome": vector, "best": best,
                                     "candidates": len(scored)})
