"""`estimate=true`: a run's wall time predicted from a few timed steps of its own networks
on stand-in data, with the step counts of the whole run, without training or writing it."""

import json

import pytest

from nas.data import CifarConfig, EmbeddedConfig, make_datamodule
from nas.estimate import StandInDataModule, batches, duration, stand_in


def _estimate(run):
    return json.loads((run / "estimate.json").read_text())


def _counts(est):
    return {p["name"].split(": ")[-1]: p["count"] for p in est["phases"]}


def test_training_estimate_counts_the_runs_steps(run_entry, tmp_path):
    r = run_entry("nas.train", tmp_path, "arch=mobilenetv2_035", "budget=smoke",
                  "estimate=true")
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "run"
    est = _estimate(run)
    # smoke: 1 epoch of 4 batches, 2 validation and 2 test batches
    assert _counts(est) == {"training steps": 4, "validation steps": 2, "test steps": 2}
    assert est["sizes"] == {"name": "embedded", "train": 3500, "val": 500, "test": 1000,
                            "source": "read from the data"}
    assert est["predicted_seconds"] == pytest.approx(sum(p["total"] for p in est["phases"]),
                                                     abs=0.2)
    assert all(p["seconds"] > 0 for p in est["phases"])
    assert "predicted" in r.stderr and "training steps" in r.stderr
    assert not (run / "metrics.json").exists() and not (run / "checkpoints").exists()


def test_an_absent_data_set_is_estimated_at_its_published_size(run_entry, tmp_path):
    """CIFAR-10 not on disk: 45,000 training images after the 10 % validation split, 128 a
    batch with the last partial batch dropped, over the demo's 15 epochs."""
    r = run_entry("nas.train", tmp_path, "arch=mobilenetv2_035", "data=cifar10",
                  f"data.root={tmp_path / 'absent'}", "data.num_workers=0", "estimate=true")
    assert r.returncode == 0, r.stderr[-3000:]
    est = _estimate(tmp_path / "run")
    assert (est["sizes"]["train"], est["sizes"]["val"], est["sizes"]["test"]) == \
        (45_000, 5_000, 10_000)
    assert est["sizes"]["source"].startswith("published sizes")
    assert _counts(est) == {"training steps": 15 * (45_000 // 128),
                            "validation steps": 15 * -(-5_000 // 256),
                            "test steps": -(-10_000 // 256)}


@pytest.mark.parametrize("method", ["moga", "atomnas", "darts", "autonl", "rexnet"])
def test_every_search_estimates_itself(method, run_entry, tmp_path):
    r = run_entry("nas.search", tmp_path, f"method={method}", "budget=smoke", "estimate=true")
    assert r.returncode == 0, r.stderr[-3000:]
    run = tmp_path / "run"
    est = _estimate(run)
    assert est["predicted_seconds"] > 0 and est["phases"]
    assert any(p["name"].endswith("training steps") for p in est["phases"])
    assert not (run / "result.json").exists() and not (run / "checkpoints").exists()
    if method in ("moga", "atomnas"):
        assert est["left_out"]       # the stages outside a fit are named
    if method == "atomnas":          # smoke: 3 epochs of 4 batches, as the real run
        assert _counts(est)["training steps"] == 12
    if method == "rexnet":           # 4 candidates x 2 repeats, 1 epoch of 4 batches each
        assert _counts(est)["training steps"] == 8 * 4


def test_the_stand_in_has_the_real_shapes_and_sizes(tmp_path):
    real = make_datamodule(EmbeddedConfig(batch_size=32))
    module, sizes = stand_in(real)
    assert isinstance(module, StandInDataModule)
    assert (module.num_classes, module.input_size, module.in_channels) == (10, 32, 3)
    assert (sizes["train"], sizes["val"], sizes["test"]) == (3500, 500, 1000)
    assert len(module.train_dataloader()) == 3500 // 32
    x, y = next(iter(module.train_dataloader()))
    assert x.shape == (32, 3, 32, 32) and x.std() > 0.5 and len(set(y.tolist())) > 1
    train, held = module.search_dataloaders()       # the search split, as the real one's
    assert len(train.dataset) + len(held.dataset) == 3500
    absent = make_datamodule(CifarConfig(root=str(tmp_path / "none"), val_fraction=0.0))
    _, sizes = stand_in(absent)
    assert (sizes["train"], sizes["val"], sizes["test"]) == (50_000, 10_000, 10_000)


def test_batch_counts_and_durations():
    assert batches(351, 1.0) == 351 and batches(351, 4) == 4 and batches(351, 0.5) == 175
    assert duration(30) == "30.0 s" and duration(600) == "10.0 min"
    assert duration(5 * 3600) == "5.0 h" and duration(3 * 86400) == "3.0 days"
