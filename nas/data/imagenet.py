"""ImageNet (or any ImageFolder-layout set) through torchvision, the optional `vision` extra.

torchvision is imported only in `setup()`, so the core never needs it. The folder layout
is checked before torchvision is asked for, so a wrong `data.root` is reported as such.
The `val/` folder serves as both validation and test set (ImageNet's labelled test set
is its validation set); searches hold out part of `train/` instead.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import numpy as np
from omegaconf import MISSING
from torch.utils.data import Dataset

from nas.config import require
from nas.data.base import (DataError, ImageDataModule, LoaderConfig, sample_randomness,
                           split_key)

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)
VISION_EXTRA = "pip install -c constraints.txt -e \".[vision]\""


@dataclasses.dataclass
class ImageNetConfig(LoaderConfig):
    """`data=imagenet`; `data.root=...` is required, num_classes must match train/."""

    name: str = "imagenet"
    root: str = MISSING
    num_classes: int = 1000
    input_size: int = 224
    crop_pct: float = 0.875
    min_scale: float = 0.08
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
                "a fraction in (0, 1] (RandomResizedCrop's smallest area)", self.min_scale)


def expected_layout(root: Path) -> str:
    return f"ImageFolder layout {root}/train/<class>/*.JPEG and {root}/val/<class>/*.JPEG"


def import_torchvision():
    try:
        import torchvision
    except ImportError:
        raise DataError("data.name=imagenet needs torchvision, in the optional `vision` extra: "
                        f"{VISION_EXTRA}") from None
    return torchvision


class _Transformed(Dataset):
    """A subset of an untransformed ImageFolder seen through one transform.

    One folder scan (slow at ImageNet scale) serves augmented and eval views alike.
    """

    def __init__(self, folder, indices: np.ndarray, transform):
        self.folder, self.indices, self.transform = folder, indices, transform

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key):
        i, seed = split_key(key)
        image, label = self.folder[int(self.indices[i])]
        with sample_randomness(seed):
            return self.transform(image), label


class ImageNetDataModule(ImageDataModule):
    """RandomResizedCrop + flip for training; resize to input_size/crop_pct + center crop."""

    cfg: ImageNetConfig

    def __init__(self, cfg: ImageNetConfig):
        super().__init__(cfg)
        self.num_classes = cfg.num_classes
        self.input_size = cfg.input_size
        self.in_channels = 3
        self._mean, self._std = IMAGENET_MEAN, IMAGENET_STD
        self.root = Path(cfg.root).expanduser()
        self.classes: list[str] = []

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
        tv = import_torchvision()
        T = tv.transforms
        train = tv.datasets.ImageFolder(str(self.root / "train"))
        val = tv.datasets.ImageFolder(str(self.root / "val"))
        if len(train.classes) != self.num_classes:
            raise DataError(f"imagenet: {self.root / 'train'} has {len(train.classes)} class "
                            f"folders but data.num_classes={self.num_classes}; set "
                            f"data.num_classes={len(train.classes)}")
        if val.classes != train.classes:
            raise DataError(f"imagenet: the class folders of {self.root / 'val'} differ from "
                            f"those of {self.root / 'train'}")
        self.classes = list(train.classes)
        normalize = T.Normalize(self._mean, self._std)
        self._train_tf = T.Compose([
            T.RandomResizedCrop(self.input_size, scale=(self.cfg.min_scale, 1.0)),
            T.RandomHorizontalFlip(), T.ToTensor(), normalize])
        self._eval_tf = T.Compose([
            T.Resize(int(self.input_size / self.cfg.crop_pct)), T.CenterCrop(self.input_size),
            T.ToTensor(), normalize])
        self._train_folder = train
        self._train_labels = np.asarray(train.targets, dtype=np.int64)
        self._val_set = _Transformed(val, np.arange(len(val)), self._eval_tf)
        self._test_set = self._val_set

    def train_dataset(self, indices: np.ndarray | None = None, augment: bool = True) -> Dataset:
        self.setup()
        idx = np.arange(len(self.train_labels)) if indices is None else indices
        return _Transformed(self._train_folder, idx,
                            self._train_tf if augment else self._eval_tf)
