"""BN recalibration: re-estimate BatchNorm statistics for the weights being evaluated.

After shrinking (AtomNAS), sampling a path (one-shot supernets) or averaging weights (EMA),
the running statistics no longer match the network; they are reset and re-estimated
as a cumulative average (momentum None) over a few training batches.
"""

from __future__ import annotations

from typing import Iterable

import torch
from torch import nn

from nas.data.imagefolder import prepare_batch


@torch.no_grad()
def recalibrate_bn(model: nn.Module, batches: Iterable, steps: int,
                   device: torch.device | str | None = None) -> int:
    """Reset every BN's running stats and average them over `steps` batches (inputs only).

    Returns the number of batches used. Dropout and the like stay in eval mode; only the
    BN layers run in training mode so they collect statistics.
    """
    bns = [m for m in model.modules() if isinstance(m, nn.modules.batchnorm._BatchNorm)]
    if not bns or steps <= 0:
        return 0
    was_training = model.training
    momenta = [bn.momentum for bn in bns]
    model.eval()
    for bn in bns:
        bn.reset_running_stats()
        bn.momentum = None  # cumulative moving average
        bn.train()
    used = 0
    for batch in batches:
        if used >= steps:
            break
        x = batch[0] if isinstance(batch, (list, tuple)) else batch
        model(prepare_batch(x.to(device) if device is not None else x))
        used += 1
    for bn, m in zip(bns, momenta):
        bn.momentum = m
    model.train(was_training)
    return used
