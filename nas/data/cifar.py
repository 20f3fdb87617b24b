"""CIFAR-10 / CIFAR-100 from the standard python-pickle files under `data.root`.

Read directly (pickle + numpy), augmented with torch ops, so CIFAR needs no torchvision;
torchvision is used only to download, when `data.download=true` on a machine online.
Validation is a class-balanced part of the training batches (`val_fraction`), so the test
batch stays untouched until the end; `val_fraction: 0` validates on the test batch (the
DARTS-paper protocol).
"""

from __future__ import annotations

import dataclasses
import pickle
from pathlib import Path

import numpy as np
import torch
from omegaconf import MISSING

from nas.config import require
from nas.data.base import (DataError, ImageDataModule, LoaderConfig, TensorImageDataset,
                           stratified_split)

# name -> folder, training files, test file, meta file, label key, label-names key,
# classes, mean, std (per channel of the training images in [0,1], as DARTS uses)
LAYOUTS = {
    "cifar10": dict(folder="cifar-10-batches-py",
                    train=[f"data_batch_{i}" for i in range(1, 6)], test="test_batch",
                    meta="batches.meta", labels=b"labels", names=b"label_names",
                    num_classes=10, mean=(0.49139968, 0.48215827, 0.44653124),
                    std=(0.24703233, 0.24348505, 0.26158768), layout="data_batch_1..5, "
                    "test_batch, batches.meta"),
    "cifar100": dict(folder="cifar-100-python", train=["train"], test="test", meta="meta",
                     labels=b"fine_labels", names=b"fine_label_names", num_classes=100,
                     mean=(0.50707516, 0.48654887, 0.44091784),
                     std=(0.26733429, 0.25643846, 0.27615047), layout="train, test, meta"),
}


@dataclasses.dataclass
class CifarConfig(LoaderConfig):
    """`data=cifar10` or `data=cifar100`; `data.root=...` is required."""

    name: str = "cifar10"
    root: str = MISSING
    download: bool = False
    val_fraction: float = 0.1
    augment: bool = True
    cutout: int = 0
    num_workers: int = 2

    def _names(self) -> tuple[str, ...]:
        return tuple(LAYOUTS)

    def nominal_sizes(self) -> tuple[int, int, int]:
        """50,000 training and 10,000 test images; validation carved from training, or the
        test batch when val_fraction is 0."""
        val = round(50_000 * self.val_fraction)
        return 50_000 - val, val or 10_000, 10_000

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.root.strip()), "root", "the directory holding "
                f"{LAYOUTS[self.name]['folder']}/", self.root)
        require(0.0 <= self.val_fraction < 1.0, "val_fraction",
                "a fraction in [0, 1) of the training batches (0 = validate on the test batch)",
                self.val_fraction)
        require(0 <= self.cutout <= 32, "cutout", "a square side in [0, 32] (0 = off)",
                self.cutout)


def expected_layout(name: str, root: Path) -> str:
    spec = LAYOUTS[name]
    return f"{root / spec['folder']}/{{{spec['layout']}}} (the python version of {name})"


# The only callables a CIFAR pickle (a dict of bytes, lists and one uint8 array) names: how
# numpy rebuilds an array. Anything else, such as os.system, is refused before it is loaded.
_ARRAY_GLOBALS = {(module, name) for module in ("numpy.core.multiarray", "numpy._core.multiarray")
                  for name in ("_reconstruct", "scalar")} | {("numpy", "ndarray"),
                                                              ("numpy", "dtype"),
                                                              ("_codecs", "encode")}


class _PlainDataUnpickler(pickle.Unpickler):
    """Unpickles plain data and numpy arrays only: reading a file cannot run code."""

    def find_class(self, module: str, name: str):
        if (module, name) not in _ARRAY_GLOBALS:
            raise pickle.UnpicklingError(f"it names {module}.{name}, which a CIFAR pickle "
                                         f"never holds")
        return super().find_class(module, name)


def read_pickle(path: Path, label_key: bytes | None) -> dict:
    """One CIFAR pickle, read through _PlainDataUnpickler; data checked to be uint8 N x 3072
    with N labels."""
    try:
        with open(path, "rb") as f:
            d = _PlainDataUnpickler(f, encoding="bytes").load()
        if not isinstance(d, dict):
            raise ValueError(f"a {type(d).__name__}, not a dict")
        if label_key is None:
            return d
        missing = [k.decode() for k in (b"data", label_key) if k not in d]
        if missing:
            raise ValueError(f"no {' / '.join(missing)} entry")
        data = np.asarray(d[b"data"])
        labels = np.asarray(d[label_key])
        if data.dtype != np.uint8 or data.ndim != 2 or data.shape[1] != 3072:
            raise ValueError(f"data is {data.dtype} {data.shape}, expected uint8 N x 3072")
        if labels.shape != (len(data),):
            raise ValueError(f"{len(labels)} labels for {len(data)} images")
    except (pickle.UnpicklingError, EOFError, ValueError, TypeError, AttributeError,
            ImportError, IndexError, KeyError, MemoryError) as e:
        reason = str(e).splitlines()[0] if str(e) else type(e).__name__
        raise DataError(f"{path}: not a CIFAR python pickle ({reason}); delete it and "
                        f"re-download") from None
    return {"data": data, "labels": labels.astype(np.int64)}


