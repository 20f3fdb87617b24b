"""An ImageFolder tree read with Pillow: the folder scan, the ImageNet crops, the decoding.

The core reads ImageNet without torchvision, so the loader that paper-scale runs depend on
is the one the tests exercise on real JPEG files. The crops are the usual ones:
training takes a random box of 8-100 % of the area (`min_scale`) with an aspect ratio in
[3/4, 4/3] (10 tries, then the largest centred box of an allowed ratio) and a horizontal
flip; evaluation takes the centred `input_size` window of the image resized so that its
shorter side is `input_size / crop_pct`, in one Pillow resize of the box that becomes that
window, so the resized image is never made. Given the same box, both equal torchvision's
transforms of PIL images to within one 8-bit level (antialiased resizes; tested in
tests/test_data.py where torchvision imports).

Normalised in the workers, every batch is four times larger to hand over (the loader gave
a fifth more images per second on two cores without it: docs/training.md#imagenet-loader).
So a set may give its images raw (uint8), and `prepare_batch`
normalises them where the batch has arrived: every training, validation and test step
(the Lightning modules' `on_after_batch_transfer`), BN recalibration and MoGA's scoring
call it. A uint8 image batch means 8-bit RGB to be normalised with MEAN and STD.
"""

from __future__ import annotations

import math
import os
from pathlib import Path
from typing import Sequence

import numpy as np
import torch
from torch.utils.data import Dataset

from nas.data.base import DataError, sample_randomness, split_key

# What torchvision's ImageFolder accepts, compared without case.
IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png", ".ppm", ".bmp", ".pgm", ".tif", ".tiff", ".webp")
INTERPOLATIONS = ("bilinear", "bicubic")
RATIO = (3 / 4, 4 / 3)
# ImageNet's per-channel statistics, the normalisation of every ImageFolder set
MEAN = (0.485, 0.456, 0.406)
STD = (0.229, 0.224, 0.225)
# (x / 255 - mean) / std as one subtraction and one multiplication
_SHIFT = torch.tensor(MEAN, dtype=torch.float32).view(3, 1, 1) * 255.0
_SCALE = 1.0 / (torch.tensor(STD, dtype=torch.float32).view(3, 1, 1) * 255.0)
_ON_DEVICE: dict[torch.device, tuple[torch.Tensor, torch.Tensor]] = {}


def normalize(x: torch.Tensor) -> torch.Tensor:
    """8-bit RGB images (..., 3, H, W) as float32 normalised with MEAN and STD, on x's device
    (the same arithmetic wherever it runs, so the same tensor as a worker's on the CPU)."""
    if x.device not in _ON_DEVICE:   # copied to a GPU once, not at every batch
        _ON_DEVICE[x.device] = (_SHIFT.to(x.device), _SCALE.to(x.device))
    shift, scale = _ON_DEVICE[x.device]
    return x.float().sub_(shift).mul_(scale)


def prepare_batch(batch):
    """`batch` (a tensor, or tuples, lists and dicts of them) with its uint8 images
    normalised; float images and labels pass as they are."""
    if isinstance(batch, torch.Tensor):
        return normalize(batch) if batch.dtype == torch.uint8 and batch.dim() >= 3 else batch
    if isinstance(batch, (list, tuple)):
        return type(batch)(prepare_batch(b) for b in batch)
    if isinstance(batch, dict):
        return {k: prepare_batch(v) for k, v in batch.items()}
    return batch


def scan(folder: Path, what: str) -> tuple[list[str], list[str], np.ndarray]:
    """(class names, file paths, labels) of `folder`/<class>/**/<image>, classes and files
    in sorted order; a class folder without an image is a DataError naming it."""
    classes = sorted(e.name for e in os.scandir(folder) if e.is_dir())
    paths: list[str] = []
    labels: list[int] = []
    for label, name in enumerate(classes):
        found = sorted(
            os.path.join(top, f)
            for top, _, files in os.walk(folder / name, followlinks=True)
            for f in files if f.lower().endswith(IMAGE_EXTENSIONS))
        if not found:
            raise DataError(f"{what}: {folder / name} holds no image "
                            f"(expected files ending in {', '.join(IMAGE_EXTENSIONS)})")
        paths += found
        labels += [label] * len(found)
    return classes, paths, np.asarray(labels, dtype=np.int64)


