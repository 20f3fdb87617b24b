"""Weight EMA as TensorFlow's ExponentialMovingAverage(decay, num_updates=step) does it.

MnasNet-style recipes (MoGA, AutoNL, AtomNAS) evaluate with EMA weights. TF caps the decay
at (1 + n) / (10 + n) for the n-th update, so short runs average recent weights instead
of staying near the initialisation; torch's fixed-decay EMA does not, so this callback
supplies the TF rule to Lightning's WeightAveraging (which swaps the averaged weights in
for validation, stores them as the checkpoint's state_dict, and keeps them after fit).
"""

from __future__ import annotations

import torch
from pytorch_lightning.callbacks import WeightAveraging


def tf_ema_decay(decay: float, num_updates: int) -> float:
    return min(decay, (1.0 + num_updates) / (10.0 + num_updates))


class TFEMA(WeightAveraging):
    """EMA of parameters and buffers, updated after every optimizer step."""

    def __init__(self, decay: float):
        def avg_fn(averaged: torch.Tensor, current: torch.Tensor, num_averaged) -> torch.Tensor:
            d = tf_ema_decay(decay, int(num_averaged))
            return averaged * d + current * (1.0 - d)

        super().__init__(use_buffers=True, avg_fn=avg_fn)
        self.decay = decay