def download(name: str, root: Path) -> None:
    """Fetch the python-pickle archive with torchvision (the `vision` extra)."""
    try:
        import torchvision.datasets as tvd
    except ImportError:
        raise DataError("data.download=true needs torchvision, in the optional `vision` "
                        "extra: pip install -c constraints.txt -e \".[vision]\"") from None
    cls = tvd.CIFAR10 if name == "cifar10" else tvd.CIFAR100
    root.mkdir(parents=True, exist_ok=True)
    for train in (True, False):
        cls(str(root), train=train, download=True)


class CifarDataModule(ImageDataModule):
    """CIFAR-10/100: 32x32 RGB; crop with 4-px zero padding + flip (+ cutout) for training."""

    cfg: CifarConfig

    def __init__(self, cfg: CifarConfig):
        super().__init__(cfg)
        spec = LAYOUTS[cfg.name]
        self.num_classes = spec["num_classes"]
        self.input_size = 32
        self.in_channels = 3
        self._mean, self._std = spec["mean"], spec["std"]
        self.root = Path(cfg.root).expanduser()
        self.folder = self.root / spec["folder"]
        self.classes: list[str] = []
        self.split_indices: dict[str, np.ndarray] = {}

    def files(self) -> list[Path]:
        spec = LAYOUTS[self.name]
        return [self.folder / f for f in (*spec["train"], spec["test"], spec["meta"])]

    def _missing(self) -> list[Path]:
        return [p for p in self.files() if not p.is_file()]

    def prepare_data(self) -> None:
        if self.cfg.download and self._missing():
            download(self.name, self.root)

    def _load(self) -> None:
        spec = LAYOUTS[self.name]
        if self._missing():
            self.prepare_data()
        missing = self._missing()
        if missing:
            raise DataError(f"{self.name}: missing {missing[0]}; expected "
                            f"{expected_layout(self.name, self.root)}; set data.download=true "
                            f"on a machine that is online")
        parts = [read_pickle(self.folder / f, spec["labels"]) for f in spec["train"]]
        test = read_pickle(self.folder / spec["test"], spec["labels"])
        meta = read_pickle(self.folder / spec["meta"], None)
        names = meta.get(spec["names"])
        if not isinstance(names, (list, tuple)) or len(names) != self.num_classes:
            raise DataError(f"{self.folder / spec['meta']}: not a {self.name} meta pickle "
                            f"(expected {self.num_classes} {spec['names'].decode()}); delete "
                            f"it and re-download")
        self.classes = [n.decode() if isinstance(n, bytes) else str(n) for n in names]
        train_x = np.concatenate([p["data"] for p in parts])
        train_y = np.concatenate([p["labels"] for p in parts])
        for f, y in ((spec["train"][0], train_y), (spec["test"], test["labels"])):
            if len(y) and (y.min() < 0 or y.max() >= self.num_classes):
                raise DataError(f"{self.folder / f}: labels outside 0..{self.num_classes - 1}")
        self.images = torch.from_numpy(train_x.reshape(-1, 3, 32, 32))
        self.labels = torch.from_numpy(train_y)
        self.test_images = torch.from_numpy(test["data"].reshape(-1, 3, 32, 32))
        self.test_labels = torch.from_numpy(test["labels"])
        if self.cfg.val_fraction > 0:
            val, train = stratified_split(train_y, len(train_y), [self.cfg.val_fraction],
                                          self.cfg.data_seed)
        else:
            val, train = np.zeros(0, dtype=np.int64), np.arange(len(train_y))
        self.split_indices = {"train": train, "val": val}
        self._train_labels = train_y[train]
        self._test_set = TensorImageDataset(self.test_images, self.test_labels,
                                           np.arange(len(self.test_labels)), self._mean,
                                           self._std)
        self._val_set = (TensorImageDataset(self.images, self.labels, val, self._mean, self._std)
                        if len(val) else self._test_set)

    def train_dataset(self, indices: np.ndarray | None = None,
                      augment: bool = True) -> TensorImageDataset:
        self.setup()
        train = self.split_indices["train"]
        aug = augment and self.cfg.augment
        return TensorImageDataset(self.images, self.labels,
                                  train if indices is None else train[indices], self._mean,
                                  self._std, crop_padding=4 if aug else 0, flip=aug,
                                  cutout=self.cfg.cutout if aug else 0)