def random_box(width: int, height: int, min_scale: float) -> tuple[int, int, int, int]:
    """A random (left, top, right, bottom) box of min_scale-1 of the area, ratio in RATIO.

    Ten tries of (area, log-uniform ratio) that fit the image; then the largest centred
    box whose ratio is in RATIO. Draws from torch's CPU generator (seeded per sample).
    """
    area = width * height
    log_lo, log_hi = math.log(RATIO[0]), math.log(RATIO[1])
    for _ in range(10):
        target = area * float(torch.empty(1).uniform_(min_scale, 1.0))
        ratio = math.exp(float(torch.empty(1).uniform_(log_lo, log_hi)))
        w = int(round(math.sqrt(target * ratio)))
        h = int(round(math.sqrt(target / ratio)))
        if 0 < w <= width and 0 < h <= height:
            top = int(torch.randint(0, height - h + 1, (1,)))
            left = int(torch.randint(0, width - w + 1, (1,)))
            return left, top, left + w, top + h
    if width / height < RATIO[0]:
        w, h = width, int(round(width / RATIO[0]))
    elif width / height > RATIO[1]:
        w, h = int(round(height * RATIO[1])), height
    else:
        w, h = width, height
    left, top = (width - w) // 2, (height - h) // 2
    return left, top, left + w, top + h


def center_box(width: int, height: int, size: int, crop_pct: float
               ) -> tuple[float, float, float, float]:
    """The box of the original image that becomes the centred size x size window after the
    shorter side is resized to int(size / crop_pct) (the longer one in proportion, rounded
    down): each axis keeps its own scale, so the one resize equals resize-then-crop."""
    short = int(size / crop_pct)
    new_w, new_h = (short, int(short * height / width)) if width <= height else \
        (int(short * width / height), short)
    sx, sy = new_w / width, new_h / height
    left, top = int(round((new_w - size) / 2.0)), int(round((new_h - size) / 2.0))
    return left / sx, top / sy, (left + size) / sx, (top + size) / sy


class ImageFolderSet(Dataset):
    """Files of a scanned folder (seen through `indices`) as normalised (3, size, size)
    float tensors, or uint8 ones with `raw` (for `prepare_batch`): the training crop and
    flip with `augment`, the centred crop without.

    Augmentation runs under the sample's seed (`sample_randomness`), so the same key gives
    the same tensor in any worker, process or run.
    """

    def __init__(self, paths: Sequence[str], labels: np.ndarray, indices: np.ndarray,
                 size: int, augment: bool, min_scale: float, crop_pct: float,
                 interpolation: str, raw: bool, what: str):
        from PIL import Image

        self.paths, self.labels, self.indices = paths, labels, indices
        self.size, self.augment, self.raw = size, augment, raw
        self.min_scale, self.crop_pct, self.what = min_scale, crop_pct, what
        self.resample = {"bilinear": Image.Resampling.BILINEAR,
                         "bicubic": Image.Resampling.BICUBIC}[interpolation]

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, key) -> tuple[torch.Tensor, int]:
        i, seed = split_key(key)
        j = int(self.indices[i])
        with sample_randomness(seed):
            return self.load(self.paths[j]), int(self.labels[j])

    def load(self, path: str) -> torch.Tensor:
        """One file through the crop, the optional flip and (unless raw) the normalisation."""
        from PIL import Image

        try:
            with Image.open(path) as img:
                img = img.convert("RGB")
        except (OSError, ValueError) as e:   # PIL's UnidentifiedImageError is an OSError
            raise DataError(f"{self.what}: cannot decode {path} as an image "
                            f"({type(e).__name__}: {e}); expected a readable image file") \
                from None
        if self.augment:   # as torchvision's RandomResizedCrop: the crop's edges clamp
            img = img.crop(random_box(img.width, img.height, self.min_scale))
            img = img.resize((self.size, self.size), self.resample)
        else:
            img = img.resize((self.size, self.size), self.resample,
                             box=center_box(img.width, img.height, self.size, self.crop_pct))
        if self.augment and bool(torch.rand(()) < 0.5):
            img = img.transpose(Image.Transpose.FLIP_LEFT_RIGHT)
        # CHW in uint8 first: converting the strided view to float costs twice as much
        x = torch.from_numpy(np.array(img, dtype=np.uint8)).permute(2, 0, 1).contiguous()
        return x if self.raw else normalize(x)
