"""Training randomness fixed by (seed, epoch, rank), so a run resumed from an epoch-end
checkpoint draws exactly what the uninterrupted run draws from there on.

Lightning restores the weights, optimizer, schedulers, loops and callbacks from a
checkpoint, but not the random streams: a resumed run would replay the dropout, drop-path
and path-sampling draws of its first epochs. `EpochSeed` reseeds Python, NumPy and torch
at every training epoch start from (seed, epoch, global rank) instead; the data order and
augmentation are fixed per epoch by `nas.data.base.EpochSampler`.
"""

from __future__ import annotations

import random

import numpy as np
import pytorch_lightning as pl
import torch
from pytorch_lightning.callbacks import Callback


MASK64 = (1 << 64) - 1


def mix_seed(*values: int) -> int:
    """A 63-bit seed from integers, by SplitMix64 steps: spelled out, so seeds do not hang
    on Python's hash function, and neighbouring inputs give unrelated seeds."""
    z = 0x9E3779B97F4A7C15
    for v in values:
        z = (z ^ (int(v) & MASK64)) + 0x9E3779B97F4A7C15 & MASK64
        z = (z ^ (z >> 30)) * 0xBF58476D1CE4E5B9 & MASK64
        z = (z ^ (z >> 27)) * 0x94D049BB133111EB & MASK64
        z ^= z >> 31
    return z >> 1


def derived_seed(*values: int) -> int:
    """A run seed (32 bits: NumPy and Lightning's seed_everything accept no more) derived
    from a run's seed and the indices of a stream, such as a training's repeat."""
    return mix_seed(*values) & 0xFFFF_FFFF


def epoch_seed(seed: int, epoch: int, rank: int = 0) -> int:
    """The seed of one epoch on one process."""
    return derived_seed(seed, epoch, rank)


class EpochSeed(Callback):
    """Reseeds every random stream at each training epoch start (before the module's hook)."""

    def __init__(self, seed: int):
        self.seed = int(seed)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        s = epoch_seed(self.seed, trainer.current_epoch, trainer.global_rank)
        random.seed(s)
        np.random.seed(s)
        torch.manual_seed(s)
