"""The memory layout networks train in (`trainer.memory_format`): channels-last on the CPU.

oneDNN's depthwise and small-map convolutions run much faster on NHWC tensors. Measured
here (2-core CPU, one training step at batch 128 on 32x32 inputs): the AtomNAS demo
supernet 419 -> 176 ms, moga_a 245 -> 147 ms, atomnas_a 211 -> 136 ms. Outputs equal the
NCHW ones up to float32 rounding. `auto` keeps NCHW on GPUs, where it was not measured.

Converting the weights is enough: a conv with channels-last weights returns channels-last
outputs, and the layout flows through the network. Code that builds new layers during
training (AtomNAS shrinking, resuming a shrunk network) lays them out in the module's
`memory_format`, which the callback sets.
"""

from __future__ import annotations

import pytorch_lightning as pl
import torch

MEMORY_FORMATS = ("auto", "channels_last", "contiguous")


def resolve(name: str, device: torch.device) -> torch.memory_format:
    """The torch memory format `name` means on `device`."""
    if name not in MEMORY_FORMATS:
        raise ValueError(f"memory_format: expected one of {', '.join(MEMORY_FORMATS)}, "
                         f"got {name!r}")
    if name == "channels_last" or (name == "auto" and device.type == "cpu"):
        return torch.channels_last
    return torch.contiguous_format


def set_memory_format(module: torch.nn.Module, name: str,
                      device: torch.device) -> torch.memory_format:
    """Lay out the 4-D weights of `module` as `name` means on `device`; recorded on the module
    as `memory_format` for layers built later. Returns the format."""
    fmt = resolve(name, device)
    module.to(memory_format=fmt)
    module.memory_format = fmt
    return fmt


class MemoryFormat(pl.Callback):
    """Lays the LightningModule out at setup, before weight averaging copies it (so put this
    callback before a WeightAveraging one) and before the optimizer is built."""

    def __init__(self, name: str = "auto"):
        resolve(name, torch.device("cpu"))  # a bad name fails here, before training
        self.name = name

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        set_memory_format(pl_module, self.name, trainer.strategy.root_device)


def is_channels_last(t: torch.Tensor) -> bool:
    """Whether a 4-D tensor has channels-last strides (`is_contiguous` cannot tell for 1x1 and
    depthwise weights, whose size-1 dimensions make both layouts contiguous)."""
    return t.dim() == 4 and t.stride() == torch.empty(
        t.shape, memory_format=torch.channels_last, device="meta").stride()
