"""A training run killed (SIGKILL, no cleanup) between or within epochs and resumed from its
last.ckpt ends bit-identical to the uninterrupted run: weights, BN statistics, EMA, metrics."""

import json
import signal
import subprocess
import sys

import pytest
import torch

from tests.conftest import REPO

# EMA (rmsprop_tf), the per-step schedule, dropout, augmentation and BN recalibration before
# every evaluation all take part.
RUN = ["arch=mobilenetv2_035", "budget=smoke", "budget.epochs=3", "optim=rmsprop_tf",
       "bn_recalibration_steps=2", "export_onnx=false"]
VARYING = {"fit_seconds", "run_dir", "best_checkpoint", "last_checkpoint"}


@pytest.fixture(scope="module")
def straight(tmp_path_factory, run_entry):
    tmp = tmp_path_factory.mktemp("straight")
    r = run_entry("nas.train", tmp, *RUN)
    assert r.returncode == 0, r.stderr[-3000:]
    return tmp / "run"


def _same_run(a, b):
    ma, mb = (json.loads((d / "metrics.json").read_text()) for d in (a, b))
    assert {k: v for k, v in ma.items() if k not in VARYING} == \
        {k: v for k, v in mb.items() if k not in VARYING}
    sa, sb = (torch.load(d / "checkpoints" / "last.ckpt", weights_only=True) for d in (a, b))
    assert sa["state_dict"].keys() == sb["state_dict"].keys()
    for k in sa["state_dict"]:
        assert torch.equal(sa["state_dict"][k], sb["state_dict"][k]), k


@pytest.mark.parametrize("epoch,batch,workers", [(1, 0, 0), (1, 2, 1)],
                         ids=["between_epochs", "within_epoch_with_a_worker"])
def test_killed_training_resumes_to_the_uninterrupted_result(tmp_path, run_entry, straight,
                                                             epoch, batch, workers):
    killed = tmp_path / "killed"
    r = subprocess.run([sys.executable, str(REPO / "tests" / "kill_train.py"), str(killed),
                        str(epoch), str(batch), *RUN, f"data.num_workers={workers}",
                        "logger=none", "trainer.enable_progress_bar=false"],
                       cwd=REPO, capture_output=True, text=True, timeout=600)
    assert r.returncode == -signal.SIGKILL, r.stderr[-3000:]
    assert not (killed / "metrics.json").exists()
    last = killed / "checkpoints" / "last.ckpt"
    before = last.read_bytes()
    r = run_entry("nas.train", tmp_path, *RUN, f"data.num_workers={workers}",
                  f"ckpt_path={last}", run_dir="resumed")
    assert r.returncode == 0, r.stderr[-3000:]
    _same_run(straight, tmp_path / "resumed")
    assert last.read_bytes() == before       # the killed run's files are left as they were
