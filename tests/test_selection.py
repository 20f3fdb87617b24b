"""DARTS's selection protocol (nas.selection): a multirun of searches, each result trained
for a short schedule, the best by validation top-1; resumable; bad sweeps refused."""

import json
import os
import shutil
import subprocess
import sys

import pytest
from omegaconf import OmegaConf

from conftest import REPO
from nas.config import ConfigError
from nas.selection import SelectionConfig, _searches


def _selection(*args, cwd):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    return subprocess.run([sys.executable, "-m", "nas.selection", *args], cwd=cwd,
                          env=env, capture_output=True, text=True, timeout=600)


@pytest.fixture(scope="module")
def selected(tmp_path_factory):
    """`nas.search -m method=darts budget=smoke selection=darts`: the protocol's 4 seeds,
    each result trained for 1 epoch in this process."""
    tmp = tmp_path_factory.mktemp("selection")
    sweep = tmp / "sweep"
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "nas.search", "-m", "method=darts", "budget=smoke",
                        "selection=darts", "selection.epochs=1",
                        "selection.evaluator.backend=inprocess", "logger=none",
                        "trainer.enable_progress_bar=false", f"hydra.sweep.dir={sweep}"],
                       cwd=tmp, env=env, capture_output=True, text=True, timeout=600)
    assert r.returncode == 0, r.stderr[-3000:]
    return sweep, r


@pytest.mark.slow
def test_four_searches_trained_and_the_best_selected(selected):
    sweep, r = selected
    summary = json.loads((sweep / "selection.json").read_text())
    assert len(summary["searches"]) == 4
    seeds = sorted(s["seed"] for s in summary["searches"].values())
    assert seeds == [0, 1, 2, 3]
    for name, row in summary["searches"].items():
        metrics = json.loads((sweep / "selection" / name / "metrics.json").read_text())
        assert metrics["epochs"] == 1 and metrics["seed"] == row["seed"]
        assert metrics["final_val_top1"] == row["val_top1"]
        result = json.loads((sweep / name / "result.json").read_text())
        assert metrics["macs"] == result["macs"]              # the search's own network
    vals = {n: s["val_top1"] for n, s in summary["searches"].items()}
    assert summary["best"] == max(vals, key=vals.get)
    assert summary["arch_yaml"] == str(sweep / summary["best"] / "arch.yaml")
    assert f"The selected search: {sweep / summary['best']}" in r.stdout
    assert summary["train_command"] in r.stdout
    # a validation part of the training images, never the test images
    recipe = OmegaConf.load(sweep / "selection" / "recipe.yaml")
    assert recipe.data.val_fraction == 0.1


@pytest.mark.slow
def test_a_killed_selection_resumes_and_a_finished_one_is_refused(selected, tmp_path):
    sweep, _ = selected
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    done = _selection(f"sweep={copy}", cwd=tmp_path)
    assert done.returncode == 2 and "is finished" in done.stderr
    (copy / "selection.json").unlink()
    first = sorted(p.name for p in (copy / "selection").iterdir() if p.name[0] != ".")[0]
    (copy / "selection" / first / "metrics.json").unlink()
    kept = [p for p in (copy / "selection").glob("*/metrics.json")]
    stamps = {p: p.stat().st_mtime_ns for p in kept}
    r = _selection(f"sweep={copy}", cwd=tmp_path)
    assert r.returncode == 0, r.stderr[-3000:]
    assert all(p.stat().st_mtime_ns == t for p, t in stamps.items())   # not retrained
    again = json.loads((copy / "selection.json").read_text())
    before = json.loads((sweep / "selection.json").read_text())
    assert again["best"] == before["best"]
    assert again["searches"][first]["val_top1"] == before["searches"][first]["val_top1"]


@pytest.mark.slow
def test_bad_sweeps_are_one_line(selected, tmp_path):
    sweep, _ = selected
    copy = tmp_path / "sweep"
    shutil.copytree(sweep, copy)
    job = sorted(p for p in copy.iterdir() if (p / "result.json").is_file())[1]
    (job / "result.json").unlink()
    with pytest.raises(ConfigError, match=f"the search {job} did not finish"):
        _searches(copy)
    r = _selection(f"sweep={tmp_path / 'nowhere'}", cwd=tmp_path)
    assert r.returncode == 2 and r.stderr.startswith("error: selection:") and \
        "multirun.yaml is missing" in r.stderr
    usage = _selection(str(tmp_path), cwd=tmp_path)
    assert usage.returncode == 2 and "usage: python -m nas.selection sweep=" in usage.stderr
    with pytest.raises(ConfigError, match="selection.epochs: expected an integer >= 1"):
        from nas.config import check
        check(SelectionConfig, {"epochs": 0}, "selection")


def test_selection_needs_a_multirun(tmp_path):
    env = dict(os.environ, PYTHONPATH=str(REPO))
    r = subprocess.run([sys.executable, "-m", "nas.search", "method=darts", "budget=smoke",
                        "selection=darts", f"hydra.run.dir={tmp_path / 'run'}"], cwd=tmp_path,
                       env=env, capture_output=True, text=True, timeout=300)
    assert r.returncode == 2 and "expected python -m nas.search -m" in r.stderr
    assert not (tmp_path / "run" / "result.json").exists()


def test_the_darts_overlay_runs_the_four_seed_protocol():
    from hydra import compose, initialize_config_dir

    from nas.config import CONF_DIR

    with initialize_config_dir(str(CONF_DIR), version_base=None):
        cfg = compose("search", ["+experiment=darts_cifar10", "selection=darts"],
                      return_hydra_config=True)
    assert cfg.hydra.sweeper.params.seed == "0,1,2,3"
    assert cfg.hydra.callbacks.selection._target_ == "nas.selection.SelectBest"
    assert (cfg.selection.epochs, cfg.selection.val_fraction) == (100, 0.1)
