"""ImageNet (or any ImageFolder-layout set), read with Pillow (`nas.data.imagefolder`).

The folder layout is checked before any file is read, so a wrong `data.root` is reported
as such. The `val/` folder serves as both validation and test set (ImageNet's labelled
test set is its validation set); searches hold out part of `train/` instead.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
import torch
from omegaconf import MISSING
from torch.utils.data import Dataset

from nas.config import require
from nas.data.base import DataError, ImageDataModule, LoaderConfig
from nas.data.imagefolder import INTERPOLATIONS, MEAN, STD, ImageFolderSet, scan

# Where the images are normalised: `workers` (float batches), `device` (uint8 batches,
# normalised where they arrive: `prepare_batch`), `auto` (device where CUDA is, as pinning).
NORMALIZE_ON = ("auto", "workers", "device")


@dataclasses.dataclass
class ImageNetConfig(LoaderConfig):
    """`data=imagenet`; `data.root=...` is required, num_classes must match train/."""

    name: str = "imagenet"
    root: str = MISSING
    num_classes: int = 1000
    input_size: int = 224
    crop_pct: float = 0.875
    min_scale: float = 0.08
    interpolation: str = "bilinear"
    normalize_on: str = "auto"
    num_workers: int = 8

    def _names(self) -> tuple[str, ...]:
        return ("imagenet",)

    def nominal_sizes(self) -> tuple[int, int, int]:
        """ILSVRC-2012: 1,281,167 training images, 50,000 validation images (the val/ folder
        is validation and test alike), in proportion for a subset of the classes."""
        share = self.num_classes / 1000
        return round(1_281_167 * share), round(50_000 * share), round(50_000 * share)

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.root.strip()), "root", "the directory holding train/ and val/",
                self.root)
        require(self.num_classes >= 2, "num_classes", "an integer >= 2", self.num_classes)
        require(16 <= self.input_size <= 2048, "input_size", "an integer in [16, 2048]",
                self.input_size)
        require(0.0 < self.crop_pct <= 1.0, "crop_pct",
                "a fraction in (0, 1] (eval resize = input_size / crop_pct)", self.crop_pct)
        require(0.0 < self.min_scale <= 1.0, "min_scale",
                "a fraction in (0, 1] (the training crop's smallest area)", self.min_scale)
        require(self.interpolation in INTERPOLATIONS, "interpolation",
                "one of " + ", ".join(INTERPOLATIONS), self.interpolation)
        require(self.normalize_on in NORMALIZE_ON, "normalize_on",
                "one of " + ", ".join(NORMALIZE_ON), self.normalize_on)

    def raw_batches(self) -> bool:
        """Whether the loaders give uint8 images (normalised after the transfer)."""
        if self.normalize_on == "auto":
            return torch.cuda.is_available()
        return self.normalize_on == "device"


def expected_layout(root: Path) -> str:
    return f"ImageFolder layout {root}/train/<class>/*.JPEG and {root}/val/<class>/*.JPEG"


class ImageNetDataModule(ImageDataModule):
    """The random crop + flip for training; resize to input_size/crop_pct + centre crop for
    evaluation (`nas.data.imagefolder`)."""

    cfg: ImageNetConfig

    def __init__(self, cfg: ImageNetConfig):
        super().__init__(cfg)
        self.num_classes = cfg.num_classes
        self.input_size = cfg.input_size
        self.in_channels = 3
        self._mean, self._std = MEAN, STD
        self.root = Path(cfg.root).expanduser()
        self.classes: list[str] = []
        self._train_paths: list[str] = []

    def check_layout(self) -> None:
        """One-line DataError naming the first missing or empty folder."""
        for sub in ("train", "val"):
            path = self.root / sub
            if not path.is_dir():
                raise DataError(f"imagenet: missing {path}; expected the "
                                f"{expected_layout(self.root)}")
            if not any(p.is_dir() for p in path.iterdir()):
                raise DataError(f"imagenet: {path} has no class folders; expected the "
                                f"{expected_layout(self.root)}")

    def _load(self) -> None:
        self.check_layout()
        classes, paths, labels = scan(self.root / "train", "imagenet")
        if len(classes) != self.num_classes:
            raise DataError(f"imagenet: {self.root / 'train'} has {len(classes)} class "
                            f"folders but data.num_classes={self.num_classes}; set "
                            f"data.num_classes={len(classes)}")
        val_classes, val_paths, val_labels = scan(self.root / "val", "imagenet")
        if val_classes != classes:
            raise DataError(f"imagenet: the class folders of {self.root / 'val'} differ from "
                            f"those of {self.root / 'train'}")
        self.classes = classes
        self._train_paths, self._train_labels = paths, labels
        self._val_set = self._set(val_paths, val_labels, np.arange(len(val_paths)), False)
        self._test_set = self._val_set

    def _set(self, paths: list[str], labels: np.ndarray, indices: np.ndarray,
             augment: bool) -> ImageFolderSet:
        c = self.cfg
        return ImageFolderSet(paths, labels, indices, c.input_size, augment, c.min_scale,
                              c.crop_pct, c.interpolation, c.raw_batches(), "imagenet")

    def train_dataset(self, indices: np.ndarray | None = None, augment: bool = True) -> Dataset:
        self.setup()
        idx = np.arange(len(self.train_labels)) if indices is None else indices
        return self._set(self._train_paths, self._train_labels, idx, augment)
