"""Random tensors of any shape and class count: throughput benchmarks and fast tests.

Generated once in `setup()` from `data_seed`, so two runs see the same data. Each class
adds its own fixed random pattern (scaled by `signal`) to unit noise, so a model can
actually learn it (a training test can expect the loss to fall); `signal: 0` is pure
noise. Samples are already roughly zero-mean/unit-std, so mean/std are 0/1.
"""

from __future__ import annotations

import dataclasses

import numpy as np
import torch

from nas.config import require
from nas.data.base import ImageDataModule, LoaderConfig, TensorImageDataset


@dataclasses.dataclass
class SyntheticConfig(LoaderConfig):
    """`data=synthetic`."""

    name: str = "synthetic"
    batch_size: int = 64
    eval_batch_size: int = 128
    num_classes: int = 10
    input_size: int = 32
    channels: int = 3
    train_size: int = 1024
    val_size: int = 256
    test_size: int = 256
    signal: float = 1.0

    def _names(self) -> tuple[str, ...]:
        return ("synthetic",)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.num_classes >= 1, "num_classes", "an integer >= 1", self.num_classes)
        require(1 <= self.input_size <= 2048, "input_size", "an integer in [1, 2048]",
                self.input_size)
        require(self.channels >= 1, "channels", "an integer >= 1", self.channels)
        for key in ("train_size", "val_size", "test_size"):
            require(getattr(self, key) >= 1, key, "an integer >= 1", getattr(self, key))
        require(self.signal >= 0, "signal", "a number >= 0", self.signal)


class SyntheticDataModule(ImageDataModule):
    """Train/val/test drawn from the same class patterns; no augmentation."""

    cfg: SyntheticConfig

    def __init__(self, cfg: SyntheticConfig):
        super().__init__(cfg)
        self.num_classes = cfg.num_classes
        self.input_size = cfg.input_size
        self.in_channels = cfg.channels
        self._mean, self._std = (0.0,) * cfg.channels, (1.0,) * cfg.channels

    def _load(self) -> None:
        cfg = self.cfg
        g = torch.Generator().manual_seed(cfg.data_seed)
        shape = (cfg.channels, cfg.input_size, cfg.input_size)
        patterns = torch.randn(cfg.num_classes, *shape, generator=g) * cfg.signal
        sets = []
        for n in (cfg.train_size, cfg.val_size, cfg.test_size):
            # Balanced labels in a random order.
            labels = (torch.arange(n) % cfg.num_classes)[torch.randperm(n, generator=g)]
            images = torch.randn(n, *shape, generator=g).add_(patterns[labels])
            sets.append(TensorImageDataset(images, labels, np.arange(n), self._mean,
                                           self._std))
        self._train, self._val_set, self._test_set = sets
        self._train_labels = self._train.labels.numpy()

    def train_dataset(self, indices: np.ndarray | None = None,
                      augment: bool = True) -> TensorImageDataset:
        self.setup()
        idx = np.arange(len(self.train_labels)) if indices is None else indices
        return TensorImageDataset(self._train.images, self._train.labels, idx, self._mean,
                                  self._std)
