"""Network: what the training stage asks of a built network besides its forward.

A network family with training-time extras keeps them here, with the network, so the
generic classifier needs no knowledge of any family: DARTS cell networks add their
auxiliary head's loss and ramp their drop-path probability over the epochs.
"""

from __future__ import annotations

import torch
from torch import nn


class Network(nn.Module):
    """Base of every network `nas.arch.builder.build` returns."""

    def training_loss(self, output, target: torch.Tensor, criterion: nn.Module) -> torch.Tensor:
        """The loss of one training forward's `output` (what forward returned)."""
        return criterion(output, target)

    def start_epoch(self, epoch: int, epochs: int) -> None:
        """Called before training epoch `epoch` (from 0) of `epochs`."""
