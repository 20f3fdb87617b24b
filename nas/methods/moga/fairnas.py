"""FairNAS strict-fairness supernet training (used by MoGA).

Every step draws, for each searchable layer, a random permutation of its m choices and
trains the m single-path models it defines (model j takes the j-th entry of every
layer's permutation), each on its own slice of the batch by default, accumulating the
gradients into one optimizer update: every choice block is trained exactly once per step.
The permutations come from a generator seeded by (seed, step), so every DDP rank draws
the same paths without communication.
"""

from __future__ import annotations

from typing import Any

import pytorch_lightning as pl
import torch
from torch import nn

from nas.classifier import NonFiniteLoss
from nas.data.imagefolder import prepare_batch
from nas.methods.moga.supernet import ChainSupernet
from nas.optim import OptimConfig, lightning_optimizers
from nas.seeding import mix_seed
from nas.supernet.chain import ChainSearchSpace


def fair_paths(space: ChainSearchSpace, seed: int, step: int) -> list[list[int]]:
    """The m decision vectors of one FairNAS step (m = choices per layer, equal everywhere)."""
    counts = set(space.n_choices)
    if len(counts) != 1:
        raise ValueError(f"strict fairness needs the same number of choices in every layer, "
                         f"got {space.n_choices}")
    m = counts.pop()
    g = torch.Generator().manual_seed(mix_seed(seed, step))
    perms = [torch.randperm(m, generator=g).tolist() for _ in range(len(space))]
    return [[perm[j] for perm in perms] for j in range(m)]


class FairNASModule(pl.LightningModule):
    """Trains a ChainSupernet with strict fairness; `batch_size` is the per-path batch.

    With `same_batch` false (the default) the loader must deliver m * batch_size samples
    per step, split into m slices; with true, all m paths see the same batch. `weights`:
    the supernet's choice blocks, independent or entangled (nas.supernet.chain).
    """

    def __init__(self, space: ChainSearchSpace, optim: OptimConfig, *, batch_size: int,
                 seed: int = 0, same_batch: bool = False, weights: str = "independent"):
        super().__init__()
        self.space = space
        self.supernet = ChainSupernet(space, weights)
        self.optim_cfg = optim
        self.batch_size = batch_size
        self.seed = seed
        self.same_batch = same_batch
        self.m = space.n_choices[0]
        self.criterion = nn.CrossEntropyLoss(label_smoothing=optim.label_smoothing)

    def on_after_batch_transfer(self, batch: Any, dataloader_idx: int) -> Any:
        """uint8 image batches (nas.data.imagefolder) normalised where they arrived."""
        return prepare_batch(batch)

    def paths(self, step: int) -> list[list[int]]:
        return fair_paths(self.space, self.seed, step)

    def training_step(self, batch: Any, batch_idx: int) -> torch.Tensor:
        x, y = batch
        paths = self.paths(self.global_step)
        if self.same_batch:
            slices = [(x, y)] * self.m
        else:
            if x.shape[0] % self.m:
                raise ValueError(f"FairNAS: a batch of {x.shape[0]} cannot be split into "
                                 f"{self.m} equal slices; use a batch of m * batch_size")
            slices = list(zip(x.chunk(self.m), y.chunk(self.m)))
        # The sum of the m path losses has the gradient of m accumulated backward passes.
        loss = sum(self.criterion(self.supernet(xs, p), ys) for p, (xs, ys) in zip(paths, slices))
        if not torch.isfinite(loss):
            raise NonFiniteLoss(f"non-finite supernet loss ({loss.item()}) at step "
                                f"{self.global_step}; lower optim.lr")
        self.log("train/loss", loss / self.m, prog_bar=True, batch_size=x.shape[0])
        return loss

    def configure_optimizers(self) -> Any:
        return lightning_optimizers(self.trainer, self.supernet, self.optim_cfg,
                                    batch_size=self.batch_size)
